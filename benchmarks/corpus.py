"""The photographs the benchmarks run on.

Throughput benchmarks: the bundled samples plus scikit-image's photos,
copied `copies` times so a run lasts long enough to time. Nothing is
fetched.

Quality (`quality.py --add_train/--add_held_out`): a larger corpus of public
photographs, the super-resolution benchmarks BSD100, Urban100 and
Sun-Hays80 as one repository carries them (280 photos, 95 megapixels), put
under one directory with names that say where each came from:

    git clone --depth 1 https://github.com/jbhuang0604/SelfExSR /tmp/SelfExSR
    python benchmarks/corpus.py /tmp/SelfExSR photos/public
"""
import argparse
import glob
import os
import re
import shutil

import numpy as np
import skimage.data
from PIL import Image

from sandwich import samples
from sandwich.image_io import decode_image, encode_png16

SKIMAGE_PHOTOS = ("motorcycle_left.png", "motorcycle_right.png", "ihc.png", "color.png",
                  "retina.jpg", "hubble_deep_field.jpg", "rocket.jpg")
SKIMAGE_DIR = os.path.dirname(skimage.data.__file__)


def make_corpus(directory: str, copies: int) -> list[str]:
    """Copies the photos into `directory`; returns the new paths."""
    sources = [str(p) for p in samples.paths()]
    sources += [os.path.join(SKIMAGE_DIR, name) for name in SKIMAGE_PHOTOS]
    paths = []
    for copy in range(copies):
        for source in sources:
            paths.append(os.path.join(directory, f"{copy:02d}_{os.path.basename(source)}"))
            shutil.copy(source, paths[-1])
    return paths


def ten_bit_copies(paths, directory: str) -> str:
    """Synthetic 10-bit copies of 8-bit photos (2x2 block sums, as
    `pipelines.sample_data` makes them) in `directory`; returns it."""
    os.makedirs(directory, exist_ok=True)
    for path in paths:
        with open(path, "rb") as f:
            pixels = decode_image(f.read()).pixels
        name = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(directory, f"{name}_sum2x2.png"), "wb") as f:
            f.write(encode_png16(samples.block_sum(pixels, 2), 10))
    return directory


# The qualities a JPEG-sourced photo was saved at: what cameras, phones and
# web pipelines write (libjpeg's 75 default up to a camera's "fine" 95).
SOURCE_QUALITIES = (75, 80, 85, 90, 95)


def jpeg_sourced(paths, directory: str, seed: int = 0) -> list[str]:
    """Copies of the photos as they reach most buckets: saved once as a
    JPEG (Pillow, standard tables, 4:2:0) at a quality drawn from
    `SOURCE_QUALITIES`, named `<name>_q<quality>.jpg`; returns the new paths.

    A photo that was a JPEG once re-encodes very differently from a PNG
    original: its blocks and lost high frequencies are already there, and
    plain JPEG at the source's own quality reproduces it almost exactly.
    The draw is seeded by the photo's name, so a copy does not change when
    the list does.
    """
    os.makedirs(directory, exist_ok=True)
    made = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        draw = np.random.default_rng([seed, *name.encode()])
        quality = int(draw.choice(SOURCE_QUALITIES))
        made.append(os.path.join(directory, f"{name}_q{quality}.jpg"))
        with Image.open(path) as image:
            image.convert("RGB").save(made[-1], "JPEG", quality=quality, subsampling=2)
    return made


# Where each photograph a model may be trained on comes from, and on what
# terms, by the prefix of its name (`sr_benchmark_photos`) or, for the
# bundled ones and scikit-image's, its source (`release_models.py` records
# this in each shipped model's spec).
PROVENANCE = {
    "bsd": "BSD100: the Berkeley Segmentation Dataset's test photographs (Martin et al., "
           "ICCV 2001), as github.com/jbhuang0604/SelfExSR carries them; released by Berkeley "
           "for research use, no licence file in that repository",
    "urban": "Urban100: Flickr photographs of buildings gathered by Huang et al. (CVPR 2015), "
             "as github.com/jbhuang0604/SelfExSR carries them; no licence file there",
    "sunhays": "Sun-Hays80 (Sun and Hays, ICCP 2012), as github.com/jbhuang0604/SelfExSR "
               "carries them; no licence file there",
    "scikit-image": "scikit-image's data photographs (skimage.data): CC0, public domain or no "
                    "known copyright restrictions, each as its docstring in "
                    "skimage/data/_fetchers.py says",
}


def provenance(paths) -> dict[str, dict]:
    """{source: {"photos": count, "terms": PROVENANCE text}} for the
    photographs at `paths` (JPEG-sourced, held-back and rescaled copies keep
    their original's name, so they count under it)."""
    scikit = {os.path.splitext(name)[0] for name in os.listdir(SKIMAGE_DIR)}
    counts: dict[str, int] = {}
    for path in paths:
        name = re.sub(r"_q\d+$", "", os.path.splitext(os.path.basename(path))[0])
        prefix = name.split("_")[0]
        source = prefix if prefix in PROVENANCE else "scikit-image" if name in scikit else "other"
        counts[source] = counts.get(source, 0) + 1
    return {source: {"photos": n, "terms": PROVENANCE.get(source, "not recorded")}
            for source, n in sorted(counts.items())}


# (prefix, the repository's folder of full-resolution copies): each photo is
# there once per scale factor; one factor's copies are taken.
SR_BENCHMARKS = (("bsd", "data/BSD100/image_SRF_2"), ("urban", "data/Urban100/image_SRF_2"),
                 ("sunhays", "data/Sun-Hays80/image_SRF_8"))


def sr_benchmark_photos(repository: str, directory: str) -> list[str]:
    """Copies the full-resolution photos of `SR_BENCHMARKS` from a checkout
    of the repository into `directory` as `<prefix>_<number>.png`; returns
    the new paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for prefix, folder in SR_BENCHMARKS:
        found = sorted(glob.glob(os.path.join(repository, folder, "img_*_HR.png")))
        if not found:
            raise SystemExit(f"no img_*_HR.png under {os.path.join(repository, folder)}")
        for source in found:
            number = os.path.basename(source).split("_")[1]
            paths.append(os.path.join(directory, f"{prefix}_{number}.png"))
            shutil.copy(source, paths[-1])
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Puts the public super-resolution "
                                     "benchmarks' photos under one directory.")
    parser.add_argument("repository", help="a checkout of github.com/jbhuang0604/SelfExSR")
    parser.add_argument("output")
    args = parser.parse_args()
    print(f"{len(sr_benchmark_photos(args.repository, args.output))} photos in {args.output}")

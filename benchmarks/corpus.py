"""The photographs every throughput benchmark runs on: the bundled samples
plus scikit-image's photos, copied `copies` times so a run lasts long enough
to time. Nothing is fetched."""
import os
import shutil

import skimage.data

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

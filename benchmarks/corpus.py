"""The photographs every throughput benchmark runs on: the bundled samples
plus scikit-image's photos, copied `copies` times so a run lasts long enough
to time. Nothing is fetched."""
import os
import shutil

import skimage.data

from sandwich import samples

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

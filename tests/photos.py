"""Real photographs for tests: scikit-image's bundled files, never fetched.

They are disjoint from the photographs bundled with the package
(`sandwich.samples`), on which the default rate table was fitted, so tests
of fitted models are held out.
"""
import pathlib

import numpy as np
import skimage.data
from PIL import Image

SKIMAGE_DIR = pathlib.Path(skimage.data.__file__).parent
HELD_OUT = ("motorcycle_left.png", "motorcycle_right.png", "ihc.png", "retina.jpg",
            "hubble_deep_field.jpg", "color.png")


def load(name: str) -> np.ndarray:
    with Image.open(SKIMAGE_DIR / name) as image:
        return np.asarray(image.convert("RGB"))


def held_out_crops(size: int, per_photo: int, seed: int = 0) -> np.ndarray:
    """`per_photo` random `size` x `size` crops of each held-out photo."""
    rng = np.random.default_rng(seed)
    out = []
    for name in HELD_OUT:
        photo = load(name)
        for _ in range(per_photo):
            y = rng.integers(0, photo.shape[0] - size + 1)
            x = rng.integers(0, photo.shape[1] - size + 1)
            out.append(photo[y:y + size, x:x + size])
    return np.stack(out)

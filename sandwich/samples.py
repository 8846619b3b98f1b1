"""The photographs bundled with the package, for demos, defaults and tests.

astronaut (NASA, public domain), chelsea and coffee (CC0, from
scikit-image's data), rocket (NASA, public domain). Nothing is ever fetched.
"""
from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

SAMPLES_DIR = pathlib.Path(__file__).parent / "data" / "samples"


def paths() -> list[pathlib.Path]:
    return sorted(SAMPLES_DIR.glob("*.png"))


def load(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_all() -> list[np.ndarray]:
    return [load(p) for p in paths()]


def crops(images, size: int, stride: int | None = None) -> np.ndarray:
    """Every `size` x `size` crop on a grid of `stride` (default: `size`)."""
    stride = stride or size
    out = [image[y:y + size, x:x + size]
           for image in images
           for y in range(0, image.shape[0] - size + 1, stride)
           for x in range(0, image.shape[1] - size + 1, stride)]
    return np.stack(out)

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


def block_sum(pixels: np.ndarray, block: int) -> np.ndarray:
    """Sums of non-overlapping `block` x `block` blocks of 8-bit `[..., h, w, c]`.

    How high-bit-depth test and sample images are made without real ones: a
    2x2 sum of an 8-bit photograph carries genuine 10-bit values (0..1020),
    a 4x4 sum 12 bits. Ragged edges are dropped; the result is uint16.
    """
    *lead, h, w, c = pixels.shape
    h, w = h - h % block, w - w % block
    blocks = pixels[..., :h, :w, :].astype(np.uint32).reshape(
        *lead, h // block, block, w // block, block, c)
    return blocks.sum(axis=(-4, -2)).astype(np.uint16)


def block_sum_bit_depth(block: int) -> int:
    """The bit depth `block_sum` of 8-bit pixels needs: 10 for 2, 12 for 4."""
    return (255 * block * block).bit_length()

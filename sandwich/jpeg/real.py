"""The real codec: baseline JPEG through Pillow (libjpeg-turbo).

Every file carries the quantisation tables it is given (a flat step, or
learned tables), rounded to integers in 1..255 (baseline JPEG's range).
Pillow's `quality` argument is never passed with the tables: it would
rescale them (at `quality=100` every entry becomes 1 and qstep stops
mattering).

By default the image is coded as every JPEG is, YCbCr with 4:2:0 chroma. In
'planes' mode an RGB image is written as one three-component JPEG with
`keep_rgb`: no colour transform and no subsampling, each channel coded as
its own plane, yet still a single standard file that any viewer opens.

This module needs no TensorFlow, so workers that only encode do not load it.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile

from sandwich.jpeg import checks, tables



def encode(image: np.ndarray, qstep, *, color_mode: str = "ycbcr", subsampling: str = "420",
           optimize: bool = True, comment: bytes | None = None) -> bytes:
    """Encodes one uint8 `[h, w, c]` image (c = 1 or 3) as a JPEG file.

    `qstep` is a flat step or `[2, 64]` quantisation tables (natural order;
    `sandwich.jpeg.tables`), written as the file's own DQT tables.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"the real codec takes uint8 pixels, got {image.dtype}")
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or 0 in image.shape:
        raise ValueError(f"expected a non-empty [h, w, 1|3] image, got shape {image.shape}")
    mode = tables.JpegMode(color_mode, subsampling)
    if image.shape[-1] != 1 and mode.channels == 1:
        raise ValueError(f"JPEG mode {mode.name!r} codes one channel, got {image.shape[-1]}")
    qtables = [list(map(int, t)) for t in tables.integer_tables(qstep)]
    kwargs = dict(qtables=qtables, optimize=optimize)
    if comment is not None:
        kwargs["comment"] = comment
    if image.shape[-1] == 1:
        pil = Image.fromarray(image[..., 0], "L")
        kwargs["qtables"] = qtables[:1]
    else:
        pil = Image.fromarray(image, "RGB")
        kwargs["subsampling"] = {"444": 0, "420": 2}[mode.subsampling]
        if mode.color_mode == "planes":
            kwargs["keep_rgb"] = True
    if optimize:
        _ensure_encoder_buffer(image.size)
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _ensure_encoder_buffer(num_samples: int) -> None:
    """Optimised Huffman tables make libjpeg hold the whole file in Pillow's
    buffer, sized at 2 bytes per pixel; near-lossless steps on 3-channel noise
    overflow it ("Suspension not allowed here"). Pillow sizes the buffer as at
    least `ImageFile.MAXBLOCK`; only ever raising it is safe across threads."""
    needed = 2 * num_samples + 65536
    if ImageFile.MAXBLOCK < needed:
        ImageFile.MAXBLOCK = needed


def decode(data: bytes) -> np.ndarray:
    """Decodes a JPEG file to uint8 `[h, w, c]`, c the file's component count."""
    with Image.open(io.BytesIO(data)) as pil:
        pil.load()
        array = np.asarray(pil)
    return array[..., None] if array.ndim == 2 else array


def real_roundtrip(images, qstep, *, color_mode: str = "ycbcr", subsampling: str = "420",
                   optimize: bool = True):
    """Encodes and decodes a batch with the real encoder.

    Args:
      images: uint8 `[b, h, w, c]`, c = 1 or 3.
      qstep: a flat quantisation step or `[2, 64]` tables (rounded to the
        integers the file carries).
      color_mode, subsampling: the codec's mode (`sandwich.jpeg.tables`).

    Returns:
      `(decoded, bits)`: decoded uint8 of the same shape, and an int64 `[b]`
      array of the exact file sizes in bits (headers included).
    """
    images = np.asarray(images)
    checks.check_images(images)
    checks.check_qstep(qstep)
    if images.dtype != np.uint8:
        raise ValueError(f"real_roundtrip takes uint8 images, got {images.dtype}")
    decoded = np.empty_like(images)
    bits = np.empty(images.shape[0], np.int64)
    for i, image in enumerate(images):
        data = encode(image, qstep, color_mode=color_mode, subsampling=subsampling,
                      optimize=optimize)
        decoded[i] = decode(data)
        bits[i] = 8 * len(data)
    return decoded, bits

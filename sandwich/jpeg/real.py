"""The real codec: baseline JPEG through Pillow (libjpeg-turbo).

Every file uses one flat quantisation table whose entries are `qstep`
rounded to an integer in 1..255 (baseline JPEG's range). Pillow's `quality`
argument is never passed with the table: it would rescale the table (at
`quality=100` every entry becomes 1 and qstep stops mattering).

In 'planes' mode an RGB image is written as one three-component JPEG with
`keep_rgb`: no colour transform and no subsampling, so each channel is coded
as its own plane exactly as the proxy codes it, yet the bottleneck is still
a single standard file that any viewer opens.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile

from sandwich import checks

BASELINE_MAX_STEP = 255


def qtable_step(qstep: float) -> int:
    """The integer table entry the encoder actually uses for `qstep`."""
    checks.check_qstep(qstep)
    return int(np.clip(np.round(float(qstep)), 1, BASELINE_MAX_STEP))


def flat_qtable(qstep: float) -> list[int]:
    return [qtable_step(qstep)] * 64


def encode(image: np.ndarray, qstep: float, *, color_mode: str = "planes",
           subsampling: str = "444", optimize: bool = True, comment: bytes | None = None) -> bytes:
    """Encodes one uint8 `[h, w, c]` image (c = 1 or 3) as a JPEG file."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"the real codec takes uint8 pixels, got {image.dtype}")
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or 0 in image.shape:
        raise ValueError(f"expected a non-empty [h, w, 1|3] image, got shape {image.shape}")
    table = flat_qtable(qstep)
    kwargs = dict(qtables=[table, table], optimize=optimize)
    if comment is not None:
        kwargs["comment"] = comment
    if image.shape[-1] == 1:
        pil = Image.fromarray(image[..., 0], "L")
        kwargs["qtables"] = [table]
    else:
        pil = Image.fromarray(image, "RGB")
        if color_mode == "planes":
            if subsampling != "444":
                raise ValueError("color_mode='planes' codes full-resolution planes (4:4:4)")
            kwargs.update(keep_rgb=True, subsampling=0)
        elif color_mode == "ycbcr":
            kwargs.update(subsampling={"444": 0, "420": 2}[subsampling])
        else:
            raise ValueError(f"unknown color_mode {color_mode!r}")
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


def real_roundtrip(images, qstep, *, color_mode: str = "planes", subsampling: str = "444",
                   optimize: bool = True):
    """Encodes and decodes a batch with the real encoder.

    Args:
      images: uint8 `[b, h, w, c]`, c = 1 or 3.
      qstep: the flat quantisation step (rounded to the table's integer).

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

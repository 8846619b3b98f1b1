"""Decoding image files to RGB arrays that keep every bit, and writing 16-bit PNGs.

Every stage that reads pictures (the dataset pipeline, batch compression)
decodes through `decode_image`, so they agree on what a file means:

- Formats: PNG (1-16 bit), TIFF (8 and 16 bit, incl. 9-15 bit samples stored
  right-aligned in 16-bit words) and JPEG, told apart by their magic bytes.
- The result is always `[height, width, 3]`, uint8 for sources of 8 bits or
  fewer and uint16 otherwise, with values right-aligned: every value is below
  `2 ** bit_depth`, whatever the container's width.
- True bit depth: a PNG's `sBIT` chunk or a TIFF's `BitsPerSample` says it
  when present; otherwise a 16-bit container whose low k bits are zero in
  every sample is taken as 16 - k bits (e.g. 10-bit data scaled by 64).
  Sources under 8 bits (1/2/4-bit gray or palette) are expanded to 8 bits.
- Modes: gray is replicated to three channels, palettes are expanded, alpha
  is dropped (the colour channels are kept as stored; transparency is no part
  of the scenarios), CMYK/YCbCr JPEGs are converted by Pillow.
- EXIF orientation (JPEG, PNG eXIf, TIFF Orientation) is applied, so pixels
  come out the way a viewer shows them.
- Anything unreadable raises `ImageDecodeError` with a one-line reason, and the
  pixel count is checked from the header *before* decoding, so a small file
  claiming a huge canvas (a decompression bomb) costs nothing.

Pillow opens 16-bit RGB PNGs as 8-bit and cannot write them (docs/architecture.md,
known traps), so
16-bit PNGs go through `tf.io.decode_png`/`tf.io.encode_png` and 16-bit TIFFs
through tifffile.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
from PIL import Image

from sandwich.errors import Rejected

# A 16-bit RGB 100-megapixel image is 600 MB decoded: room for any real
# photograph, far below what a bomb would make a worker allocate.
DEFAULT_MAX_PIXELS = 100_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112
# Modes of 8 bits or fewer per sample; wider ones would be silently narrowed.
_PILLOW_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


class ImageDecodeError(Rejected):
    """A file that is not a usable image; `reason` says why in one line."""


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """RGB pixels `[h, w, 3]` (values < 2**bit_depth) and where they came from."""

    pixels: np.ndarray
    bit_depth: int
    format: str

    @property
    def megapixels(self) -> float:
        return self.pixels.shape[0] * self.pixels.shape[1] / 1e6


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decodes PNG, TIFF or JPEG bytes; raises `ImageDecodeError` on bad input."""
    if not data:
        raise ImageDecodeError("empty file")
    if data.startswith(_PNG_MAGIC):
        decoder, fmt = _decode_png, "png"
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        decoder, fmt = _decode_tiff, "tiff"
    elif data.startswith(b"\xff\xd8\xff"):
        decoder, fmt = _decode_with_pillow, "jpeg"
    else:
        raise ImageDecodeError("not a PNG, TIFF or JPEG file")
    try:
        pixels, bit_depth, orientation = decoder(data, max_pixels)
    except ImageDecodeError:
        raise
    except Exception as e:  # Decoders signal damage with many exception types.
        raise ImageDecodeError(
            f"corrupt or truncated {fmt.upper()}: {type(e).__name__}: {e}") from e
    if bit_depth == 8:  # e.g. 8-bit data scaled into a 16-bit container
        pixels = pixels.astype(np.uint8)
    return DecodedImage(_to_rgb(_orient(pixels, orientation)), bit_depth, fmt)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"empty canvas {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels}")


def png_chunks(data: bytes):
    """(kind, body) of a PNG's chunks up to its first IDAT; `data` may be a head."""
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return
        pos += 12 + length


def _decode_png(data: bytes, max_pixels: int):
    chunks = dict(png_chunks(data))
    if b"IHDR" not in chunks or len(chunks[b"IHDR"]) < 13:
        raise ImageDecodeError("corrupt PNG: no IHDR header")
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    _check_size(width, height, max_pixels)
    if depth <= 8:
        return _decode_with_pillow(data, max_pixels)
    import tensorflow as tf  # Only 16-bit PNGs need it; keeps 8-bit decoding light.

    pixels = tf.io.decode_png(data, dtype=tf.uint16).numpy()
    significant = chunks.get(b"sBIT", b"")
    bit_depth = max(significant) if significant else _used_bits(pixels)
    orientation = _png_orientation(data)
    return pixels >> (16 - bit_depth), bit_depth, orientation


def _png_orientation(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return im.getexif().get(_EXIF_ORIENTATION, 1)


def _used_bits(pixels: np.ndarray) -> int:
    """16 minus the number of low bits that are zero in every sample (8 at least)."""
    ored = int(np.bitwise_or.reduce(pixels, axis=None))
    zeros = (ored & -ored).bit_length() - 1 if ored else 8
    return max(8, 16 - zeros)


def _decode_tiff(data: bytes, max_pixels: int):
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        _check_size(page.imagewidth, page.imagelength, max_pixels)
        if page.dtype is None or page.dtype.kind not in "ui":
            raise ImageDecodeError(f"unsupported TIFF sample type {page.dtype}")
        if page.dtype.itemsize == 1:
            return _decode_with_pillow(data, max_pixels)
        if page.dtype != np.uint16:
            raise ImageDecodeError(f"unsupported TIFF sample type {page.dtype}")
        pixels = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            pixels = np.moveaxis(pixels, 0, -1)
        orientation = int(page.tags.valueof("Orientation", 1))
        bits = page.bitspersample
    # BitsPerSample < 16 means the samples are stored right-aligned already.
    if bits < 16:
        return pixels, max(8, bits), orientation
    bit_depth = _used_bits(pixels)
    return pixels >> (16 - bit_depth), bit_depth, orientation


def _decode_with_pillow(data: bytes, max_pixels: int):
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"decompression bomb: {e}") from e
    with im:
        _check_size(im.width, im.height, max_pixels)
        if im.mode not in _PILLOW_MODES:
            raise ImageDecodeError(f"unsupported image mode {im.mode}")
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # Pillow warns when a transparent palette goes to RGB.
        pixels = np.asarray(im if im.mode in ("L", "RGB") else im.convert("RGB"))
    return pixels, 8, orientation


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation tag (1-8), as Pillow's `exif_transpose` does."""
    if orientation in (5, 6, 7, 8):
        pixels = np.swapaxes(pixels, 0, 1)  # transpose = orientation 5
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation in (2, 3):
        pixels = pixels[:, ::-1]
    if orientation in (3, 4):
        pixels = pixels[::-1]
    return np.ascontiguousarray(pixels)


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[-1]
    if channels in (1, 2):  # gray, gray + alpha
        return np.repeat(pixels[..., :1], 3, axis=-1)
    if channels in (3, 4):  # RGB, RGB + alpha
        return np.ascontiguousarray(pixels[..., :3])
    raise ImageDecodeError(f"unsupported number of channels: {channels}")


def encode_png16(pixels: np.ndarray, bit_depth: int, *, compression: int = -1) -> bytes:
    """A 16-bit RGB PNG of right-aligned `bit_depth`-bit values, with `sBIT`,
    at zlib level `compression` (-1: zlib's default).

    Values are scaled to the full 16-bit range by left-bit replication, as the
    PNG specification asks, and the `sBIT` chunk records the true depth so that
    `decode_image` gives back exactly `pixels` and `bit_depth`.
    """
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be [h, w, 3], got shape {pixels.shape}")
    if not 8 < bit_depth <= 16:
        raise ValueError(f"bit_depth must be in 9..16, got {bit_depth}")
    values = pixels.astype(np.uint32)
    if values.max(initial=0) >= 1 << bit_depth:
        raise ValueError(f"pixel values do not fit in {bit_depth} bits")
    shift = 16 - bit_depth
    scaled = (values << shift) | (values >> (bit_depth - shift) if shift else 0)
    import tensorflow as tf

    png = tf.io.encode_png(scaled.astype(np.uint16), compression=compression).numpy()
    return insert_chunk_after_ihdr(png, b"sBIT", bytes([bit_depth] * 3))


def insert_chunk_after_ihdr(png: bytes, kind: bytes, body: bytes) -> bytes:
    """`png` with one more ancillary chunk, where a reader of its head finds it."""
    ihdr_end = len(_PNG_MAGIC) + 8 + 13 + 4
    chunk = struct.pack(">I", len(body)) + kind + body
    chunk += struct.pack(">I", zlib.crc32(kind + body))
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def fit_bit_depth(pixels: np.ndarray, bit_depth: int, target: int) -> np.ndarray:
    """Pixels of a `bit_depth`-bit source as `target`-bit values in their container.

    Deeper sources are rounded down (their low bits dropped), as the 8-bit
    baseline does; shallower ones are rejected, since padding bits would
    claim a precision the source never had.
    """
    if bit_depth < target:
        raise Rejected(f"source has {bit_depth} bits per sample, the dataset needs {target}")
    reduced = pixels >> (bit_depth - target) if bit_depth > target else pixels
    # No copy of a source already in its container (most photographs).
    return reduced.astype(np.uint8 if target <= 8 else np.uint16, copy=False)

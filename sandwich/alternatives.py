"""What a user would pick instead of a sandwich: codecs at their own quality settings.

A sandwich is only worth deploying where it beats what its users already
have, so the evaluator measures these on the same images, with real files:

- `jpeg`: a plain JPEG from libjpeg-turbo through Pillow, as almost every
  pipeline makes one: standard (Annex K) tables scaled by `quality`, YCbCr
  4:2:0, optimised Huffman tables;
- `jpegli`: Google's JPEG-compatible encoder (adaptive quantisation, better
  tables), through the `pyjpegli` binding; any JPEG decoder reads its files;
- `avif` (AV1) and `jxl` (JPEG XL), through `imagecodecs`: not JPEG, so
  context rather than competition, and slower to encode.

Each takes and returns 8-bit RGB. Files are decoded the way a user's viewer
would (Pillow for the JPEGs). For deeper sources, `eight_bit_ceiling` is the
best any 8-bit codec can do: the source rounded down to 8 bits and scaled
back to the middle of each step, the path of the `high_bit_depth` baseline.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

ALTERNATIVES = ("jpeg", "jpegli", "avif", "jxl")
DEFAULT_ALTERNATIVES = ("jpeg", "jpegli")
DEFAULT_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
DESCRIPTIONS = {
    "jpeg": "plain JPEG, libjpeg-turbo via Pillow: standard tables, 4:2:0, optimized Huffman",
    "jpegli": "jpegli via pyjpegli (JPEG-compatible), decoded by Pillow",
    "avif": "AVIF via imagecodecs (libavif)",
    "jxl": "JPEG XL via imagecodecs (libjxl)",
}


def pillow_decode(data: bytes) -> np.ndarray:
    """A JPEG file decoded as a viewer decodes it: Pillow (libjpeg-turbo), 8-bit RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def plain_jpeg(rgb: np.ndarray, quality: int, comment: bytes = b"") -> bytes:
    """The `jpeg` alternative's file; `comment` goes in a COM segment, which
    every decoder skips (a compression job's fallback file says there what
    it is)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, "JPEG", quality=int(quality), subsampling=2,
                                     optimize=True, comment=comment)
    return buffer.getvalue()


def with_comment(data: bytes, comment: bytes) -> bytes:
    """A JPEG file with `comment` in a COM segment (0xFFFE, then a 2-byte
    big-endian length that counts itself), which every decoder skips and
    Pillow reads as `info["comment"]`: right after SOI, or after the
    APP0 (JFIF) segment where there is one, which must come first. The
    rest of the file is left as it is."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG file: no start-of-image marker")
    if len(comment) > 0xFFFF - 2:
        raise ValueError(f"a JPEG comment holds at most {0xFFFF - 2} bytes, not {len(comment)}")
    at = 2
    if data[2:4] == b"\xff\xe0":  # APP0: its marker, then its length
        at = 4 + int.from_bytes(data[4:6], "big")
    return data[:at] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[at:]


def jpegli(rgb: np.ndarray, quality: int, comment: bytes = b"") -> bytes:
    """The `jpegli` alternative's file (pyjpegli's own, a baseline YCbCr
    4:2:0 JPEG); `comment` goes in a COM segment (`with_comment`), as
    `plain_jpeg`'s does."""
    import pyjpegli

    height, width = rgb.shape[:2]
    data = pyjpegli.encode(np.ascontiguousarray(rgb).tobytes(), width, height, int(quality))
    return with_comment(data, comment) if comment else data


def _avif(rgb: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    return imagecodecs.avif_encode(rgb, level=int(quality))


def _jxl(rgb: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    return imagecodecs.jpegxl_encode(rgb, level=int(quality))


def _imagecodecs_decode(kind: str):
    def decode(data: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(getattr(imagecodecs, f"{kind}_decode")(data))[..., :3]
    return decode


_CODECS = {
    "jpeg": (plain_jpeg, pillow_decode),
    "jpegli": (jpegli, pillow_decode),
    "avif": (_avif, _imagecodecs_decode("avif")),
    "jxl": (_jxl, _imagecodecs_decode("jpegxl")),
}


def check(names) -> tuple[str, ...]:
    """The names, validated, and their libraries importable (a clear error
    up front, not a crash in every worker)."""
    names = tuple(names)
    unknown = sorted(set(names) - set(ALTERNATIVES))
    if unknown:
        raise ValueError(f"unknown alternatives {unknown}; expected some of {ALTERNATIVES}")
    for name in names:
        try:
            code(name, np.zeros((8, 8, 3), np.uint8), 50)
        except ImportError as e:
            raise ValueError(f"alternative {name!r} needs a library that is not installed "
                             f"({e}); pip install 'sandwich-compression[compare]'") from e
    return names


def code(name: str, rgb: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """(file, decoded uint8 RGB) of 8-bit RGB `[h, w, 3]` through `name` at `quality`."""
    encode, decode = _CODECS[name]
    data = encode(np.ascontiguousarray(rgb, np.uint8), quality)
    return data, decode(data)


def largest_quality_within(name: str, rgb: np.ndarray, budget: int):
    """(quality, file, decoded) of the largest quality in 1..100 whose file
    has at most `budget` bytes, by bisection (sizes grow with quality); the
    quality-1 file, over budget, where none fits (the caller says so)."""
    low, high = 1, 100
    best = None
    while low <= high:
        quality = (low + high) // 2
        data, decoded = code(name, rgb, quality)
        if len(data) <= budget:
            best, low = (quality, data, decoded), quality + 1
        else:
            high = quality - 1
    if best is None:
        return (1, *code(name, rgb, 1))
    return best

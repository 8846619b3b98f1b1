"""Decoding image files to sRGB arrays that keep every bit, and writing 16-bit PNGs.

Every stage that reads pictures (the dataset pipeline, batch compression,
the evaluator, `codec.Codec`) decodes through `decode_image`, so they agree
on what a file means (docs/formats.md, "Source images"):

- Formats: PNG (1-16 bit), TIFF (8 and 16 bit, incl. 9-15 bit samples stored
  right-aligned in 16-bit words), JPEG, WebP and AVIF, told apart by their
  magic bytes (a WebP's RIFF header, an AVIF's `ftyp` brands); WebP and
  AVIF through Pillow (AVIF needs Pillow built with libavif, as its wheels
  are from 11.3), which gives 8 bits: a deeper AVIF is rounded to 8 by
  libavif. Animated files give their first frame, multi-page TIFFs their
  first page. HEIF/HEIC is refused by name.
- The result is always `[height, width, 3]`, uint8 for sources of 8 bits or
  fewer and uint16 otherwise, with values right-aligned: every value is below
  `2 ** bit_depth`, whatever the container's width.
- True bit depth: a PNG's `sBIT` chunk or a TIFF's `BitsPerSample` says it
  when present; otherwise a 16-bit container whose low k bits are zero in
  every sample is taken as 16 - k bits (e.g. 10-bit data scaled by 64).
  Sources under 8 bits (1/2/4-bit gray or palette) are expanded to 8 bits.
- Colour: the pixels are sRGB. An embedded ICC profile other than sRGB
  (Display P3, Adobe RGB, ProPhoto, a CMYK press profile...) is converted to
  sRGB: 8-bit sources by LittleCMS through Pillow's `ImageCms` (its default,
  perceptual intent), 16-bit PNGs and TIFFs here in floating point for
  matrix/TRC profiles (what lcms does for them, to within a level), so no
  bit of depth is lost; a 16-bit source whose profile is built of lookup
  tables is refused, as is a profile LittleCMS cannot read. Colours outside
  sRGB are clipped to its gamut. A profile whose description names sRGB is
  taken as sRGB and not applied. No profile: sRGB, as every viewer assumes.
- Modes: gray is replicated to three channels, palettes are expanded, CMYK
  and YCbCr JPEGs are converted (by their profile when they carry one, else
  by Pillow). Alpha is dropped and the colour channels kept as stored: the
  codec codes colour only. `DecodedImage.alpha_dropped` says when that lost
  something (an alpha channel or a transparent colour that is not opaque
  everywhere), which the jobs count and the compress manifest records.
- EXIF orientation (JPEG, PNG eXIf, TIFF Orientation, WebP, AVIF) is
  applied, so pixels come out the way a viewer shows them.
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
import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms, features

from sandwich.errors import Rejected

# A 16-bit RGB 100-megapixel image is 600 MB decoded: room for any real
# photograph, far below what a bomb would make a worker allocate.
DEFAULT_MAX_PIXELS = 100_000_000

FORMATS = ("png", "tiff", "jpeg", "webp", "avif")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# An ISO-BMFF `ftyp` box's brands: AVIF's, and HEIF's, which Pillow cannot read.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_EXIF_ORIENTATION = 0x0112
_TIFF_ICC_TAG = 34675
# Modes of 8 bits or fewer per sample; wider ones would be silently narrowed.
_PILLOW_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
# What a profile's colour space needs the image to be in (Pillow's modes).
_PROFILE_MODES = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}


class ImageDecodeError(Rejected):
    """A file that is not a usable image; `reason` says why in one line."""


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """sRGB pixels `[h, w, 3]` (values < 2**bit_depth) and where they came from;
    `alpha_dropped`: the file's transparency (not opaque everywhere) was dropped."""

    pixels: np.ndarray
    bit_depth: int
    format: str
    alpha_dropped: bool = False

    @property
    def megapixels(self) -> float:
        return self.pixels.shape[0] * self.pixels.shape[1] / 1e6


@dataclasses.dataclass
class _Raw:
    """A decoder's result: colour samples `[h, w]` or `[h, w, 1 | 3]`, right-
    aligned at `bit_depth`, the ICC profile still to apply (deep sources) and
    whether alpha was dropped."""

    pixels: np.ndarray
    bit_depth: int
    orientation: int
    icc: bytes | None = None
    alpha_dropped: bool = False


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decodes PNG, TIFF, JPEG, WebP or AVIF bytes to sRGB; raises
    `ImageDecodeError` on bad input."""
    fmt = format_of(data)
    decoder = {"png": _decode_png, "tiff": _decode_tiff}.get(fmt, _decode_with_pillow)
    try:
        raw = decoder(data, max_pixels, fmt)
        pixels = raw.pixels
        if raw.icc:
            pixels = _deep_to_srgb(pixels, raw.bit_depth, raw.icc)
    except ImageDecodeError:
        raise
    except Exception as e:  # Decoders signal damage with many exception types.
        raise ImageDecodeError(
            f"corrupt or truncated {fmt.upper()}: {type(e).__name__}: {e}") from e
    if raw.bit_depth == 8:  # e.g. 8-bit data scaled into a 16-bit container
        pixels = pixels.astype(np.uint8)
    return DecodedImage(_to_rgb(_orient(pixels, raw.orientation)), raw.bit_depth, fmt,
                        raw.alpha_dropped)


def format_of(data: bytes) -> str:
    """The format of a file's bytes, by its magic; `ImageDecodeError` if none we read."""
    if not data:
        raise ImageDecodeError("empty file")
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data[:4] in _TIFF_MAGIC:
        return "tiff"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    brands = _ftyp_brands(data)
    if brands & _AVIF_BRANDS:
        if not features.check("avif"):
            raise ImageDecodeError("AVIF needs Pillow built with libavif (Pillow's wheels "
                                   "have it from 11.3)")
        return "avif"
    if brands & _HEIF_BRANDS:
        raise ImageDecodeError("HEIF/HEIC is not supported: convert it to JPEG, PNG or AVIF")
    raise ImageDecodeError("not a PNG, TIFF, JPEG, WebP or AVIF file")


def _ftyp_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF file's leading `ftyp` box."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return set()
    size = min(struct.unpack(">I", data[:4])[0], len(data))
    return {data[8:12], *(data[i:i + 4] for i in range(16, size - 3, 4))}


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


def _decode_png(data: bytes, max_pixels: int, fmt: str) -> _Raw:
    chunks = dict(png_chunks(data))
    if b"IHDR" not in chunks or len(chunks[b"IHDR"]) < 13:
        raise ImageDecodeError("corrupt PNG: no IHDR header")
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    _check_size(width, height, max_pixels)
    if depth <= 8:
        return _decode_with_pillow(data, max_pixels, fmt)
    import tensorflow as tf  # Only 16-bit PNGs need it; keeps 8-bit decoding light.

    pixels = tf.io.decode_png(data, dtype=tf.uint16).numpy()
    significant = chunks.get(b"sBIT", b"")
    bit_depth = max(significant) if significant else _used_bits(pixels)
    icc = None
    if b"iCCP" in chunks:  # name, NUL, compression method (0: zlib), profile
        icc = zlib.decompress(chunks[b"iCCP"].split(b"\0", 1)[1][1:])
    return _deep(pixels >> (16 - bit_depth), bit_depth, _png_orientation(data), icc)


def _png_orientation(data: bytes) -> int:
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        return im.getexif().get(_EXIF_ORIENTATION, 1)


def _used_bits(pixels: np.ndarray) -> int:
    """16 minus the number of low bits that are zero in every sample (8 at least)."""
    ored = int(np.bitwise_or.reduce(pixels, axis=None))
    zeros = (ored & -ored).bit_length() - 1 if ored else 8
    return max(8, 16 - zeros)


def _decode_tiff(data: bytes, max_pixels: int, fmt: str) -> _Raw:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        _check_size(page.imagewidth, page.imagelength, max_pixels)
        if page.dtype is None or page.dtype.kind not in "ui":
            raise ImageDecodeError(f"unsupported TIFF sample type {page.dtype}")
        if page.dtype.itemsize == 1:
            return _decode_with_pillow(data, max_pixels, fmt)
        if page.dtype != np.uint16:
            raise ImageDecodeError(f"unsupported TIFF sample type {page.dtype}")
        if page.photometric not in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.MINISBLACK):
            raise ImageDecodeError(f"unsupported 16-bit TIFF photometric "
                                   f"{getattr(page.photometric, 'name', page.photometric)}")
        pixels = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            pixels = np.moveaxis(pixels, 0, -1)
        orientation = int(page.tags.valueof("Orientation", 1))
        icc = page.tags.valueof(_TIFF_ICC_TAG)
        bits = page.bitspersample
    # BitsPerSample < 16 means the samples are stored right-aligned already.
    if bits < 16:
        return _deep(pixels, max(8, bits), orientation, icc)
    bit_depth = _used_bits(pixels)
    return _deep(pixels >> (16 - bit_depth), bit_depth, orientation, icc)


def _deep(pixels: np.ndarray, bit_depth: int, orientation: int, icc) -> _Raw:
    """A 16-bit container's samples with their alpha (the last of 2 or 4
    channels) split off, to be dropped."""
    alpha_dropped = False
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
        alpha_dropped = bool(pixels[..., -1].min() < (1 << bit_depth) - 1)
        pixels = pixels[..., :-1]
    return _Raw(pixels, bit_depth, orientation, bytes(icc) if icc else None, alpha_dropped)


def _decode_with_pillow(data: bytes, max_pixels: int, fmt: str) -> _Raw:
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"decompression bomb: {e}") from e
    with im:
        _check_size(im.width, im.height, max_pixels)
        if im.mode not in _PILLOW_MODES:
            raise ImageDecodeError(f"unsupported image mode {im.mode}")
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        icc = im.info.get("icc_profile")
        if "transparency" in im.info and im.mode in ("1", "L", "P", "RGB"):
            im = im.convert("RGBA")  # A transparent colour as alpha (Pillow warns otherwise).
        alpha_dropped = False
        if im.mode in ("LA", "PA", "RGBA"):
            alpha_dropped = im.getchannel("A").getextrema()[0] < 255
            im = im.convert("L" if im.mode == "LA" else "RGB")
        if icc:
            im = _to_srgb(im, icc)
        if im.mode not in ("L", "RGB"):
            im = im.convert("L" if im.mode == "1" else "RGB")
        pixels = np.asarray(im)
    return _Raw(pixels, 8, orientation, alpha_dropped=alpha_dropped)


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    """The profile `icc` holds, or None if it is sRGB (its description says so)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError) as e:
        raise ImageDecodeError(f"unreadable ICC profile: {e}") from e
    description = profile.profile.profile_description or ""
    return None if "srgb" in description.lower() else profile


def _space(profile: ImageCms.ImageCmsProfile) -> str:
    return profile.profile.xcolor_space.strip()


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """An 8-bit image in the colour space of its profile `icc`, in sRGB (by LittleCMS)."""
    profile = _profile(icc)
    if profile is None:
        return im
    space = _space(profile)
    mode = _PROFILE_MODES.get(space)
    if mode == "RGB" and im.mode in ("1", "L", "P", "YCbCr", "RGBX"):
        im = im.convert("RGB")  # e.g. a gray image tagged with an RGB profile
    elif mode == "L" and im.mode == "1":
        im = im.convert("L")
    if im.mode != mode:
        raise ImageDecodeError(f"ICC profile of colour space {space!r} on a {im.mode} image")
    try:
        return _srgb_transform(icc, im.mode).apply(im)
    except ImageCms.PyCMSError as e:
        raise ImageDecodeError(f"ICC profile conversion failed: {e}") from e


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    """LittleCMS's transform of `mode` images in the (not sRGB) profile `icc`
    to sRGB, at its default perceptual intent, as `ImageCms.profileToProfile`
    builds it. Built once per profile and mode: building it took 7-10 ms
    against 0.2 ms to apply it to a 64x64 image and 21 ms to a 512x512 one,
    and a bucket of photos from one camera or phone carries one profile.
    Bounded, as a profile can be large (a lookup-table one, hundreds of KB)
    and a corpus can hold many; LittleCMS applies one transform from
    several threads at once (a worker's)."""
    return ImageCms.buildTransform(_profile(icc), _srgb(), mode, "RGB")


def _deep_to_srgb(pixels: np.ndarray, bit_depth: int, icc: bytes) -> np.ndarray:
    """Right-aligned `bit_depth`-bit samples in the colour space of the matrix/TRC
    profile `icc`, in sRGB at the same depth: each channel through its tone
    curve to linear light, the profile's colorants to the D50 connection space
    and sRGB's back, clipped, sRGB's curve. Gray profiles map through their
    curve to sRGB gray. In float32, a megapixel at a time (a 100-megapixel
    source needs no 10 GB of temporaries)."""
    profile = _profile(icc)
    if profile is None:
        return pixels
    tags = _icc_tags(icc)
    if b"A2B0" in tags or b"A2B1" in tags:
        raise ImageDecodeError(f"a {bit_depth}-bit source's ICC profile is built of lookup "
                               "tables, which only 8-bit sources are converted by: convert "
                               "it to sRGB first")
    space = _space(profile)
    gray = pixels.ndim == 2 or pixels.shape[-1] == 1
    if space == "GRAY" and gray and b"kTRC" in tags:
        curves, matrix = [_tone_curve(tags[b"kTRC"])], None
    elif space == "RGB" and all(tag in tags for tag in (b"rTRC", b"gTRC", b"bTRC")):
        curves = [_tone_curve(tags[tag]) for tag in (b"rTRC", b"gTRC", b"bTRC")]
        matrix = np.linalg.solve(_colorants(_srgb()), _colorants(profile)).T.astype(np.float32)
    else:
        raise ImageDecodeError(f"unsupported ICC profile (colour space {space!r}) on a "
                               f"{bit_depth}-bit {'gray' if gray else 'RGB'} source: convert "
                               "it to sRGB first")
    peak = np.float32((1 << bit_depth) - 1)
    pixels = pixels.reshape(*pixels.shape[:2], -1)
    if len(curves) == 3 and gray:
        pixels = np.repeat(pixels, 3, axis=-1)
    # Each channel's curve at every code value: linear light by lookup.
    codes = np.arange((1 << bit_depth), dtype=np.float32) / peak
    tables = [np.asarray(curve(codes), np.float32) for curve in curves]
    out = np.empty(pixels.shape, pixels.dtype)
    rows = max(1, (1 << 20) // pixels.shape[1])
    for top in range(0, pixels.shape[0], rows):
        chunk = pixels[top:top + rows]
        linear = np.stack([table[chunk[..., i]] for i, table in enumerate(tables)], axis=-1)
        if matrix is not None:
            linear = linear @ matrix
        encoded = _srgb_curve(np.clip(linear, 0.0, 1.0)) * peak
        out[top:top + rows] = np.rint(encoded).astype(pixels.dtype)
    return out


def _colorants(profile: ImageCms.ImageCmsProfile) -> np.ndarray:
    """The matrix of a profile's red, green and blue colorants (D50 XYZ) as columns."""
    p = profile.profile
    return np.array([p.red_colorant[0], p.green_colorant[0], p.blue_colorant[0]]).T


def _srgb_curve(linear: np.ndarray) -> np.ndarray:
    """sRGB's encoding (IEC 61966-2-1) of linear values in [0, 1]."""
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.power(linear, 1 / 2.4) - 0.055).astype(np.float32)


def _icc_tags(icc: bytes) -> dict[bytes, bytes]:
    """An ICC profile's tags by signature."""
    (count,) = struct.unpack(">I", icc[128:132])
    tags = {}
    for i in range(min(count, (len(icc) - 132) // 12)):
        signature, offset, size = struct.unpack(">4sII", icc[132 + 12 * i:144 + 12 * i])
        tags[signature] = icc[offset:offset + size]
    return tags


def _tone_curve(tag: bytes):
    """The function [0, 1] -> linear [0, 1] of an ICC `curv` or `para` tag."""
    kind = tag[:4]
    if kind == b"curv":
        (count,) = struct.unpack(">I", tag[8:12])
        if count == 0:
            return lambda x: x
        if count == 1:  # a gamma, u8Fixed8
            gamma = struct.unpack(">H", tag[12:14])[0] / 256.0
            return lambda x: np.power(x, gamma)
        if len(tag) < 12 + 2 * count:
            raise ImageDecodeError("truncated ICC tone curve")
        table = np.frombuffer(tag[12:12 + 2 * count], ">u2") / 65535.0
        return lambda x: np.interp(x, np.linspace(0.0, 1.0, count), table)
    if kind == b"para":
        (function,) = struct.unpack(">H", tag[8:10])
        arity = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(function)
        if arity is None:
            raise ImageDecodeError(f"unknown ICC parametric curve type {function}")
        g, a, b, c, d, e, f = [v / 65536.0 for v in struct.unpack(
            f">{arity}i", tag[12:12 + 4 * arity])] + [0.0] * (7 - arity)
        # As type 4, (a x + b)^g + e from d on, c x + f below, with the
        # parameters a type leaves out as the ICC specification defines it.
        if function in (1, 2) and a == 0:
            raise ImageDecodeError("invalid ICC parametric curve: a = 0")
        if function == 0:  # x^g
            a, d = 1.0, 0.0
        elif function == 1:  # (a x + b)^g from -b/a on, 0 below
            d = -b / a
        elif function == 2:  # (a x + b)^g + c from -b/a on, c below
            c, d, e, f = 0.0, -b / a, c, c

        def curve(x):
            above = np.power(np.maximum(a * x + b, 0.0), g) + e
            return np.where(x >= d, above, c * x + f)

        return curve
    raise ImageDecodeError(f"unsupported ICC tone curve type {kind!r}")


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
    channels = pixels.shape[-1]  # Alpha is split off by the decoders.
    if channels == 1:  # gray
        return np.repeat(pixels, 3, axis=-1)
    if channels == 3:
        return np.ascontiguousarray(pixels)
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

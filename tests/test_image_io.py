"""Decoding real photographs, wide-gamut and transparent ones, and damaged files
with `sandwich.image_io`."""
import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image, ImageCms, ImageOps

from sandwich import image_io
from sandwich.image_io import ImageDecodeError, decode_image, encode_png16, insert_chunk_after_ihdr
from tests import icc_profiles, photos

PHOTO = photos.load("motorcycle_left.png")[:96, :128]  # small, real, 8-bit RGB


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _tiff(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **kwargs)
    return buffer.getvalue()


def _deep(bits: int) -> np.ndarray:
    """Real-photo content spread over `bits` bits, with every low bit in use."""
    noise = np.random.default_rng(bits).integers(0, 1 << (bits - 8), PHOTO.shape)
    return ((PHOTO.astype(np.uint32) << (bits - 8)) + noise).astype(np.uint16)


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"])
def test_bundled_photos_decode_as_pillow_does(name):
    from pipelines.sample_data import SAMPLES_DIR

    data = open(f"{SAMPLES_DIR}/{name}", "rb").read()
    image = decode_image(data)
    assert (image.bit_depth, image.format, image.pixels.dtype) == (8, "png", np.uint8)
    np.testing.assert_array_equal(image.pixels, np.asarray(_as_viewers_show(data)))


def _as_viewers_show(data: bytes) -> Image.Image:
    """Pillow's decoding in sRGB: through LittleCMS from the file's ICC
    profile (rocket.png is Adobe RGB), unless that profile is sRGB."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    icc = Image.open(io.BytesIO(data)).info.get("icc_profile")
    if not icc or "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))):
        return image
    return ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                     ImageCms.createProfile("sRGB"), outputMode="RGB")


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_16_bit_png_keeps_every_bit(bits):
    pixels = _deep(bits)
    data = encode_png16(pixels, bits)
    image = decode_image(data)
    assert (image.bit_depth, image.pixels.dtype) == (bits, np.uint16)
    np.testing.assert_array_equal(image.pixels, pixels)
    # The trap this module exists for: Pillow reads the same file as 8 bits.
    assert np.asarray(Image.open(io.BytesIO(data))).dtype == np.uint8


def test_16_bit_png_without_sbit_infers_depth_from_unused_low_bits():
    pixels = _deep(12)
    image = decode_image(tf.io.encode_png(pixels << 4).numpy())
    assert image.bit_depth == 12
    np.testing.assert_array_equal(image.pixels, pixels)
    scaled_8_bit = decode_image(tf.io.encode_png(PHOTO.astype(np.uint16) << 8).numpy())
    assert (scaled_8_bit.bit_depth, scaled_8_bit.pixels.dtype) == (8, np.uint8)
    np.testing.assert_array_equal(scaled_8_bit.pixels, PHOTO)
    gray = decode_image(tf.io.encode_png(_deep(16)[..., :1]).numpy())
    assert gray.bit_depth == 16 and gray.pixels.shape == PHOTO.shape
    np.testing.assert_array_equal(gray.pixels[..., 0], gray.pixels[..., 2])


@pytest.mark.parametrize("layout", ["contiguous", "planar", "gray"])
def test_16_bit_tiff_keeps_every_bit(layout):
    pixels = _deep(16)
    if layout == "contiguous":
        data, expected = _tiff(pixels, photometric="rgb", compression="zlib"), pixels
    elif layout == "planar":
        data = _tiff(np.moveaxis(pixels, -1, 0), photometric="rgb", planarconfig="separate")
        expected = pixels
    else:
        data = _tiff(pixels[..., 1], photometric="minisblack")
        expected = np.repeat(pixels[..., 1:2], 3, axis=-1)
    image = decode_image(data)
    assert (image.bit_depth, image.format) == (16, "tiff")
    np.testing.assert_array_equal(image.pixels, expected)


def test_tiff_of_10_bit_samples_scaled_to_16_bits():
    pixels = _deep(10)
    image = decode_image(_tiff(pixels << 6, photometric="rgb"))
    assert image.bit_depth == 10
    np.testing.assert_array_equal(image.pixels, pixels)


def test_8_bit_tiff_and_jpeg():
    tiff = decode_image(_tiff(PHOTO, photometric="rgb"))
    assert (tiff.bit_depth, tiff.pixels.dtype) == (8, np.uint8)
    np.testing.assert_array_equal(tiff.pixels, PHOTO)
    jpeg = decode_image(open(photos.SKIMAGE_DIR / "retina.jpg", "rb").read())
    assert (jpeg.format, jpeg.bit_depth, jpeg.pixels.shape) == ("jpeg", 8, (1411, 1411, 3))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(PHOTO), "JPEG", exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(decode_image(data).pixels, expected)


def test_tiff_orientation_applies_to_16_bit_pixels():
    pixels = _deep(16)
    data = _tiff(pixels, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    np.testing.assert_array_equal(decode_image(data).pixels, np.rot90(pixels, -1))


def test_gray_palette_and_alpha_become_rgb():
    rgb = Image.fromarray(PHOTO)
    gray = decode_image(_encode(rgb.convert("L"), "PNG")).pixels
    assert gray.shape == PHOTO.shape and np.array_equal(gray[..., 0], gray[..., 2])
    palette = rgb.quantize(64)
    np.testing.assert_array_equal(decode_image(_encode(palette, "PNG")).pixels,
                                  np.asarray(palette.convert("RGB")))
    one_bit = decode_image(_encode(rgb.convert("1"), "PNG"))
    assert one_bit.bit_depth == 8 and set(np.unique(one_bit.pixels)) <= {0, 255}


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"just some text", "not a PNG, TIFF, JPEG, WebP or AVIF"),
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIF/HEIC is not supported"),
    (_encode(Image.fromarray(PHOTO), "WEBP")[:400], "corrupt or truncated WEBP"),
    (_encode(Image.fromarray(PHOTO), "PNG")[:3000], "corrupt or truncated PNG"),
    (_encode(Image.fromarray(PHOTO), "JPEG")[:1500], "corrupt or truncated JPEG"),
    (_tiff(PHOTO, photometric="rgb")[:500], "corrupt or truncated TIFF"),
    (_png_header_only(60000, 60000), "decompression bomb"),
    (b"\x89PNG\r\n\x1a\n", "no IHDR"),
])
def test_bad_files_raise_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data)
    assert reason in error.value.reason


def test_pixel_limit_applies_before_decoding():
    data = _encode(Image.fromarray(PHOTO), "JPEG")
    assert decode_image(data, max_pixels=PHOTO.shape[0] * PHOTO.shape[1]).pixels.shape == PHOTO.shape
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(data, max_pixels=1000)


def test_encode_png16_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        encode_png16(np.full((4, 4, 3), 1024, np.uint16), 10)
    with pytest.raises(ValueError, match="bit_depth"):
        encode_png16(np.zeros((4, 4, 3), np.uint16), 8)


# --- Formats a bucket of photographs holds beside PNG and JPEG ---------------

@pytest.mark.parametrize("fmt, options", [("WEBP", {"lossless": True}),
                                          ("WEBP", {"quality": 80}), ("AVIF", {"quality": 80})])
def test_webp_and_avif_decode_as_pillow_does(fmt, options):
    data = _encode(Image.fromarray(PHOTO), fmt, **options)
    image = decode_image(data)
    assert (image.format, image.bit_depth, image.alpha_dropped) == (fmt.lower(), 8, False)
    np.testing.assert_array_equal(image.pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    if options.get("lossless"):
        np.testing.assert_array_equal(image.pixels, PHOTO)


def test_webp_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(PHOTO), "WEBP", lossless=True, exif=exif)
    np.testing.assert_array_equal(decode_image(data).pixels, np.rot90(PHOTO, -1))


# --- Colour: ICC profiles to sRGB --------------------------------------------

P3 = icc_profiles.matrix_profile("Display P3", icc_profiles.DISPLAY_P3)
# Saturated and everyday colours: the P3 values a phone stores, which shown
# as sRGB (the profile dropped) would be duller and shifted.
SWATCHES = np.array([[230, 40, 30], [40, 200, 60], [30, 60, 220], [240, 200, 40],
                     [200, 120, 90], [90, 160, 210], [128, 128, 128], [250, 250, 250]], np.uint8)


# Gray of gamma 1.8, as older Macs tagged gray images.
GRAY_18 = icc_profiles.gray_profile("Gray gamma 1.8", icc_profiles.gamma_curve(1.8))


def _littlecms(pixels: np.ndarray, icc: bytes, mode: str = "RGB") -> np.ndarray:
    """Pillow's own conversion of 8-bit `pixels` in profile `icc` to sRGB."""
    return np.asarray(ImageCms.profileToProfile(
        Image.fromarray(pixels, mode), ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"), outputMode="RGB"))


def _swatch_photo() -> np.ndarray:
    """PHOTO with a row of flat swatches across its top."""
    pixels = PHOTO.copy()
    pixels[:16] = np.repeat(SWATCHES, 16, axis=0)[None, :PHOTO.shape[1]]
    return pixels


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_display_p3_is_converted_to_srgb_as_littlecms_does(fmt):
    pixels = _swatch_photo()
    options = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    data = _encode(Image.fromarray(pixels), fmt, icc_profile=P3, **options)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_image(data).pixels
    np.testing.assert_array_equal(decoded, _littlecms(stored, P3))
    # The test can fail: shown without its profile, a P3 red is off by far more.
    assert np.abs(decoded[:16].astype(int) - stored[:16]).max() > 20


def test_srgb_profiles_and_gray_profiles():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _encode(Image.fromarray(PHOTO), "PNG", icc_profile=srgb)
    np.testing.assert_array_equal(decode_image(data).pixels, PHOTO)  # not touched
    gray = PHOTO[..., 1]
    data = _encode(Image.fromarray(gray), "PNG", icc_profile=GRAY_18)
    np.testing.assert_array_equal(decode_image(data).pixels, _littlecms(gray, GRAY_18, "L"))
    assert decode_image(data).pixels.mean() > gray.mean() + 8  # gamma 1.8 is lighter in sRGB


def test_photos_of_one_profile_share_one_littlecms_transform():
    """A bucket of one phone's photos builds LittleCMS's transform once (it
    costs more than converting a small photo), and each photo still comes
    out as LittleCMS converts it on its own."""
    image_io._srgb_transform.cache_clear()
    for pixels in (_swatch_photo(), 255 - _swatch_photo()):
        data = _encode(Image.fromarray(pixels), "PNG", icc_profile=P3)
        np.testing.assert_array_equal(decode_image(data).pixels, _littlecms(pixels, P3))
    decode_image(_encode(Image.fromarray(PHOTO[..., 1]), "PNG", icc_profile=GRAY_18))
    built = image_io._srgb_transform.cache_info()
    assert (built.misses, built.hits) == (2, 1)  # P3 on RGB, then gamma 1.8 on gray


def test_unreadable_or_mismatched_profiles_are_refused():
    data = _encode(Image.fromarray(PHOTO), "PNG", icc_profile=b"not a profile" * 20)
    with pytest.raises(ImageDecodeError, match="unreadable ICC profile"):
        decode_image(data)
    cmyk = icc_profiles._assemble(b"CMYK", [(b"desc", icc_profiles._text("a press"))])
    data = _encode(Image.fromarray(PHOTO), "PNG", icc_profile=cmyk)
    with pytest.raises(ImageDecodeError, match="'CMYK' on a RGB image"):
        decode_image(data)


def _png16_with_profile(pixels: np.ndarray, icc: bytes) -> bytes:
    iccp = b"test profile\0\0" + zlib.compress(icc)
    return insert_chunk_after_ihdr(encode_png16(pixels, 16), b"iCCP", iccp)


@pytest.mark.parametrize("curve", ["para", "gamma", "table"])
@pytest.mark.parametrize("container", ["png", "tiff"])
def test_16_bit_sources_are_converted_to_within_a_level_of_littlecms(curve, container):
    """16-bit sources are converted here (Pillow's LittleCMS is 8-bit only):
    an 8-bit photo scaled to 16 bits must come out as LittleCMS converts the
    8-bit photo, to within a level at 8 bits, and keep 16 bits."""
    tone = {"para": icc_profiles.para_curve(),
            "gamma": icc_profiles.gamma_curve(563 / 256),  # Adobe RGB's
            "table": icc_profiles.table_curve(np.linspace(0, 1, 256) ** 1.8)}[curve]
    icc = icc_profiles.matrix_profile("Wide " + curve, icc_profiles.ADOBE_RGB, tone)
    pixels = _swatch_photo()
    deep = pixels.astype(np.uint16) * 257
    data = (_png16_with_profile(deep, icc) if container == "png"
            else _tiff(deep, photometric="rgb", iccprofile=icc))
    image = decode_image(data)
    assert (image.bit_depth, image.pixels.dtype) == (16, np.uint16)
    expected = _littlecms(pixels, icc).astype(float)
    assert np.abs(image.pixels / 257 - expected).max() <= 1.0
    assert np.abs(image.pixels / 257 - pixels).max() > 10  # the profile did something


def test_16_bit_gray_and_lookup_table_profiles():
    """A gray profile's curve to linear light, then sRGB's: checked against the
    formulas themselves (LittleCMS's 8-bit gray transform is itself off by
    up to 1.5 levels in the darks)."""
    gray = PHOTO[..., 1].astype(np.uint16) * 257
    png = insert_chunk_after_ihdr(tf.io.encode_png(gray[..., None]).numpy(), b"iCCP",
                                  b"g\0\0" + zlib.compress(GRAY_18))
    linear = (gray / 65535.0) ** (461 / 256)  # 1.8 as the profile stores it, u8Fixed8
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    decoded = decode_image(png).pixels
    assert np.abs(decoded[..., 0] - srgb * 65535).max() <= 0.51  # rounding, and float32's
    assert np.array_equal(decoded[..., 0], decoded[..., 2])
    lut = icc_profiles._assemble(b"RGB ", [(b"desc", icc_profiles._text("LUT based")),
                                           (b"A2B0", b"mft2" + b"\0" * 48)])
    with pytest.raises(ImageDecodeError, match="lookup tables"):
        decode_image(_png16_with_profile(gray[..., None].repeat(3, -1), lut))


# --- Alpha: dropped, colour kept, and said ------------------------------------

def test_transparency_is_dropped_and_reported():
    rgb = Image.fromarray(PHOTO)
    rgba = rgb.copy()
    rgba.putalpha(7)
    for fmt, options in (("PNG", {}), ("WEBP", {"lossless": True})):
        image = decode_image(_encode(rgba, fmt, **options))
        assert image.alpha_dropped, fmt
        np.testing.assert_array_equal(image.pixels, PHOTO)  # colours kept as stored
    rgba.putalpha(255)  # an alpha channel that hides nothing loses nothing
    assert not decode_image(_encode(rgba, "PNG")).alpha_dropped
    palette = rgb.quantize(64)
    assert not decode_image(_encode(palette, "PNG")).alpha_dropped
    assert decode_image(_encode(palette, "PNG", transparency=0)).alpha_dropped
    gray_alpha = rgb.convert("LA")
    assert not decode_image(_encode(gray_alpha, "PNG")).alpha_dropped


@pytest.mark.parametrize("container", ["png", "tiff"])
def test_16_bit_alpha_is_dropped_and_reported(container):
    pixels = _deep(16)
    alpha = np.full(pixels.shape[:2] + (1,), 65535, np.uint16)
    alpha[:8, :8] = 0
    rgba = np.concatenate([pixels, alpha], axis=-1)
    encode = (lambda a: tf.io.encode_png(a).numpy()) if container == "png" else (
        lambda a: _tiff(a, photometric="rgb", extrasamples=[2]))
    image = decode_image(encode(rgba))
    assert (image.alpha_dropped, image.bit_depth) == (True, 16)
    np.testing.assert_array_equal(image.pixels, pixels)
    alpha[:8, :8] = 65535
    assert not decode_image(encode(np.concatenate([pixels, alpha], axis=-1))).alpha_dropped

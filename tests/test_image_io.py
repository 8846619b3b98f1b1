"""Decoding real photographs and damaged files with `sandwich.image_io`."""
import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image, ImageOps

from sandwich.image_io import ImageDecodeError, decode_image, encode_png16
from tests import photos

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
    np.testing.assert_array_equal(image.pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


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
    rgba = rgb.copy()
    rgba.putalpha(7)  # alpha is dropped, colours kept as stored
    np.testing.assert_array_equal(decode_image(_encode(rgba, "PNG")).pixels, PHOTO)
    one_bit = decode_image(_encode(rgb.convert("1"), "PNG"))
    assert one_bit.bit_depth == 8 and set(np.unique(one_bit.pixels)) <= {0, 255}


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"just some text", "not a PNG, TIFF or JPEG"),
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

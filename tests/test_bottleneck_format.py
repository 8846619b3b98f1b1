"""The fallbacks' files: a plain JPEG, Pillow's or jpegli's, with the header in a COM segment.

jpegli (`pyjpegli`) takes no comment, so its header goes in a COM segment
inserted into jpegli's own file (`alternatives.with_comment`); these tests
hold that file to jpegli's, byte for byte but for the segment, and pixel
for pixel as a viewer decodes it.
"""
import dataclasses
import io

import numpy as np
import pyjpegli
import pytest
from PIL import Image

from codec import bottleneck_format
from codec.bottleneck_format import JPEGLI_FALLBACK, BottleneckError, Header
from sandwich import alternatives
from tests import photos

# Odd on both sides: off the 16-pixel grid of 4:2:0 blocks.
CROP = (slice(40, 197), slice(60, 293))
COMMENT = b'{"sandwich":2,"note":"a comment"}'


def _photo() -> np.ndarray:
    return np.ascontiguousarray(photos.load("chelsea.png")[CROP])


def _own_jpegli(rgb: np.ndarray, quality: int) -> bytes:
    """pyjpegli's file, called directly."""
    return pyjpegli.encode(rgb.tobytes(), rgb.shape[1], rgb.shape[0], quality)


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment from SOI up to the first scan."""
    assert data[:2] == b"\xff\xd8"
    at, found = 2, []
    while True:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        found.append((marker, data[at + 4:at + 2 + length]))
        if marker == 0xDA:  # SOS: entropy-coded data follows
            return found
        at += 2 + length


def _pillow_jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=80)  # with a JFIF APP0 segment
    return buffer.getvalue()


@pytest.mark.parametrize("make, after", [(_pillow_jpeg, 0xE0), (lambda rgb: _own_jpegli(rgb, 80), None)])
def test_a_comment_goes_in_after_soi_or_after_app0_and_nothing_else_changes(make, after):
    """Pillow's file has a JFIF APP0 segment, which must stay first; jpegli's
    has none. Either way Pillow reads the comment back, the file is the
    original with one segment added, and decodes to the very same pixels."""
    rgb = _photo()
    original = make(rgb)
    commented = alternatives.with_comment(original, COMMENT)
    before = _segments(original)
    at = 0 if after is None else 1
    assert [marker for marker, _ in before[:at]] == ([] if after is None else [after])
    assert 0xFE not in [marker for marker, _ in before]
    assert _segments(commented) == before[:at] + [(0xFE, COMMENT)] + before[at:]
    assert len(commented) == len(original) + 4 + len(COMMENT)
    with Image.open(io.BytesIO(commented)) as image:
        assert image.info["comment"] == COMMENT
    assert np.array_equal(alternatives.pillow_decode(commented), alternatives.pillow_decode(original))


def test_a_comment_needs_a_jpeg_and_fits_in_a_segment():
    jpeg = _own_jpegli(np.zeros((16, 16, 3), np.uint8), 80)
    with pytest.raises(ValueError, match="no start-of-image"):
        alternatives.with_comment(b"\x89PNG" + jpeg, COMMENT)
    with pytest.raises(ValueError, match="at most 65533 bytes"):
        alternatives.with_comment(jpeg, b"x" * 65534)
    with Image.open(io.BytesIO(alternatives.with_comment(jpeg, b"x" * 65533))) as image:
        assert image.info["comment"] == b"x" * 65533


@pytest.mark.parametrize("quality", [1, 37, 90, 100])
def test_a_jpegli_fallback_is_jpegli_s_own_file_with_the_header(quality):
    """`encode` of a jpegli header is pyjpegli's file at the header's quality
    plus the COM segment: it decodes to exactly jpegli's pixels, its header
    reads back (without decoding, and with), and it needs no model."""
    rgb = _photo()
    height, width = rgb.shape[:2]
    header = Header.fallback(quality, height, width, 8, "0123456789", "bpp<=1",
                             model_id=JPEGLI_FALLBACK)
    data = bottleneck_format.encode(rgb, header)
    own = _own_jpegli(rgb, quality)
    assert data == alternatives.with_comment(own, header.to_comment())
    assert np.array_equal(alternatives.pillow_decode(data), alternatives.pillow_decode(own))
    assert bottleneck_format.read_header(data) == header
    decoded_header, pixels = bottleneck_format.decode(data)
    assert decoded_header == header and np.array_equal(pixels, alternatives.pillow_decode(own))
    assert (header.kind, header.is_fallback, header.scenario) == ("jpegli", True, "jpegli")
    header.check_model({})  # no model of the set needed


def test_a_jpegli_header_must_be_what_the_fallback_writes():
    """As a plain-JPEG fallback's: factor 1, 8 bits, its own scenario."""
    header = Header.fallback(60, 20, 24, 8, model_id=JPEGLI_FALLBACK)
    for field, value in (("factor", 2), ("bit_depth", 10), ("scenario", "plain-jpeg"),
                         ("jpeg_mode", "ycbcr-444")):
        with pytest.raises(BottleneckError, match=field):
            dataclasses.replace(header, **{field: value}).check_model({})
    with pytest.raises(ValueError, match="a fallback is one of"):
        Header.fallback(60, 20, 24, 8, model_id="identity")

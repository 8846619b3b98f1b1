"""What the fuzzer feeds the untrusted-input boundaries, and what it accepts back.

Three targets, each a Hypothesis strategy of inputs and a `run` that returns
the outcome's name or raises on anything the contract forbids:

- `decode_image`: small PNG (8 and 16 bit, one with a Display P3 profile),
  TIFF (16 bit), JPEG, WebP and AVIF files, mutated (bytes overwritten, inserted, deleted, truncated; PNG chunk
  lengths and IHDR fields set, with or without a valid CRC). Allowed: a
  decoded image whose values fit its bit depth, or `ImageDecodeError`.
- the bottleneck header: JSON comments with fields replaced by any JSON
  value, deleted, or replaced by raw text (deep nesting, `1e400`, 5000-digit
  numbers), inside a JPEG of random size. Allowed: a header whose claimed
  size the JPEG covers exactly, or `BottleneckError`.
- output names: random names of `/`, `..`, glob characters, control and
  Unicode characters below an input directory, mapped to an output and
  written there. Allowed: `Rejected`, or a file inside `--output`.

The tests run a few dozen examples each (`tests/test_fuzz.py`); the
campaign (`benchmarks/fuzz_campaign.py`) runs thousands and counts outcomes.
"""
from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib

import numpy as np
import tifffile
from hypothesis import strategies as st
from PIL import Image

from codec import bottleneck_format
from pipelines import batch_jobs
from pipelines.dead_letters import Rejected
from sandwich.image_io import (ImageDecodeError, decode_image, encode_png16,
                               insert_chunk_after_ihdr)
from sandwich.specs import ModelSpec
from tests import icc_profiles

DECODED, REJECTED = "decoded", "rejected"
# Small enough that no mutated header can make a test allocate much.
MAX_PIXELS = 1 << 16
SPEC = ModelSpec(model_id="fuzz-model", scenario="high_res", bit_depth=8, factor=2, qstep=16.0)


@functools.cache
def seeds() -> dict[str, bytes]:
    """One small valid file of each kind the decoder takes."""
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (10, 13, 3), dtype=np.uint8)
    rgb10 = rng.integers(0, 1024, (9, 11, 3), dtype=np.uint16)
    out = {"png16": encode_png16(rgb10, 10)}
    for kind, fmt in (("png8", "PNG"), ("jpeg", "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(rgb8).save(buffer, fmt)
        out[kind] = buffer.getvalue()
    for kind, fmt, options in (("webp", "WEBP", {"lossless": True}), ("avif", "AVIF", {})):
        buffer = io.BytesIO()
        Image.fromarray(rgb8).save(buffer, fmt, **options)
        out[kind] = buffer.getvalue()
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb10 << 6, photometric="rgb")
    out["tiff16"] = buffer.getvalue()
    # The ICC parser of 16-bit sources (sandwich.image_io) meets mutated profiles.
    p3 = icc_profiles.matrix_profile("Display P3", icc_profiles.DISPLAY_P3)
    out["png16_p3"] = insert_chunk_after_ihdr(out["png16"], b"iCCP", b"p3\0\0" + zlib.compress(p3))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb10 << 6, photometric="rgb", iccprofile=p3)  # stored as is
    out["tiff16_p3"] = buffer.getvalue()
    return out


def _png_chunk_offsets(data: bytes) -> list[int]:
    """Where each PNG chunk's length field starts."""
    offsets, pos = [], 8
    while pos + 8 <= len(data):
        offsets.append(pos)
        pos += 12 + struct.unpack(">I", data[pos:pos + 4])[0]
    return offsets


@st.composite
def mutated_images(draw) -> bytes:
    """A seed file with up to five mutations."""
    kind = draw(st.sampled_from(sorted(seeds())))
    data = bytearray(seeds()[kind])
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["overwrite", "insert", "delete", "truncate",
                                   "chunk_length", "ihdr"]))
        # Headers hold the interesting fields: aim there half of the time.
        end = len(data) if draw(st.booleans()) else min(len(data), 64)
        pos = draw(st.integers(0, max(0, end - 1)))
        if op == "overwrite" and data:
            data[pos:pos + 4] = draw(st.binary(min_size=1, max_size=4))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "chunk_length" and kind.startswith("png"):
            offsets = _png_chunk_offsets(bytes(data))
            if offsets:
                at = draw(st.sampled_from(offsets))
                data[at:at + 4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
        elif op == "ihdr" and kind.startswith("png") and len(data) >= 33:
            fields = struct.unpack(">IIBBBBB", data[16:29])
            field = draw(st.integers(0, 6))
            values = list(fields)
            values[field] = draw(st.integers(0, 2**32 - 1 if field < 2 else 255))
            data[16:29] = struct.pack(">IIBBBBB", *values)
            if draw(st.booleans()):  # a valid CRC gets past the first check
                data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def run_decode(data: bytes) -> str:
    """The decoder's contract on one file."""
    try:
        image = decode_image(data, max_pixels=MAX_PIXELS)
    except ImageDecodeError as e:
        assert e.reason, "a rejection must say why"
        return REJECTED
    pixels = image.pixels
    assert pixels.ndim == 3 and pixels.shape[-1] == 3, pixels.shape
    assert pixels.shape[0] * pixels.shape[1] <= MAX_PIXELS
    assert 8 <= image.bit_depth <= 16 and int(pixels.max(initial=0)) < 2 ** image.bit_depth
    return DECODED


def _valid_header(height: int, width: int) -> dict:
    header = bottleneck_format.Header.of(SPEC, 16.0, height, width, 8, "0123456789")
    return json.loads(header.to_comment())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8)
_RAW = st.sampled_from([
    b"[" * 32_000 + b"]" * 32_000, b'{"sandwich":1,"height":' + b"[" * 50_000,
    b"1e400", b"-1e400", b"9" * 5000, b'{"sandwich":1e400}', b"\xff\xfe\x00", b"", b"null",
    b'{"sandwich":true}', b'{"sandwich":1,"height":1e400,"width":1e400}'])


@st.composite
def header_comments(draw) -> tuple[bytes, tuple[int, int]]:
    """(a JPEG comment, the (h', w') of the bottleneck it travels with)."""
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(_RAW), size
    # Mostly a size the bottleneck covers (factor 2), so that parsing gets deep.
    claimed = tuple(2 * side - draw(st.integers(0, 1)) if draw(st.integers(0, 3))
                    else draw(st.integers(1, 60)) for side in size)
    data = _valid_header(*claimed)
    for name in draw(st.lists(st.sampled_from(sorted(data)), max_size=3)):
        if draw(st.booleans()):
            data[name] = draw(_JSON)
        else:
            data.pop(name, None)
    text = json.dumps(data)
    if choice == 1:  # a raw number where JSON cannot carry one
        text = text.replace('"height": ', '"height": ' + draw(st.sampled_from(
            ["1e400", "9" * 4400 + "+", "-0", "1.5e3"])), 1)
    return text.encode(), size


def _bottleneck(comment: bytes, size: tuple[int, int]) -> bytes:
    pixels = np.full((*size, 3), 128, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", comment=comment)
    return buffer.getvalue()


def run_header(example: tuple[bytes, tuple[int, int]]) -> str:
    """The header parser's contract: on its own, and inside a bottleneck."""
    comment, size = example
    try:
        header = bottleneck_format.Header.from_comment(comment)
        header.check_model({SPEC.model_id: SPEC})
        decoded, pixels = bottleneck_format.decode(_bottleneck(comment, size),
                                                   max_pixels=MAX_PIXELS)
    except bottleneck_format.BottleneckError as e:
        assert e.reason, "a rejection must say why"
        return REJECTED
    assert decoded == header
    assert header.bottleneck_size() == pixels.shape[:2] == size
    assert header.height * header.width <= MAX_PIXELS and 0 < header.qstep <= 255
    return DECODED


_NAME_PARTS = ["a", "b.png", "/", "//", "..", ".", "*", "?", "[", "]", "[ab]", "\\", "\x00",
               "\n", "\x7f", "é", "日本", "\u202e", "\u200b", "\ud800", " ", "%2e%2e", "~", ":",
               "x" * 120]


@st.composite
def input_names(draw) -> str:
    """A name below the input directory, or (now and then) beside it."""
    name = "".join(draw(st.lists(st.sampled_from(_NAME_PARTS) | st.text(max_size=3),
                                 min_size=1, max_size=8)))
    return name if draw(st.integers(0, 9)) else "/" + name


def run_output_name(name: str, root: str) -> str:
    """Maps `root/in/<name>` to an output under `root/out` as the jobs do,
    writes it there, and checks that nothing landed outside `root/out`."""
    base, output = os.path.join(root, "in") + "/", os.path.join(root, "out")
    path = base.rstrip("/") + name if name.startswith("/") else base + name
    try:
        target = batch_jobs.output_path(path, base + "**", output, lambda r: r + ".jpg")
    except Rejected as e:
        assert e.reason, "a rejection must say why"
        return REJECTED
    resolved = os.path.realpath(target)
    assert resolved.startswith(os.path.realpath(output) + os.sep), (name, target)
    try:
        batch_jobs.write_atomically(target, b"written")
    except OSError:  # e.g. a file where a directory should be: the write step's dead letter
        return REJECTED
    return DECODED


def writes_outside(root: str) -> list[str]:
    """Files under `root` but not under `root/out` (there should be none)."""
    output = os.path.join(root, "out")
    found = []
    for directory, _, files in os.walk(root):
        if not (directory == output or directory.startswith(output + os.sep)):
            found += [os.path.join(directory, f) for f in files]
    return found


# Changes to a valid header that no bottleneck of its model may carry, each
# a different flaw (None deletes the field).
BAD_CHANGES = [
    {"height": 10**30}, {"height": True}, {"height": 20.5}, {"width": "24"}, {"qstep": 0},
    {"qstep": -3.0}, {"qstep": 1e300}, {"bit_depth": 10}, {"factor": 1},
    {"scenario": "high_bit_depth"}, {"model_id": "someone-else"}, {"model_id": "x" * 1000},
    {"source_bit_depth": 4}, {"height": 4000, "width": 4000}, {"sandwich": 1},
    {"sandwich": True}, {"source_stamp": [1]}, {"width": None}, {"factor": [[[[2]]]]},
    {"jpeg_mode": "planes"}, {"jpeg_mode": "ycbcr-422"}, {"jpeg_mode": None},
]
RAW_COMMENTS = [b"[" * 32_000 + b"]" * 32_000, b'{"sandwich":1,"qstep":1e400}', b"9" * 5000,
                b'{"sandwich":1,"height":1e400}', b"\xff\xfe"]


def bad_comments(valid: dict) -> list[bytes]:
    """Comments derived from the `valid` header (a dict) that must be refused,
    among them one that claims twice its bottleneck's size."""
    out = list(RAW_COMMENTS)
    for changes in BAD_CHANGES + [{"height": 2 * valid["height"], "width": 2 * valid["width"]}]:
        data = {**valid, **changes}
        out.append(json.dumps({k: v for k, v in data.items() if v is not None}).encode())
    return out


def bad_images(count: int, seed: int = 0) -> list[bytes]:
    """`count` files that no decoder may accept, of many kinds (cycled)."""
    rng = np.random.default_rng(seed)
    files = seeds()
    # A 1-pixel-high image too wide for any JPEG bottleneck (factor 2).
    too_wide = io.BytesIO()
    Image.fromarray(np.zeros((1, 140_000, 3), np.uint8)).save(too_wide, "PNG")
    makers = [
        lambda: b"",
        lambda: b"not a picture " + rng.bytes(int(rng.integers(0, 64))),
        lambda: b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(0, 300))),
        lambda: b"II*\x00" + rng.bytes(int(rng.integers(0, 300))),
        lambda: b"MM\x00*" + rng.bytes(int(rng.integers(0, 300))),
        lambda: b"\xff\xd8\xff" + rng.bytes(int(rng.integers(0, 300))),
        lambda: files["png8"][:int(rng.integers(8, 60))],
        lambda: files["png16"][:len(files["png16"]) // 2],
        lambda: files["tiff16"][:int(rng.integers(4, 40))],
        lambda: files["jpeg"][:int(rng.integers(3, 150))],
        lambda: _png_header_only(60_000, 60_000),
        lambda: _png_header_only(int(rng.integers(1, 2**31)), 0),
        lambda: too_wide.getvalue(),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a canvas, and no pixels."""
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body)) + b"IHDR" + body
            + struct.pack(">I", zlib.crc32(b"IHDR" + body)))


def bad_bottlenecks(count: int, good: bytes) -> list[bytes]:
    """`count` files that decompress must refuse: the `good` bottleneck with
    each bad comment (`bad_comments` of its own header), truncated, or no
    bottleneck at all."""
    with Image.open(io.BytesIO(good)) as im:
        pixels, valid = np.asarray(im), json.loads(im.info["comment"])
    makers = [lambda c=c: _bottleneck_of(pixels, c) for c in bad_comments(valid)]
    makers += [lambda: good[:len(good) // 2], lambda: good[:200], lambda: b"",
               lambda: b"\xff\xd8 no more", lambda: seeds()["jpeg"]]
    return [makers[i % len(makers)]() for i in range(count)]


def _bottleneck_of(pixels: np.ndarray, comment: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", comment=comment)
    return buffer.getvalue()

"""The bottleneck file: a standard JPEG that says which model made it and for what.

The post-processor needs three things the pixels do not carry: which model's
pre-processor made the bottleneck (another model's post-processor would
decode garbage), the source's size (a `high_res` bottleneck of 1000 pixels
may come from 1999 or 2000) and the source's bit depth (the PNG to write).
`bit_depth` is the model's (what the reconstruction has); `source_bit_depth`
is the file's own, deeper where the source was rounded down to fit. They
travel inside the file, as a small JSON object in the JPEG comment
(COM) segment, which every decoder skips, so a bottleneck is self-describing:
it can be copied, renamed or served by a CDN and still be decompressed.

    {"sandwich": 2, "model_id": "...", "scenario": "high_res", "bit_depth": 8,
     "factor": 2, "height": 427, "width": 640, "qstep": 20.0, "source_bit_depth": 8,
     "jpeg_mode": "ycbcr-420", "source_stamp": "3f2a9c01d4"}

`jpeg_mode` is the inner codec's colour handling; the quantisation tables
need no field, since the file's own DQT segment carries them. A file made to
a target (`codec.rate_control`) also records the target (`"target":
"bpp<=0.5"`) and the PSNR the job measured after decoding it (`"psnr"`),
so a rerun can list it without measuring it again; a file coded at a fixed
step has neither.

Three kinds of file need no model to decode, so that a target-mode job can
write them where they beat every model of the set:

- a plain-JPEG fallback is a plain JPEG from Pillow with this header:
  `model_id` and `scenario` "plain-jpeg", factor 1, 8 bits, and its Pillow
  quality in `qstep`. Its pixels are the reconstruction;
- a jpegli fallback is the same of jpegli's JPEG (`pyjpegli`, baseline
  YCbCr 4:2:0; any decoder reads it): `model_id` and `scenario` "jpegli",
  its jpegli quality in `qstep`, the header in a COM segment inserted into
  jpegli's file (`alternatives.with_comment`), which changes no pixel;
- an identity file is a scenario's baseline (`sandwich.scenarios`): the
  scenario's own fixed steps around the same JPEG mode and table shape
  (flat, or JPEG's standard shape; `qstep` is the tables' scale, and the
  file's DQT carries them), with no networks, which is what an untrained
  sandwich of that scenario makes.
  Its header is a model's with `model_id` "identity" and the scenario's
  name, bit depth, factor and JPEG mode; the decoder runs the scenario's
  `from_bottleneck` and `to_source` on the decoded JPEG (`identity_bottleneck`
  and `identity_reconstruction`, the one definition that compress measures
  and decompress applies). At factor 1 and 8 bits that is the decoded JPEG
  as it is; at factor 2 its Lanczos-3 upsampling; above 8 bits the scale back.

None of these ids may be a model's (`RESERVED_IDS`). The format version
stayed 2 when identity files and jpegli fallbacks came: a reader without
them refuses one as "made by model 'identity'" (or 'jpegli'), "not by a
model of the set", since no export may take the id.

A bottleneck is untrusted input: `Header.from_comment` checks every field's
type and range (`_VALIDATORS`, one line per field), and `decode` checks the
claimed source size against the JPEG's own size and the factor before a
pixel is decoded. Anything else raises `BottleneckError` with the reason.
"""
from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
from PIL import Image

from sandwich import alternatives, jpeg
from sandwich.errors import Rejected
from sandwich.image_io import DEFAULT_MAX_PIXELS
from sandwich.specs import ModelSpec, SpecError

FORMAT_VERSION = 2  # 2: jpeg_mode
_MARKER = "sandwich"
_EOI = b"\xff\xd9"
# Pillow's (libjpeg's) largest JPEG side; a bottleneck cannot be wider.
MAX_JPEG_SIDE = 65500
# A source side: a bottleneck side times the largest factor a header may give.
MAX_FACTOR = 16
MAX_TEXT = 256
# The model ids of the files that need no model: the fallbacks, a plain JPEG
# (Pillow's) and a jpegli JPEG, each decoded as it is, and a scenario's
# identity (its baseline). No export may take any.
FALLBACK = "plain-jpeg"
JPEGLI_FALLBACK = "jpegli"
FALLBACKS = (FALLBACK, JPEGLI_FALLBACK)
IDENTITY = "identity"
RESERVED_IDS = (*FALLBACKS, IDENTITY)
# What a target-mode manifest calls the kind of file that won (`Header.kind`).
MODEL = "model"
KINDS = (MODEL, IDENTITY, *FALLBACKS)
# What a header repeats of the spec that wrote it, and must agree on with the
# spec that decodes it (`Header.check_model`); all an identity file is made of.
SPEC_FIELDS = ("scenario", "bit_depth", "factor", "jpeg_mode")
# The identity's tiles (source pixels, rounded to its factor) and halo (in
# bottleneck pixels): its filters reach 2 (bicubic down) and 3 (Lanczos-3
# up) bottleneck pixels, so an 8-pixel halo makes tiling exact whatever the
# layout, and compress and decompress need not agree on one.
IDENTITY_TILE = 1024
IDENTITY_HALO = 8
# The widest PSNR a header records (dB, two decimals), so that a file coded
# with it as a placeholder is never smaller than the final file.
MAX_PSNR = 999.99


class BottleneckError(Rejected):
    """A file that is not a bottleneck this job can use; `reason` says why."""


def _integer(low: int, high: int):
    """A validator of a JSON integer in `[low, high]` (not a bool, not a float)."""
    def check(name, value):
        if type(value) is not int or not low <= value <= high:
            raise BottleneckError(f"bottleneck header {name}={_shown(value)} is not an "
                                  f"integer in {low}..{high}")
        return value
    return check


def _number(low: float, high: float):
    """A validator of a finite JSON number in `(low, high]`."""
    def check(name, value):
        if type(value) not in (int, float) or not low < value <= high:
            raise BottleneckError(f"bottleneck header {name}={_shown(value)} is not a "
                                  f"number in ({low}, {high}]")
        return float(value)
    return check


def _text(shortest: int = 1):
    """A validator of a short printable string (it ends up in records and logs)."""
    def check(name, value):
        if (type(value) is not str or not shortest <= len(value) <= MAX_TEXT
                or not value.isprintable()):
            raise BottleneckError(f"bottleneck header {name}={_shown(value)} is not a printable "
                                  f"string of {shortest}..{MAX_TEXT} characters")
        return value
    return check


def _one_of(choices):
    """A validator of one of a few known strings."""
    def check(name, value):
        if value not in choices:
            raise BottleneckError(f"bottleneck header {name}={_shown(value)} is not one of "
                                  f"{list(choices)}")
        return value
    return check


def _shown(value) -> str:
    """A header value as a dead letter quotes it: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# One validator per field, so a field is added in one line. Every value is
# bounded: a header is untrusted input, and the source size it claims decides
# how much memory the post-processor allocates.
_VALIDATORS = {
    "model_id": _text(),
    "scenario": _text(),
    "bit_depth": _integer(8, 16),
    "factor": _integer(1, MAX_FACTOR),
    "height": _integer(1, MAX_JPEG_SIDE * MAX_FACTOR),
    "width": _integer(1, MAX_JPEG_SIDE * MAX_FACTOR),
    "qstep": _number(0, jpeg.tables.BASELINE_MAX_STEP),
    "source_bit_depth": _integer(8, 16),
    "jpeg_mode": _one_of(jpeg.tables.MODE_NAMES),
    "source_stamp": _text(0),
    "target": _text(0),
    "psnr": _number(-1, MAX_PSNR),
}


def _parse_json(comment: bytes | None) -> dict:
    """The comment as a JSON object with our marker, or a `BottleneckError`."""
    try:
        data = json.loads(comment or b"")
    # Deep nesting raises RecursionError; out-of-range numbers ValueError.
    except (ValueError, RecursionError, OverflowError):
        data = None
    if not isinstance(data, dict) or _MARKER not in data:
        raise BottleneckError("not a sandwich bottleneck: no sandwich header in the JPEG comment")
    if type(data[_MARKER]) is not int or data[_MARKER] != FORMAT_VERSION:
        raise BottleneckError(f"bottleneck format {_shown(data[_MARKER])} is not {FORMAT_VERSION}")
    return data


@dataclasses.dataclass(frozen=True)
class Header:
    """What the comment segment records about the bottleneck's source."""

    model_id: str
    scenario: str
    bit_depth: int
    factor: int
    height: int
    width: int
    qstep: float
    source_bit_depth: int
    jpeg_mode: str
    # A digest of the source file's size and mtime (`batch_jobs.source_stamp`),
    # so a rerun redoes the bottleneck of a changed source; older files lack it.
    source_stamp: str = ""
    # What `codec.rate_control` aimed at ("" for a fixed qstep), and the
    # PSNR it measured after decoding (0 where not measured); both are left
    # out of a fixed-step file's comment.
    target: str = ""
    psnr: float = 0.0

    @classmethod
    def of(cls, spec, qstep: float, height: int, width: int, source_bit_depth: int,
           source_stamp: str = "") -> "Header":
        """The header of a bottleneck of a `ModelSpec`'s model at `qstep`."""
        return cls(model_id=spec.model_id, scenario=spec.scenario, bit_depth=spec.bit_depth,
                   factor=spec.factor, height=height, width=width, qstep=float(qstep),
                   source_bit_depth=source_bit_depth, jpeg_mode=spec.jpeg_mode,
                   source_stamp=source_stamp)

    @classmethod
    def fallback(cls, quality: int, height: int, width: int, source_bit_depth: int,
                 source_stamp: str = "", target: str = "", *,
                 model_id: str = FALLBACK) -> "Header":
        """The header of a fallback (`model_id`, one of `FALLBACKS`: by
        default plain JPEG) at its encoder's `quality`."""
        if model_id not in FALLBACKS:
            raise ValueError(f"a fallback is one of {list(FALLBACKS)}, not {model_id!r}")
        return cls(model_id=model_id, scenario=model_id, bit_depth=8, factor=1, height=height,
                   width=width, qstep=float(quality), source_bit_depth=source_bit_depth,
                   jpeg_mode=jpeg.tables.DEFAULT_MODE.name, source_stamp=source_stamp,
                   target=target)

    @classmethod
    def identity(cls, spec, qstep: float, height: int, width: int, source_bit_depth: int,
                 source_stamp: str = "", target: str = "") -> "Header":
        """The header of the identity of a `ModelSpec`'s scenario (its
        scenario, bit depth, factor and JPEG mode) at the flat step `qstep`."""
        return dataclasses.replace(
            cls.of(spec, qstep, height, width, source_bit_depth, source_stamp),
            model_id=IDENTITY, target=target)

    @property
    def is_fallback(self) -> bool:
        """A plain JPEG (Pillow's or jpegli's): its decoded pixels are the
        reconstruction, no model needed."""
        return self.model_id in FALLBACKS

    @property
    def is_identity(self) -> bool:
        return self.model_id == IDENTITY

    @property
    def kind(self) -> str:
        """`model`, `identity`, `plain-jpeg` or `jpegli`: what decodes the file."""
        return self.model_id if self.model_id in RESERVED_IDS else MODEL

    def to_comment(self) -> bytes:
        """The compact JSON; a file coded at a fixed step leaves out `target`
        and `psnr`, so it is byte for byte what it was before they existed."""
        data = {_MARKER: FORMAT_VERSION, **dataclasses.asdict(self)}
        if not self.target:
            del data["target"], data["psnr"]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_comment(cls, comment: bytes | None) -> "Header":
        """The header in a JPEG comment; any malformed or out-of-range field
        is a `BottleneckError` naming it (unknown fields are ignored)."""
        data = _parse_json(comment)
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise BottleneckError(f"bottleneck header lacks {missing}")
        return cls(**{name: check(name, data[name]) for name, check in _VALIDATORS.items()
                      if name in data})

    def bottleneck_size(self) -> tuple[int, int]:
        """The (h', w') of the bottleneck of a source of this header's size."""
        return -(-self.height // self.factor), -(-self.width // self.factor)

    def check_model(self, specs) -> None:
        """Refuses a header that no model of the set `specs` (`ModelSpec`s by
        model id) wrote, or that disagrees with its model's spec (its
        post-processor would decode garbage or crash); a fallback's must be
        what `fallback` writes for its id, since its pixels are taken as the
        source's; an identity's must name a scenario that exists at its bit
        depth and factor (`sandwich.specs`), whose fixed steps then decode
        it, with or without a model of that scenario in the set."""
        if self.is_fallback:
            expected = Header.fallback(int(self.qstep), self.height, self.width,
                                       self.source_bit_depth, model_id=self.model_id)
        elif self.is_identity:
            expected = identity_spec(self)
        elif self.model_id in specs:
            expected = specs[self.model_id]
        else:
            raise BottleneckError(f"made by model {self.model_id!r}, not by a model of the set "
                                  f"{sorted(specs)}: no post-processor here can decode it")
        for name in SPEC_FIELDS:
            if getattr(self, name) != getattr(expected, name):
                raise BottleneckError(f"header {name} {getattr(self, name)!r} differs from the "
                                      f"model's {getattr(expected, name)!r}")
        if self.source_bit_depth < self.bit_depth:
            raise BottleneckError(f"header source_bit_depth {self.source_bit_depth} is below "
                                  f"the model's {self.bit_depth}")

    def check_size(self, jpeg_size: tuple[int, int], max_pixels: int) -> None:
        """Refuses a claimed source size that the bottleneck (h', w') at the
        header's factor does not cover exactly, or above `max_pixels`; the
        reconstruction is allocated at the claimed size."""
        if self.height * self.width > max_pixels:
            raise BottleneckError(
                f"decompression bomb: header claims {self.width}x{self.height} = "
                f"{self.height * self.width} pixels, above the limit of {max_pixels}")
        if self.bottleneck_size() != tuple(jpeg_size):
            raise BottleneckError(
                f"header claims a {self.width}x{self.height} source at factor {self.factor}, "
                f"which a {jpeg_size[1]}x{jpeg_size[0]} bottleneck does not cover exactly")


def identity_spec(header: Header) -> ModelSpec:
    """The spec of the identity a header names: its scenario, bit depth,
    factor and JPEG mode, checked as a model spec's are (an unknown
    scenario, a factor it cannot have, a high-bit-depth one at 8 bits are
    `BottleneckError`s), and no networks; `qstep` is the file's."""
    try:
        return ModelSpec(model_id=IDENTITY, scenario=header.scenario, bit_depth=header.bit_depth,
                         factor=header.factor, qstep=header.qstep, jpeg_mode=header.jpeg_mode)
    except SpecError as e:
        raise BottleneckError(f"an identity header names no scenario: {e}") from e


def _identity_layout(factor: int, tile: int) -> dict:
    return {"factor": factor, "tile": max(1, tile // factor) * factor,
            "halo": IDENTITY_HALO * factor}


def identity_bottleneck(spec, source: np.ndarray, *, tile: int = IDENTITY_TILE) -> np.ndarray:
    """The uint8 bottleneck of an identity file: the scenario's
    `to_bottleneck` and `codec_input` on `source` (`[h, w, 3]`, the
    scenario's container dtype), in tiles of about `tile` source pixels;
    `spec` has the scenario's fields (a `ModelSpec` or a `Header`). The
    pixels an untrained sandwich of the scenario gives its encoder."""
    import tensorflow as tf

    from codec import tiling
    from sandwich import scenarios

    scenario = scenarios.from_spec(spec)
    return tiling.downscale_tiled(
        lambda tile: scenarios.codec_input(
            scenario.to_bottleneck(tf.cast(tile[None], tf.float32)))[0].numpy(),
        source, **_identity_layout(scenario.factor, tile))


def identity_tables(spec, qstep: float):
    """The tables an identity of `spec`'s scenario is coded with at the
    scale `qstep`: None (flat at the header's step) for flat tables, else
    the scenario's shape at that scale, the tables a model trained with
    that shape starts from. The decoder needs neither: the file's DQT
    carries them."""
    from sandwich import scenarios

    scenario = scenarios.from_spec(spec)
    return None if scenario.table_shape == "flat" else scenario.tables_at(qstep)


def identity_reconstruction(header: Header, decoded: np.ndarray, *,
                            tile: int = IDENTITY_TILE) -> np.ndarray:
    """What an identity file decodes to: the scenario's `from_bottleneck`
    and `to_source` on its decoded JPEG, at the header's source size, in
    the source's container dtype, in tiles of about `tile` source pixels
    (the result is the untiled one whatever the tile). The one definition:
    compress measures it, decompress writes it."""
    import tensorflow as tf

    from codec import tiling
    from sandwich import scenarios

    scenario = scenarios.from_spec(header)
    return tiling.upscale_tiled(
        lambda tile, size: scenario.to_source(
            scenario.from_bottleneck(tf.constant(tile[None]), size))[0].numpy(),
        decoded, (header.height, header.width), **_identity_layout(scenario.factor, tile))


def encode(bottleneck: np.ndarray, header: Header, qtables=None) -> bytes:
    """The bottleneck file: uint8 `[h', w', c]` (c: 1 in mode gray) through the real encoder in
    the header's JPEG mode, with `qtables` (default: flat at the header's
    qstep), and the header in the comment segment; for a fallback header,
    the source's plain JPEG (Pillow's or jpegli's) at the header's quality."""
    if header.is_fallback:
        encoder = {FALLBACK: alternatives.plain_jpeg,
                   JPEGLI_FALLBACK: alternatives.jpegli}[header.model_id]
        return encoder(bottleneck, int(header.qstep), header.to_comment())
    mode = jpeg.JpegMode.parse(header.jpeg_mode)
    return jpeg.encode(bottleneck, header.qstep if qtables is None else qtables,
                       comment=header.to_comment(), **mode.kwargs())


def _open(data: bytes) -> tuple[bytes | None, tuple[int, int]]:
    """The JPEG comment and (height, width) from a file's header, pixels untouched."""
    if not data.startswith(b"\xff\xd8"):
        raise BottleneckError("not a JPEG file" if data else "empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.info.get("comment"), (im.height, im.width)
    except Exception as e:  # Pillow reports a damaged header in many ways.
        raise BottleneckError(f"corrupt JPEG header: {type(e).__name__}: {e}") from e


def read_header(data: bytes) -> Header:
    """The header of a bottleneck file, without decoding its pixels; `data`
    may be only the file's beginning, up to its first scan."""
    return Header.from_comment(_open(data)[0])


def is_complete(head: bytes, tail: bytes) -> bool:
    """Whether a JPEG file that starts with `head` and ends with `tail` is
    whole: it starts with SOI and ends with its EOI marker."""
    return head.startswith(b"\xff\xd8") and tail.endswith(_EOI)


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, np.ndarray]:
    """Header and decoded uint8 `[h', w', c]` bottleneck of a bottleneck file
    (c: the header's mode's channels; 3 for a fallback's plain JPEG).

    The header is checked against the JPEG's own size, and both against
    `max_pixels`, before any pixel is decoded.
    """
    comment, size = _open(data)
    header = Header.from_comment(comment)
    header.check_size(size, max_pixels)
    if not is_complete(data, data):
        raise BottleneckError("truncated JPEG: no end-of-image marker")
    try:
        pixels = jpeg.decode(data)
    except Exception as e:
        raise BottleneckError(f"corrupt JPEG: {type(e).__name__}: {e}") from e
    channels = 3 if header.is_fallback else jpeg.JpegMode.parse(header.jpeg_mode).channels
    if pixels.shape != (*size, channels):
        raise BottleneckError(f"a {header.jpeg_mode} bottleneck is {size} x {channels} "
                              f"components, this JPEG decodes to shape {pixels.shape}")
    return header, pixels

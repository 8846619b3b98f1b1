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
     "jpeg_mode": "ycbcr-420"}

`jpeg_mode` is the inner codec's colour handling; the quantisation tables
need no field, since the file's own DQT segment carries them.
"""
from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
from PIL import Image

from sandwich import jpeg

FORMAT_VERSION = 2  # 2: jpeg_mode
_MARKER = "sandwich"
_EOI = b"\xff\xd9"
# Field annotations are strings under `from __future__ import annotations`.
_CASTS = {"str": str, "int": int, "float": float}


class BottleneckError(ValueError):
    """A file that is not a bottleneck this job can use; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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

    @classmethod
    def of(cls, spec, qstep: float, height: int, width: int, source_bit_depth: int) -> "Header":
        """The header of a bottleneck of a `ModelSpec`'s model at `qstep`."""
        return cls(model_id=spec.model_id, scenario=spec.scenario, bit_depth=spec.bit_depth,
                   factor=spec.factor, height=height, width=width, qstep=float(qstep),
                   source_bit_depth=source_bit_depth, jpeg_mode=spec.jpeg_mode)

    def to_comment(self) -> bytes:
        data = {_MARKER: FORMAT_VERSION, **dataclasses.asdict(self)}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_comment(cls, comment: bytes | None) -> "Header":
        try:
            data = json.loads(comment or b"")
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict) or _MARKER not in data:
            raise BottleneckError("not a sandwich bottleneck: no sandwich header in the JPEG comment")
        if data[_MARKER] != FORMAT_VERSION:
            raise BottleneckError(f"bottleneck format {data[_MARKER]!r} is not {FORMAT_VERSION}")
        try:
            return cls(**{f.name: _CASTS[f.type](data[f.name]) for f in dataclasses.fields(cls)})
        except KeyError as e:
            raise BottleneckError(f"bottleneck header lacks {e}") from e
        except (TypeError, ValueError) as e:
            raise BottleneckError(f"malformed bottleneck header: {e}") from e


def encode(bottleneck: np.ndarray, header: Header, qtables=None) -> bytes:
    """The bottleneck file: uint8 `[h', w', 3]` through the real encoder in
    the header's JPEG mode, with `qtables` (default: flat at the header's
    qstep), and the header in the comment segment."""
    mode = jpeg.JpegMode.parse(header.jpeg_mode)
    return jpeg.encode(bottleneck, header.qstep if qtables is None else qtables,
                       comment=header.to_comment(), **mode.kwargs())


def read_header(data: bytes) -> Header:
    """The header of a bottleneck file, without decoding its pixels; `data`
    may be only the file's beginning, up to its first scan."""
    if not data.startswith(b"\xff\xd8"):
        raise BottleneckError("not a JPEG file" if data else "empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            comment = im.info.get("comment")
    except Exception as e:  # Pillow reports a damaged header in many ways.
        raise BottleneckError(f"corrupt JPEG header: {type(e).__name__}: {e}") from e
    return Header.from_comment(comment)


def is_complete(head: bytes, tail: bytes) -> bool:
    """Whether a JPEG file that starts with `head` and ends with `tail` is
    whole: it starts with SOI and ends with its EOI marker."""
    return head.startswith(b"\xff\xd8") and tail.endswith(_EOI)


def decode(data: bytes) -> tuple[Header, np.ndarray]:
    """Header and decoded uint8 `[h', w', 3]` bottleneck of a bottleneck file."""
    header = read_header(data)
    if not is_complete(data, data):
        raise BottleneckError("truncated JPEG: no end-of-image marker")
    try:
        pixels = jpeg.decode(data)
    except Exception as e:
        raise BottleneckError(f"corrupt JPEG: {type(e).__name__}: {e}") from e
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise BottleneckError(f"a bottleneck has 3 components, this JPEG has shape {pixels.shape}")
    return header, pixels

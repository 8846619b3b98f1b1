"""How the inner JPEG codes colour, and its quantisation tables.

Pure NumPy (no TensorFlow), so workers that only encode need not load it.

The *mode* is how the bottleneck's channels reach the codec:

- `ycbcr-420` (the default): JFIF colour conversion and 2x2 chroma
  subsampling, what every JPEG encoder, decoder and browser does by default.
  Measured on held-out photos with a flat table, it is about +0.4 dB BD-PSNR
  above a plain JPEG with the standard tables.
- `ycbcr-444`: the same without subsampling.
- `planes`: each RGB channel coded as its own plane at full resolution
  (`keep_rgb`). The reference implementation trains this way; it starts
  about 4.2 dB BD-PSNR *below* plain JPEG, so it is kept only to reproduce it.
- `gray`: a one-channel bottleneck coded as a one-component (grayscale)
  JPEG, the only mode that takes one channel and the only one that takes no
  three: what a luma-only codec carries (the `gray` scenario).

The *tables* are one 8x8 quantisation table per table slot, `[2, 64]` in
natural (row-major) order: slot 0 for the first component (luma, or R in
`planes`, or the one of `gray`), slot 1 for the other two, which is how libjpeg assigns them. A
flat table of step q is `flat_tables(q)`. Files carry their own tables in
the DQT segment, so learned tables stay readable by every decoder.
"""
from __future__ import annotations

import dataclasses

import numpy as np

COLOR_MODES = ("planes", "ycbcr", "gray")
SUBSAMPLING_MODES = ("444", "420")
TABLE_SLOTS = 2
# Baseline JPEG's table entries are 8-bit integers of at least 1: the one
# home of the 1..255 bound (the proxy and the encoder round and clip to it,
# the trained step stays above its floor, a header's step and a user's
# `--qstep` are checked against it).
BASELINE_MIN_STEP, BASELINE_MAX_STEP = 1, 255


@dataclasses.dataclass(frozen=True)
class JpegMode:
    """The inner codec's colour handling; `name` is e.g. 'ycbcr-420'."""

    color_mode: str = "ycbcr"
    subsampling: str = "420"

    def __post_init__(self):
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        if self.subsampling not in SUBSAMPLING_MODES:
            raise ValueError(f"subsampling must be one of {SUBSAMPLING_MODES}, "
                             f"got {self.subsampling!r}")
        if self.color_mode != "ycbcr" and self.subsampling != "444":
            raise ValueError(f"color_mode={self.color_mode!r} codes full-resolution planes "
                             "(4:4:4)")

    @property
    def name(self) -> str:
        return self.color_mode if self.color_mode != "ycbcr" else f"ycbcr-{self.subsampling}"

    @property
    def channels(self) -> int:
        """The bottleneck's channels: 1 for `gray`, else 3."""
        return 1 if self.color_mode == "gray" else 3

    @classmethod
    def parse(cls, name: str) -> "JpegMode":
        """'ycbcr-420', 'ycbcr-444', 'planes' or 'gray'."""
        if name in ("planes", "gray"):
            return cls(name, "444")
        color_mode, _, subsampling = name.partition("-")
        if color_mode != "ycbcr" or subsampling not in SUBSAMPLING_MODES:
            raise ValueError(f"unknown JPEG mode {name!r}; expected one of {MODE_NAMES}")
        return cls(color_mode, subsampling)

    def kwargs(self) -> dict:
        """As keyword arguments of the codec functions."""
        return {"color_mode": self.color_mode, "subsampling": self.subsampling}


DEFAULT_MODE = JpegMode()
GRAY_MODE = JpegMode("gray", "444")
# The modes of a three-channel bottleneck, and every mode.
COLOR_MODE_NAMES = ("ycbcr-420", "ycbcr-444", "planes")
MODE_NAMES = (*COLOR_MODE_NAMES, GRAY_MODE.name)


def check_qstep(qstep) -> None:
    """Refuses a step or table that is not finite and positive."""
    values = np.asarray(qstep, np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError(f"qstep must be finite and positive, got {qstep!r}")


def check_codable_step(qstep: float) -> float:
    """`qstep` as a float if it is in (0, BASELINE_MAX_STEP], the steps a
    file can be coded at (below 1 the entries are written as 1); else a
    ValueError."""
    if not 0 < qstep <= BASELINE_MAX_STEP:
        raise ValueError(f"qstep must be in (0, {BASELINE_MAX_STEP}], not {qstep}")
    return float(qstep)


def flat_tables(qstep: float) -> np.ndarray:
    """Both slots flat at `qstep`: float64 `[2, 64]`."""
    check_qstep(qstep)
    return np.full([TABLE_SLOTS, 64], float(qstep))


def as_tables(qstep) -> np.ndarray:
    """A scalar step, a `[64]` table for both slots, or `[2, 64]` / `[2, 8, 8]`
    tables -> float64 `[2, 64]`."""
    values = np.asarray(qstep, np.float64)
    if values.ndim == 0:
        return flat_tables(float(values))
    values = values.reshape(-1, 64) if values.size % 64 == 0 else values
    if values.ndim != 2 or values.shape[1] != 64 or values.shape[0] not in (1, TABLE_SLOTS):
        raise ValueError(f"expected a step, a [64] table or [2, 64] tables, got shape "
                         f"{np.shape(qstep)}")
    check_qstep(values)
    return np.broadcast_to(values, (TABLE_SLOTS, 64)).copy()


def scale(tables) -> float:
    """One number for a table set: the geometric mean of its entries.

    For flat tables it is the step itself; sweeping it scales every entry
    alike, as JPEG's quality factor does, and the rate model interpolates its
    calibration on it.
    """
    values = as_tables(tables)
    if np.all(values == values.flat[0]):
        return float(values.flat[0])  # Exactly, not through exp(log(q)).
    return float(np.exp(np.mean(np.log(values))))


def rescaled(tables, qstep: float) -> np.ndarray:
    """`tables` scaled so that their `scale` is `qstep`."""
    check_qstep(qstep)
    tables = as_tables(tables)
    return tables * (float(qstep) / scale(tables))


def integer_tables(qstep) -> np.ndarray:
    """The integer tables the encoder actually writes: entries rounded and
    kept in 1..255 (baseline JPEG's 8-bit range); int64 `[2, 64]`."""
    # Half up, as the proxy rounds (NumPy's round would go half to even).
    return np.clip(np.floor(as_tables(qstep) + 0.5), BASELINE_MIN_STEP,
                   BASELINE_MAX_STEP).astype(np.int64)

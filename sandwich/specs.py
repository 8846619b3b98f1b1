"""The JSON specs that travel with every artefact directory.

Each stage writes one next to its output (`dataset_spec.json` beside the
TFRecord shards, `model_spec.json` beside the SavedModels) so that the next
stage needs no flag repeated and can refuse a mismatched input with a clear
error instead of training or decoding garbage. The classes only (de)serialise
and validate; reading and writing the files is the caller's, because the
pipelines go through Beam's filesystems and the trainer through `tf.io.gfile`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from sandwich.jpeg import tables

SCENARIOS = ("high_bit_depth", "high_res", "gray")
# A scenario's source bit depth unless a dataset or model says otherwise.
DEFAULT_BIT_DEPTH = {"high_bit_depth": 10, "high_res": 8, "gray": 8}
# And its downsampling factor.
DEFAULT_FACTOR = {"high_bit_depth": 1, "high_res": 2, "gray": 1}
DATASET_SPEC_FILE = "dataset_spec.json"
MODEL_SPEC_FILE = "model_spec.json"
FORMAT_VERSION = 1
# How a dataset's records hold each patch: its raw tensor bytes, or a PNG.
# Specs without the field were written when every patch was a PNG.
PATCH_ENCODINGS = ("raw", "png")
LEGACY_PATCH_ENCODING = "png"
# What a model's training minimised (`sandwich.model.DISTORTIONS`), and the
# shape its quantisation tables start from (`sandwich.scenarios`: flat,
# JPEG's Annex K tables, or jpegli's). Specs without the fields were written
# when every model was trained on squared error with flat tables.
DISTORTIONS = ("mse", "ms-ssim", "mix")
TABLE_SHAPES = ("flat", "standard", "jpegli")
OBJECTIVES = ("psnr", "perceptual")


def container_dtype(bit_depth: int) -> type:
    """The NumPy type that holds `bit_depth`-bit samples: uint8 up to 8 bits,
    uint16 above (values right-aligned, below 2**bit_depth)."""
    return np.uint8 if bit_depth <= 8 else np.uint16


class SpecError(ValueError):
    """An artefact's spec is missing, malformed or does not fit its use."""


def _check_scenario(scenario: str, bit_depth: int, factor: int) -> None:
    if scenario not in SCENARIOS:
        raise SpecError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if not 8 <= bit_depth <= 16:
        raise SpecError(f"bit_depth must be in 8..16, got {bit_depth}")
    if scenario == "high_bit_depth" and bit_depth <= 8:
        raise SpecError("high_bit_depth needs a source bit depth above 8")
    if scenario in ("high_res", "gray") and factor < 1:
        raise SpecError(f"{scenario} needs an integer factor >= 1 (1: full resolution), "
                        f"got {factor}")
    if scenario == "gray" and bit_depth != 8:
        raise SpecError(f"gray carries 8-bit colour sources, got bit_depth {bit_depth}")
    if scenario == "high_bit_depth" and factor != 1:
        raise SpecError(f"high_bit_depth works at full resolution (factor 1), got {factor}")


def default_jpeg_mode(scenario: str) -> str:
    """The inner JPEG mode a scenario codes in unless told otherwise: `gray`
    for the gray scenario (its only one), YCbCr 4:2:0 for the others."""
    return tables.GRAY_MODE.name if scenario == "gray" else tables.DEFAULT_MODE.name


def check_jpeg_mode(scenario: str, jpeg_mode: str) -> None:
    """The gray scenario's one-channel bottleneck is coded in mode `gray`,
    and no other scenario's three channels are."""
    if (scenario == "gray") != (jpeg_mode == tables.GRAY_MODE.name):
        raise SpecError(f"the gray scenario, and only it, codes one channel (JPEG mode gray); "
                        f"got scenario {scenario!r} in mode {jpeg_mode!r}")


def _from_dict(cls, data: dict[str, Any], kind: str):
    if not isinstance(data, dict):
        raise SpecError(f"{kind} spec must be a JSON object")
    if data.get("kind") != kind:
        raise SpecError(f"expected a {kind} spec, found kind={data.get('kind')!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise SpecError(
            f"{kind} spec format_version {data.get('format_version')!r} is not "
            f"{FORMAT_VERSION}; regenerate the artefact with this version")
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SpecError(f"{kind} spec lacks {missing}")
    return cls(**{k: v for k, v in data.items() if k in names})


def _loads(text: str | bytes, kind: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{kind} spec is not valid JSON: {e}") from e


def check_patch_size(patch_size: int, factor: int) -> None:
    """A patch's bottleneck (`factor` times smaller) must be whole 8x8 blocks."""
    if patch_size <= 0 or patch_size % (8 * factor):
        raise SpecError(
            f"patch_size {patch_size} must be a positive multiple of 8 x factor ({8 * factor})")


# A model trained at one step (no `qstep_range`) serves half to twice it
# (`qstep_bounds`): the steps rate control may code it at, the evaluator
# sweeps for its curve and the trainer measures its best weights over.
SINGLE_STEP_SPAN = 2.0


def check_qstep_range(qstep_range) -> tuple[float, float] | None:
    """`(low, high)` as floats, or None (a model of one step): the one rule
    for a rate-conditioned model's range, whether a flag, a model or a spec
    gives it. `BASELINE_MIN_STEP < low`: the trained step stays above the
    smallest table entry (`sandwich.model.QSTEP_FLOOR`); `high <=
    BASELINE_MAX_STEP`: coarser steps would all be written as the largest."""
    if qstep_range is None:
        return None
    try:
        low, high = (float(q) for q in qstep_range)
    except (TypeError, ValueError) as e:
        raise SpecError(f"a qstep range is two numbers (low, high), got {qstep_range!r}") from e
    if not tables.BASELINE_MIN_STEP < low < high <= tables.BASELINE_MAX_STEP:
        raise SpecError(f"a qstep range needs {tables.BASELINE_MIN_STEP} < low < high <= "
                        f"{tables.BASELINE_MAX_STEP}, got {qstep_range!r}")
    return low, high


def qstep_bounds(qstep: float, qstep_range=None) -> tuple[float, float]:
    """The steps a model is meant for: its `qstep_range`, else
    `SINGLE_STEP_SPAN` either side of its one `qstep`."""
    low, high = qstep_range or (qstep / SINGLE_STEP_SPAN, qstep * SINGLE_STEP_SPAN)
    return float(low), float(high)


def qstep_sweep(qstep: float, qstep_range, count: int) -> list[float]:
    """`count` steps log-spaced over `qstep_bounds`, finest first: where a
    model's rate-distortion curve is measured."""
    return [float(q) for q in np.geomspace(*qstep_bounds(qstep, qstep_range), count)]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset directory holds: one scenario's patches, split in two.

    `bit_depth` is the true bit depth of every patch (patches of more than
    8 bits are stored in 16-bit containers); `factor` is the high_res
    downsampling factor (1 for high_bit_depth); `provenance` says where the
    pixels come from, e.g. that 10-bit samples were synthesised by summing
    2x2 blocks of 8-bit photographs; `patch_encoding` how the records hold
    each patch (`PATCH_ENCODINGS`).
    """

    scenario: str
    bit_depth: int
    patch_size: int
    factor: int
    splits: dict[str, int]
    sources: dict[str, int] = dataclasses.field(default_factory=dict)
    provenance: str = ""
    seed: int = 0
    version: str = ""
    patch_encoding: str = LEGACY_PATCH_ENCODING

    def __post_init__(self):
        _check_scenario(self.scenario, self.bit_depth, self.factor)
        if self.patch_encoding not in PATCH_ENCODINGS:
            raise SpecError(f"unknown patch_encoding {self.patch_encoding!r}; "
                            f"expected one of {PATCH_ENCODINGS}")
        check_patch_size(self.patch_size, self.factor)

    @property
    def dtype(self) -> str:
        return np.dtype(container_dtype(self.bit_depth)).name

    def to_json(self) -> str:
        data = {"kind": "dataset", "format_version": FORMAT_VERSION}
        data.update(dataclasses.asdict(self))
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "DatasetSpec":
        return _from_dict(cls, _loads(text, "dataset"), "dataset")


# Model specs written before the field existed were all trained in 'planes'.
LEGACY_JPEG_MODE = "planes"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What an export directory holds: a trained pre/post-processor pair.

    `jpeg_mode` is the inner codec's colour handling (`sandwich.jpeg.tables`)
    that the post-processor was trained for; `qstep` the trained scale of
    the quantisation tables, `qtables` the `[2][64]` tables themselves when
    they are not flat (None: flat at `qstep`). `qstep_range` is set for a
    rate-conditioned model (`sandwich.model`): the steps its post-processor
    was trained for, where it should be used; else the model was trained at
    `qstep` alone. `preprocessor_reads_qstep` says that the pre-processor
    is conditioned too, so its bottleneck differs from step to step (specs
    without the field were written before it could be).

    What it was trained for: `objective` (the `--objective` preset),
    `distortion` and `ms_ssim_weight` (the loss's distortion and the
    MS-SSIM share of it, `sandwich.model`), `view_weight` (the weight of
    the decoded bottleneck's own distortion) and `table_shape`, the shape
    its tables started from; a `standard` model's `qtables` are always
    given, so an encoder that reads only `qtables` writes what the
    post-processor was trained on. Specs without these fields read as
    the squared-error, flat-table models they were.
    """

    model_id: str
    scenario: str
    bit_depth: int
    factor: int
    qstep: float
    jpeg_mode: str = tables.DEFAULT_MODE.name
    qtables: list[list[float]] | None = None
    qstep_range: list[float] | None = None
    preprocessor_reads_qstep: bool = False
    objective: str = "psnr"
    distortion: str = "mse"
    ms_ssim_weight: float = 0.0
    view_weight: float = 0.0
    table_shape: str = "flat"
    dataset: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Set on a model that ships with the package (`benchmarks/release_models.py`):
    # its corpus and licence, the commit and command that trained it, its
    # held-out BD figures against plain JPEG and jpegli.
    release: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Per precision other than float32 the model may run at (`codec.precision`):
    # what it changed through the whole chain against float32, on which photos.
    precisions: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = ""

    def __post_init__(self):
        _check_scenario(self.scenario, self.bit_depth, self.factor)
        if not self.qstep > 0:
            raise SpecError(f"qstep must be positive, got {self.qstep}")
        try:
            tables.JpegMode.parse(self.jpeg_mode)
            check_jpeg_mode(self.scenario, self.jpeg_mode)
            if self.qtables is not None:
                tables.as_tables(self.qtables)
        except ValueError as e:
            raise SpecError(str(e)) from e
        check_qstep_range(self.qstep_range)
        if self.preprocessor_reads_qstep and self.qstep_range is None:
            raise SpecError("only a rate-conditioned model (qstep_range) has a pre-processor "
                            "that reads the step")
        for name, allowed in (("objective", OBJECTIVES), ("distortion", DISTORTIONS),
                              ("table_shape", TABLE_SHAPES)):
            if getattr(self, name) not in allowed:
                raise SpecError(f"unknown {name} {getattr(self, name)!r}; expected one of "
                                f"{allowed}")
        if not 0.0 <= self.ms_ssim_weight <= 1.0 or not self.view_weight >= 0.0:
            raise SpecError(f"ms_ssim_weight must lie in [0, 1] and view_weight be >= 0, got "
                            f"{self.ms_ssim_weight} and {self.view_weight}")
        if self.table_shape != "flat" and self.qtables is None:
            raise SpecError(f"a model with {self.table_shape} tables must give its qtables")

    @property
    def qstep_bounds(self) -> tuple[float, float]:
        """The steps the model is meant for (`qstep_bounds`)."""
        return qstep_bounds(self.qstep, self.qstep_range)

    def qsteps(self, count: int = 5) -> list[float]:
        """`count` steps to sweep for a rate-distortion curve (`qstep_sweep`)."""
        return qstep_sweep(self.qstep, self.qstep_range, count)

    def tables_at(self, qstep: float):
        """The quantisation tables that code at `qstep`: the trained tables
        rescaled (flat ones are just the step)."""
        return qstep if self.qtables is None else tables.rescaled(self.qtables, qstep)

    def to_json(self) -> str:
        data = {"kind": "model", "format_version": FORMAT_VERSION}
        data.update(dataclasses.asdict(self))
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelSpec":
        data = _loads(text, "model")
        if isinstance(data, dict):
            data.setdefault("jpeg_mode", LEGACY_JPEG_MODE)
        return _from_dict(cls, data, "model")

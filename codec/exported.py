"""A trained sandwich as it is deployed: an export dir loaded and run on whole images.

`trainer.export` writes `preprocessor/` and `postprocessor/` (SavedModels)
and `model_spec.json`. They are loaded with `tf.saved_model.load` and only
their `serving_default` signatures are called, so no project code is needed
to run a model, and Keras 3 (which refuses plain SavedModels) is not
involved. Signature arguments are bound by their dtype and rank (the image
is rank 3, the size a rank-1 int32, the post-processor's qstep a float32
scalar), which does not depend on the names the exporter gave them
(`trainer.export` leaves them `args_0`, `args_1`).

Images of any size are cut into tiles with a halo (`codec.tiling`), which
bounds the memory a processor needs and changes nothing in the output.

A model set is several exports, each named by its `model_id`, which every
bottleneck carries (`export_dirs`, `check_set`). Files are read through a
`Files` (local paths by default); the Beam jobs pass Beam's filesystems, so
that the same rules serve `gs://` (`pipelines.model_handler`).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import logging
import math
import os
import threading
from typing import Callable, Iterable, Sequence

import numpy as np

from codec import bottleneck_format, shipped, tiling
from codec.precision import FLOAT32, choose as choose_precision, use as use_precision
from sandwich.jpeg.tables import JpegMode
from sandwich.specs import MODEL_SPEC_FILE, ModelSpec, SpecError

PREPROCESSOR, POSTPROCESSOR = "preprocessor", "postprocessor"
# Source pixels. Multiples of 32 keep tiles on the pooling grid of a 4-level
# U-Net (`tile_layout` moves them onto every factor's grid as well); a
# 128-pixel halo covers the slim and paper U-Nets' receptive fields (about
# 110 pixels), so tiling changes nothing.
DEFAULT_TILE = 1024
DEFAULT_HALO = 128
_LAYOUT_GRID = 32


def layout_grid(spec: ModelSpec) -> int:
    """What a model's tile and halo (source pixels) must be multiples of:
    its factor, twice that for a gray model, whose colour carriers'
    phase is counted from each tile's corner (`sandwich.colour_carrier`)."""
    return spec.factor * (2 if JpegMode.parse(spec.jpeg_mode).channels == 1 else 1)


def tile_layout(factors: Sequence[int], tile: int | None = None,
                halo: int | None = None) -> tuple[int, int]:
    """The tile and halo (source pixels) for models of `factors` (each
    model's `layout_grid`): those given, checked against every factor, or
    by default `DEFAULT_TILE` and
    `DEFAULT_HALO` moved onto multiples of 32 and of every factor (1024 and
    128 for factors 1, 2 and 4; 960 and 192 at x3, whose bottleneck the
    defaults would cut off its grid)."""
    grid = math.lcm(_LAYOUT_GRID, *factors)
    tile = max(grid, DEFAULT_TILE // grid * grid) if tile is None else tile
    halo = -(-DEFAULT_HALO // grid) * grid if halo is None else halo
    for factor in set(factors):
        tiling.check_layout(tile, halo, factor)
    return tile, halo


class Files:
    """What the model-set rules read, on local paths; `pipelines.model_handler`
    gives the same calls over Beam's filesystems (gs://)."""

    join = staticmethod(os.path.join)
    parent = staticmethod(os.path.dirname)
    exists = staticmethod(os.path.exists)

    @staticmethod
    def glob(pattern: str) -> list[str]:
        return sorted(glob.glob(pattern))

    @staticmethod
    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()


LOCAL = Files()


def export_dirs(value: str, files: Files = LOCAL) -> tuple[str, ...]:
    """The export dirs a `--model` flag names: an export dir, a
    comma-separated list of them, a directory whose subdirectories are
    export dirs (a model set, such as `benchmarks/quality.py` trains), or
    the name of a model or set that ships with the package (`codec.shipped`)."""
    dirs = []
    for entry in filter(None, (part.strip().rstrip("/") for part in value.split(","))):
        if shipped.is_name(entry) and not files.exists(entry):
            try:
                dirs.extend(shipped.export_dirs(entry))
            except ValueError as e:
                raise SpecError(str(e)) from e
            continue
        if files.exists(files.join(entry, MODEL_SPEC_FILE)):
            dirs.append(entry)
            continue
        found = [files.parent(path)
                 for path in files.glob(files.join(entry, "*", MODEL_SPEC_FILE))]
        if not found:
            raise SpecError(f"{entry} is neither an export dir nor a directory of them "
                            f"(no {MODEL_SPEC_FILE} in it or in its subdirectories), nor a "
                            f"shipped model or set ({', '.join(shipped.names())})")
        dirs.extend(sorted(found))
    if not dirs:
        raise SpecError("no export dir given")
    return tuple(dirs)


def read_spec(model_dir: str, files: Files = LOCAL) -> ModelSpec:
    """The model spec of an export dir, or a clear `SpecError`."""
    path = files.join(model_dir, MODEL_SPEC_FILE)
    if not files.exists(path):
        raise SpecError(f"{model_dir} is not an export dir: it has no {MODEL_SPEC_FILE}")
    return ModelSpec.from_json(files.read(path))


def can_code(model_dir: str, files: Files = LOCAL) -> bool:
    """Whether an export has its pre-processor. A shipped model a newer
    release supersedes keeps its post-processor alone: it decodes the files
    it wrote and codes nothing new (`codec.shipped`)."""
    return files.exists(files.join(model_dir, PREPROCESSOR, "saved_model.pb"))


def check_can_code(model_dir: str, spec: ModelSpec, files: Files = LOCAL) -> None:
    """A `SpecError` if the export cannot code (no pre-processor), naming
    the release that codes in its place."""
    if not can_code(model_dir, files):
        replaced = spec.release.get("superseded_by")
        raise SpecError(f"model {spec.model_id} has no {PREPROCESSOR}: it decodes only"
                        + (f" (superseded by {replaced}, which codes new files)"
                           if replaced else ""))


def read_specs(model_dirs: Sequence[str], files: Files = LOCAL) -> dict[str, ModelSpec]:
    """The specs of a model set by model id, which each bottleneck names, so
    two exports of one id (or of the id a plain-JPEG or jpegli fallback or
    an identity file carries) are a `SpecError`."""
    reserved = {bottleneck_format.FALLBACK: "by plain-JPEG fallbacks",
                bottleneck_format.JPEGLI_FALLBACK: "by jpegli fallbacks",
                bottleneck_format.IDENTITY: "by identity files"}
    specs = {}
    for model_dir in model_dirs:
        spec = read_spec(model_dir, files)
        taken = reserved.get(spec.model_id) or (
            "by another export of the set" if spec.model_id in specs else "")
        if taken:
            raise SpecError(f"{model_dir}: model_id {spec.model_id!r} is taken {taken}")
        specs[spec.model_id] = spec
    return specs


def source_bit_depth(specs: Iterable[ModelSpec]) -> int:
    """The one source bit depth of a set that codes the same sources (a
    `SpecError` if they differ: each source is fitted to it once)."""
    depths = sorted({spec.bit_depth for spec in specs})
    if len(depths) != 1:
        raise SpecError(f"the models take sources of different bit depths {depths}; "
                        "run them separately")
    return depths[0]

def bottleneck_channels(specs: Iterable[ModelSpec]) -> int:
    """The one bottleneck channel count of a set (1: gray; a `SpecError` if
    they differ: a set writes what one codec carries)."""
    channels = sorted({JpegMode.parse(spec.jpeg_mode).channels for spec in specs})
    if len(channels) != 1:
        raise SpecError("the set mixes gray (one-channel) and colour bottlenecks; run them "
                        "separately")
    return channels[0]


def plain_jpeg_fits(specs: Iterable[ModelSpec]) -> bool:
    """Whether the fallbacks (plain JPEG and jpegli) are candidates for a
    set's target: they keep 8 bits of colour, so not for deeper sources,
    nor for a gray set, whose files stay the one-component JPEGs its codec
    carries."""
    specs = list(specs)
    return source_bit_depth(specs) == 8 and bottleneck_channels(specs) == 3


def _call(signature, *tensors):
    """Calls a signature (keyword-only) with tensors matched to its inputs."""
    specs = signature.structured_input_signature[1]
    kwargs = {}
    for tensor in tensors:
        names = [name for name, spec in specs.items()
                 if spec.dtype == tensor.dtype and spec.shape.rank == tensor.shape.rank]
        if len(names) != 1:
            raise SpecError(f"cannot bind a {tensor.dtype.name} rank-{tensor.shape.rank} "
                            f"input to the signature {specs}")
        kwargs[names[0]] = tensor
    return signature(**kwargs)


def cores_per_process(worker_processes: int) -> int:
    """This process's share of the machine's cores, `worker_processes`
    sharing them (0: one per core)."""
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // (worker_processes or cores))


def share_cores(worker_processes: int) -> None:
    """Sizes TensorFlow's thread pools in this process to its share of the
    machine's cores, `worker_processes` sharing them (0: one per core).

    Left alone, each process sizes its pools to every core, so n workers
    run n threads per core, which contend for it. Must run before
    TensorFlow runs its first op in the process; if it already has (a
    16-bit PNG decoded by an earlier step), its pools stay as they are,
    with a warning.
    """
    import tensorflow as tf

    cores, threads = len(os.sched_getaffinity(0)), cores_per_process(worker_processes)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:
        if threads < cores:  # TensorFlow's own default is all cores.
            logging.getLogger(__name__).warning(
                "TensorFlow keeps its thread pools (%s); wanted %d of %d cores", e, threads,
                cores)


@dataclasses.dataclass
class ExportedSandwich:
    """An export: its spec and the processors, applied tile by tile.

    A processor's SavedModel is loaded when it first runs (`_signature`),
    not with the export: a job of a model set reads every spec up front, but
    pays for a model only where an image needs it. A decompress job with the
    default set (every shipped model) decodes files of one or two of them,
    and a target's search skips models that cannot win
    (`codec.rate_control`): a decompress worker of the default set reached
    its first image in 6.9 s loading every post-processor, 3.8 s loading
    the one it needed (`python benchmarks/startup_cost.py`)."""

    spec: ModelSpec
    tile: int
    halo: int
    model_dir: str
    processors: tuple[str, ...]
    _signatures: dict = dataclasses.field(default_factory=dict, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_dir: str, processors: Sequence[str] = (PREPROCESSOR, POSTPROCESSOR), *,
             tile: int | None = None, halo: int | None = None,
             worker_processes: int | None = None, precision: str = FLOAT32,
             eager: bool = False) -> "ExportedSandwich":
        """The export of a local dir, to run at `precision` (`codec.precision`:
        for a set, resolve `auto` over all its specs first); with
        `worker_processes`, first gives this process its share of the cores
        (`share_cores`). Its `processors` load on first use, or now if
        `eager` (a temporary copy of a remote export is deleted after this)."""
        if worker_processes is not None:
            share_cores(worker_processes)
        spec = read_spec(model_dir)
        use_precision(choose_precision(precision, [spec]))
        tile, halo = tile_layout([layout_grid(spec)], tile, halo)
        export = cls(spec, tile, halo, model_dir, tuple(processors))
        if eager:
            for name in export.processors:
                export._signature(name)
        return export

    def _signature(self, processor: str):
        """The `serving_default` signature of `processor`, loaded once."""
        if processor not in self.processors:
            raise ValueError(f"model {self.spec.model_id} was loaded without its {processor}")
        with self._lock:
            if processor not in self._signatures:
                # Checked when it loads: a remote export's local copy is gone after that.
                if processor == PREPROCESSOR:
                    check_can_code(self.model_dir, self.spec)
                import tensorflow as tf

                self._signatures[processor] = tf.saved_model.load(
                    os.path.join(self.model_dir, processor)).signatures["serving_default"]
            return self._signatures[processor]

    def preprocess(self, source: np.ndarray, qstep: float | None = None) -> np.ndarray:
        """Source `[h, w, 3]` (the model's container dtype) -> uint8
        bottleneck to code at the tables' scale `qstep` (default: the
        model's own; only a pre-processor that reads the step, see
        `ModelSpec.preprocessor_reads_qstep`, depends on it)."""
        import tensorflow as tf

        signature = self._signature(PREPROCESSOR)
        # Exports from before the pre-processor could read the step take no qstep.
        step = (tf.constant(self.spec.qstep if qstep is None else qstep, tf.float32),) if (
            "qstep" in signature.structured_input_signature[1]) else ()
        return tiling.downscale_tiled(
            lambda tile: _call(signature, tf.constant(tile), *step)["bottleneck"].numpy(),
            source, factor=self.spec.factor, tile=self.tile, halo=self.halo)

    def bottleneck_at(self, source: np.ndarray) -> Callable[[float], np.ndarray]:
        """`qstep -> preprocess(source, qstep)` for a search over steps: the
        pre-processor runs once if it does not read the step, else once per
        step (the last one kept: a search re-encodes its pick)."""
        if not self.spec.preprocessor_reads_qstep:
            once = self.preprocess(source)
            return lambda qstep: once
        return functools.lru_cache(maxsize=1)(lambda qstep: self.preprocess(source, qstep))

    def postprocess(self, decoded: np.ndarray, size: tuple[int, int], qstep: float) -> np.ndarray:
        """Decoded uint8 bottleneck coded at the tables' scale `qstep` ->
        reconstruction `[*size, 3]` in the source dtype."""
        import tensorflow as tf

        signature = self._signature(POSTPROCESSOR)
        step = tf.constant(qstep, tf.float32)
        return tiling.upscale_tiled(
            lambda tile, tile_size: _call(
                signature, tf.constant(tile), tf.constant(tile_size, tf.int32),
                step)["reconstruction"].numpy(),
            decoded, size, factor=self.spec.factor, tile=self.tile, halo=self.halo)

"""The exported sandwich as Beam's RunInference sees it: one load per worker process.

Beam's stock TensorFlow handler imports tensorflow_hub and loads through
Keras, which refuses plain SavedModels under Keras 3 (docs/architecture.md); ours calls
`tf.saved_model.load` on the export dir that `trainer.export` writes
(`preprocessor/`, `postprocessor/`, `model_spec.json`) and uses only the
`serving_default` signatures, so no project code is needed to run a model.
Signature arguments are bound by their dtype and rank (the image is rank 3,
the size a rank-1 int32, the post-processor's qstep a float32 scalar), which does not depend on the names the exporter
gave them (`trainer.export` leaves them `args_0`, `args_1`).
A job may run a model set (`export_dirs`: several export dirs, or a
directory of them; each bottleneck names its model by `model_id`).
RunInference keeps the loaded set in a per-process `Shared` handle, so a
worker loads it once and reuses it for every bundle; before loading, it
gives TensorFlow only its process's share of the cores (`share_cores`).

Images are run one at a time (`max_batch_size=1`): they differ in size, so
they cannot be stacked, and each one is already cut into tiles
(`sandwich.tiling`) that bound the memory a processor needs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import tempfile
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines import bottleneck_format, process_exit
from pipelines.dead_letters import Rejected
from pipelines.patches import relative_path
from sandwich import tiling
from sandwich.specs import MODEL_SPEC_FILE, ModelSpec, SpecError

PREPROCESSOR, POSTPROCESSOR = "preprocessor", "postprocessor"
# Source pixels. Multiples of 32 keep tiles on the pooling grid of a 4-level
# U-Net (`tile_layout` moves them onto every factor's grid as well); a
# 128-pixel halo covers the slim and paper U-Nets' receptive fields (about
# 110 pixels), so tiling changes nothing.
DEFAULT_TILE = 1024
DEFAULT_HALO = 128
_LAYOUT_GRID = 32


def tile_layout(factors: Sequence[int], tile: int | None = None,
                halo: int | None = None) -> tuple[int, int]:
    """The tile and halo (source pixels) for models of `factors`: those
    given, checked against every factor, or by default `DEFAULT_TILE` and
    `DEFAULT_HALO` moved onto multiples of 32 and of every factor (1024 and
    128 for factors 1, 2 and 4; 960 and 192 at x3, whose bottleneck the
    defaults would cut off its grid)."""
    grid = math.lcm(_LAYOUT_GRID, *factors)
    tile = max(grid, DEFAULT_TILE // grid * grid) if tile is None else tile
    halo = -(-DEFAULT_HALO // grid) * grid if halo is None else halo
    for factor in set(factors):
        tiling.check_layout(tile, halo, factor)
    return tile, halo


def export_dirs(value: str) -> tuple[str, ...]:
    """The export dirs a `--model` flag names: an export dir, a comma-separated
    list of them, or a directory whose subdirectories are export dirs (a
    model set, such as the gammas x factors `benchmarks/quality.py` trains)."""
    dirs = []
    for entry in filter(None, (part.strip().rstrip("/") for part in value.split(","))):
        if FileSystems.exists(FileSystems.join(entry, MODEL_SPEC_FILE)):
            dirs.append(entry)
            continue
        pattern = FileSystems.join(entry, "*", MODEL_SPEC_FILE)
        found = sorted(FileSystems.split(match.path)[0]
                       for match in FileSystems.match([pattern])[0].metadata_list)
        if not found:
            raise SpecError(f"{entry} is neither an export dir nor a directory of them: "
                            f"no {MODEL_SPEC_FILE} in it or in its subdirectories")
        dirs.extend(found)
    if not dirs:
        raise SpecError("no export dir given")
    return tuple(dirs)


def read_specs(model_dirs: Sequence[str]) -> dict[str, ModelSpec]:
    """The specs of a model set by model id, which each bottleneck names, so
    two exports of one id (or of the id a plain-JPEG fallback or an identity
    file carries) are a `SpecError`."""
    reserved = {bottleneck_format.FALLBACK: "by plain-JPEG fallbacks",
                bottleneck_format.IDENTITY: "by identity files"}
    specs = {}
    for model_dir in model_dirs:
        spec = read_spec(model_dir)
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


def read_spec(model_dir: str) -> ModelSpec:
    """The model spec of an export dir (local or gs://), or a clear `SpecError`."""
    path = FileSystems.join(model_dir, MODEL_SPEC_FILE)
    if not FileSystems.exists(path):
        raise SpecError(f"{model_dir} is not an export dir: it has no {MODEL_SPEC_FILE}")
    with FileSystems.open(path) as f:
        return ModelSpec.from_json(f.read())


@contextlib.contextmanager
def _local_dir(directory: str):
    """`directory` itself if local, else a temporary local copy made through
    Beam's filesystems, deleted on exit (a loaded SavedModel holds its values).

    `tf.saved_model.load` reads through `tf.io.gfile`, which real GCS serves
    but a storage emulator does not; copying with Beam's filesystems works
    with both and costs a few megabytes per worker. Object names are
    untrusted: one that would land outside the copy is a `SpecError`.
    """
    if FileSystems.get_scheme(directory) in (None, "file"):
        yield directory
        return
    prefix = directory.rstrip("/") + "/"
    with tempfile.TemporaryDirectory(prefix="sandwich-model-") as local:
        for match in FileSystems.match([prefix + "**"])[0].metadata_list:
            try:
                relative = relative_path(match.path, prefix)
            except Rejected as e:
                raise SpecError(f"export dir {directory}: {e.reason}") from e
            target = os.path.join(local, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with FileSystems.open(match.path) as src, open(target, "wb") as dst:
                dst.write(src.read())
        yield local


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


# Threads of a model job's write step (`batch_jobs.WriteOutputs`): a PNG or
# JPEG is written in a fraction of its model's time, so two keep up, and the
# images waiting on them (twice as many) stay few on machines of many cores.
MAX_WRITER_THREADS = 2


def writer_threads(worker_processes: int) -> int:
    """Threads for the write step beside the model in each of `worker_processes`."""
    return min(MAX_WRITER_THREADS, cores_per_process(worker_processes))


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
    """A loaded export: its spec and the processors, applied tile by tile."""

    spec: ModelSpec
    tile: int
    halo: int
    _preprocess: Any = None
    _postprocess: Any = None

    @classmethod
    def load(cls, model_dir: str, processors: Sequence[str] = (PREPROCESSOR, POSTPROCESSOR), *,
             tile: int | None = None, halo: int | None = None,
             worker_processes: int | None = None) -> "ExportedSandwich":
        """Loads the processors; with `worker_processes`, first gives this
        process its share of the cores (`share_cores`)."""
        import tensorflow as tf

        if worker_processes is not None:
            share_cores(worker_processes)
        spec = read_spec(model_dir)
        tile, halo = tile_layout([spec.factor], tile, halo)
        with _local_dir(model_dir) as local:
            loaded = {name: tf.saved_model.load(os.path.join(local, name)).signatures[
                "serving_default"] for name in processors}
        return cls(spec, tile, halo, loaded.get(PREPROCESSOR), loaded.get(POSTPROCESSOR))

    def preprocess(self, source: np.ndarray, qstep: float | None = None) -> np.ndarray:
        """Source `[h, w, 3]` (the model's container dtype) -> uint8
        bottleneck to code at the tables' scale `qstep` (default: the
        model's own; only a pre-processor that reads the step, see
        `ModelSpec.preprocessor_reads_qstep`, depends on it)."""
        import tensorflow as tf

        # Exports from before the pre-processor could read the step take no qstep.
        step = (tf.constant(self.spec.qstep if qstep is None else qstep, tf.float32),) if (
            "qstep" in self._preprocess.structured_input_signature[1]) else ()
        return tiling.downscale_tiled(
            lambda tile: _call(self._preprocess, tf.constant(tile), *step)["bottleneck"].numpy(),
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

        step = tf.constant(qstep, tf.float32)
        return tiling.upscale_tiled(
            lambda tile, tile_size: _call(
                self._postprocess, tf.constant(tile), tf.constant(tile_size, tf.int32),
                step)["reconstruction"].numpy(),
            decoded, size, factor=self.spec.factor, tile=self.tile, halo=self.halo)


class ModelSet(dict):
    """Loaded exports by model id (a subclass, since Beam's `Shared`, which
    keeps one per worker process, holds a weak reference, and a plain dict
    takes none)."""


class SandwichHandler(ModelHandler[Any, PredictionResult, ModelSet]):
    """Loads `processors` of every export dir of a set as {model_id:
    ExportedSandwich}, once per worker process; elements carry their `pixels`."""

    processors: tuple[str, ...]

    def __init__(self, model_dirs: Sequence[str], *, tile: int | None = None,
                 halo: int | None = None, worker_processes: int = 0):
        super().__init__(max_batch_size=1)
        self._model_dirs, self._tile, self._halo = tuple(model_dirs), tile, halo
        self._worker_processes = worker_processes

    def load_model(self) -> ModelSet:
        # A worker's exit would spend about 1 s of a core collecting TensorFlow's objects.
        process_exit.freeze_heap_at_exit()
        models = (ExportedSandwich.load(d, self.processors, tile=self._tile, halo=self._halo,
                                        worker_processes=self._worker_processes)
                  for d in self._model_dirs)
        return ModelSet((model.spec.model_id, model) for model in models)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(element.pixels.nbytes for element in batch)

    def get_metrics_namespace(self) -> str:
        return f"sandwich_{'_'.join(self.processors)}"

    def run_inference(self, batch: Sequence[Any], models: ModelSet,
                      inference_args=None) -> Iterable[PredictionResult]:
        return [PredictionResult(element, self._infer(models, element)) for element in batch]

    def _infer(self, models: ModelSet, element):
        raise NotImplementedError


class PreprocessHandler(SandwichHandler):
    """Element with `pixels` (the source) -> inference: the uint8 bottleneck
    of the set's one model, to code at the tables' scale `qstep`."""

    processors = (PREPROCESSOR,)

    def __init__(self, model_dirs: Sequence[str], qstep: float, **kwargs):
        super().__init__(model_dirs, **kwargs)
        self._qstep = qstep

    def _infer(self, models, element):
        (model,) = models.values()
        return model.preprocess(element.pixels, self._qstep)


class PostprocessHandler(SandwichHandler):
    """Element with `pixels` (decoded bottleneck), `size`, `qstep` and
    `header` -> the reconstruction by the model the header names, told the
    step the bottleneck was coded at."""

    processors = (POSTPROCESSOR,)

    def _infer(self, models, element):
        return models[element.header.model_id].postprocess(element.pixels, element.size,
                                                           element.qstep)

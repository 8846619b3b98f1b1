"""The exported sandwich as Beam's RunInference sees it: one load per worker process.

Beam's stock TensorFlow handler imports tensorflow_hub and loads through
Keras, which refuses plain SavedModels under Keras 3 (docs/architecture.md);
ours loads the deployed codec's `ExportedSandwich` (`codec.exported`).
A job may run a model set (`export_dirs`: several export dirs, a directory
of them, or a shipped set; each bottleneck names its model by `model_id`),
local or on `gs://`: the set's rules are the codec's, read through Beam's
filesystems (`BEAM_FILES`), and a remote export is copied to the worker
before it is loaded (`local_dir`).
RunInference keeps the loaded set in a per-process `Shared` handle, so a
worker loads it once and reuses it for every bundle; before loading, it
gives TensorFlow only its process's share of the cores (`share_cores`).

Images are run one at a time (`max_batch_size=1`): they differ in size, so
they cannot be stacked, and each one is already cut into tiles
(`codec.tiling`) that bound the memory a processor needs.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterable, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from codec import api, exported, rate_control
from codec import precision as precision_
from codec.exported import POSTPROCESSOR, PREPROCESSOR, ExportedSandwich, cores_per_process
from pipelines import process_exit
from pipelines.dead_letters import Rejected
from pipelines.paths import relative_path
from sandwich.specs import ModelSpec, SpecError


class _BeamFiles(exported.Files):
    """`codec.exported.Files` over Beam's filesystems: local paths and gs://."""

    join = staticmethod(FileSystems.join)
    exists = staticmethod(FileSystems.exists)

    @staticmethod
    def parent(path: str) -> str:
        return FileSystems.split(path)[0]

    @staticmethod
    def glob(pattern: str) -> list[str]:
        return sorted(match.path for match in FileSystems.match([pattern])[0].metadata_list)

    @staticmethod
    def read(path: str) -> bytes:
        with FileSystems.open(path) as f:
            return f.read()


BEAM_FILES = _BeamFiles()


def export_dirs(value: str) -> tuple[str, ...]:
    """`codec.exported.export_dirs`, local or gs://."""
    return exported.export_dirs(value, BEAM_FILES)


def read_spec(model_dir: str) -> ModelSpec:
    """`codec.exported.read_spec`, local or gs://."""
    return exported.read_spec(model_dir, BEAM_FILES)


def read_specs(model_dirs: Sequence[str]) -> dict[str, ModelSpec]:
    """`codec.exported.read_specs`, local or gs://."""
    return exported.read_specs(model_dirs, BEAM_FILES)


@contextlib.contextmanager
def local_dir(directory: str):
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


def load(model_dir: str, processors: Sequence[str] = (PREPROCESSOR, POSTPROCESSOR),
         **kwargs) -> ExportedSandwich:
    """`ExportedSandwich.load` of a local or gs:// export dir: a local one's
    processors load when first run, a remote one's now, from its temporary copy."""
    with local_dir(model_dir) as local:
        return ExportedSandwich.load(local, processors, eager=local != model_dir, **kwargs)


# Threads of a model job's write step (`batch_jobs.WriteOutputs`): a PNG or
# JPEG is written in a fraction of its model's time, so two keep up, and the
# images waiting on them (twice as many) stay few on machines of many cores.
MAX_WRITER_THREADS = 2


def writer_threads(worker_processes: int) -> int:
    """Threads for the write step beside the model in each of `worker_processes`."""
    return min(MAX_WRITER_THREADS, cores_per_process(worker_processes))


class ModelSet(dict):
    """Loaded exports by model id (a subclass, since Beam's `Shared`, which
    keeps one per worker process, holds a weak reference, and a plain dict
    takes none)."""


class SandwichHandler(ModelHandler[Any, PredictionResult, ModelSet]):
    """Loads `processors` of every export dir of a set as {model_id:
    ExportedSandwich}, once per worker process; elements carry their `pixels`."""

    processors: tuple[str, ...]

    def __init__(self, model_dirs: Sequence[str], *, tile: int | None = None,
                 halo: int | None = None, worker_processes: int = 0,
                 precision: str = precision_.AUTO):
        super().__init__(max_batch_size=1)
        self._model_dirs, self._tile, self._halo = tuple(model_dirs), tile, halo
        self._worker_processes, self._precision = worker_processes, precision

    def load_model(self) -> ModelSet:
        # A worker's exit would spend about 1 s of a core collecting TensorFlow's objects.
        process_exit.freeze_heap_at_exit()
        # Chosen here, on the worker: its CPU decides whether bfloat16 runs.
        precision = precision_.choose(self._precision, read_specs(self._model_dirs).values())
        models = (load(d, self.processors, tile=self._tile, halo=self._halo,
                       worker_processes=self._worker_processes, precision=precision)
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
    """Element with `pixels` (decoded bottleneck) and `header` -> what the
    file decodes to (`codec.api.reconstruct`): by the post-processor of the
    model the header names, or for an identity file by its scenario's fixed
    steps, in the same RunInference step, so that those run in the worker
    processes `share_cores` sized, beside the models' files."""

    processors = (POSTPROCESSOR,)

    def _infer(self, models, element):
        return api.reconstruct(models, element.header, element.pixels)


class TargetHandler(SandwichHandler):
    """`codec.Source` -> inference: the `rate_control.Coded` file that serves the
    target best, or the `Rejected` reason the encoder gave (the write step
    turns it into a dead letter; RunInference has no way out for one element)."""

    processors = (PREPROCESSOR, POSTPROCESSOR)

    def __init__(self, model_dirs: Sequence[str], target: rate_control.Target, *,
                 fallback: bool, **kwargs):
        super().__init__(model_dirs, **kwargs)
        self._target, self._fallback = target, fallback

    def _infer(self, models, element):
        try:
            return rate_control.choose(models.values(), element, self._target,
                                       fallback=self._fallback)
        except Rejected as e:
            return e
        except ValueError as e:  # Pillow's size limits, among others
            return Rejected(f"coding to {self._target.label}: {e}")

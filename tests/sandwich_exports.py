"""Export dirs for the compression tests, written by the trainer's own `export.save`.

An untrained `Sandwich` is its scenario's baseline exactly, which gives the
jobs a known answer; `perturb` gives the processors' zero-initialised output
layers small random weights (and a gray model's colour carriers a gain), so
that a model changes pixels and tiling or a mismatched model would show. Every weight is drawn from `seed`, so an export
is the same in every test process (which model of a set wins an image must
not depend on the run). Saving a SavedModel takes many seconds, so each
export is made once per test process and shared.
"""
import atexit
import functools
import shutil
import tempfile

import keras
import numpy as np

from sandwich import scenarios
from sandwich.model import Sandwich
from sandwich.specs import ModelSpec
from trainer import export

_ROOT = tempfile.mkdtemp(prefix="sandwich-exports-")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def export_sandwich(scenario: str, *, model_id: str, bit_depth=None, factor=None,
                    qstep: float = 20.0, perturb: float = 0.0, seed: int = 0,
                    jpeg_mode: str | None = None, qstep_range=None,
                    condition_preprocessor: bool = False, table_shape: str = "flat") -> str:
    """The path of an export dir of a slim Sandwich (read-only: it is shared);
    rate-conditioned over `qstep_range` if given, its pre-processor too with
    `condition_preprocessor`; its tables of `table_shape`; its JPEG mode
    the scenario's unless given."""
    scenario = scenarios.make(scenario, bit_depth=bit_depth, factor=factor, jpeg_mode=jpeg_mode,
                              table_shape=table_shape)
    keras.utils.set_random_seed(seed)
    model = Sandwich(scenario, size="slim", qstep=qstep, qstep_range=qstep_range,
                     condition_preprocessor=condition_preprocessor)
    if perturb:
        if model.carrier:  # A gray model codes colour carriers too.
            model.carrier.gain.assign([0.3, 0.3])
        rng = np.random.default_rng(seed)
        for processor in (model.preprocessor, model.postprocessor):
            for head in (processor.unet.head, processor.mlp.layers[-1]):
                head.kernel.assign(perturb * rng.standard_normal(head.kernel.shape))
    spec = ModelSpec(model_id=model_id, scenario=scenario.name, bit_depth=scenario.bit_depth,
                     factor=scenario.factor, qstep=float(model.qstep),
                     jpeg_mode=scenario.jpeg_mode.name,
                     qstep_range=None if qstep_range is None else list(qstep_range),
                     preprocessor_reads_qstep=model.preprocessor_conditioned,
                     table_shape=table_shape,
                     qtables=None if table_shape == "flat" else model.qtables.numpy().tolist())
    return export.save(model, spec, f"{_ROOT}/{model_id}")

"""The export dir: the two processors as SavedModels, and the model spec.

    export/
      preprocessor/    source [h, w, 3] (uint8, or uint16 above 8 bits), qstep float32 []
                       -> {"bottleneck": uint8}
      postprocessor/   decoded [h', w', c] uint8 (c: 1 for gray, else 3), size [2] int32,
                       qstep float32 []
                       -> {"reconstruction": source dtype}
      model_spec.json  scenario, bit depth, factor, trained qstep, dataset spec, metrics,
                       what the loss measured (objective, distortion, view weight)

Any JPEG encoder sits between the two: `model_spec.json` says which
quantisation tables (`qstep`, and `qtables` where they are not flat: learned,
or a shape's, `table_shape`) and which colour handling
(`jpeg_mode`) the post-processor was trained for; an encoder rescales
`qtables` to the scale it codes at (`ModelSpec.tables_at`). Both SavedModels
load with plain `tf.saved_model.load` and need none of this project's code.

The export is written to a temporary sibling directory and renamed into
place, so a crash never leaves a half-written export under the final name
(on a local or POSIX filesystem; on GCS, `tf.io.gfile.rename` copies a
directory object by object, which narrows the window but cannot close it).
"""
from __future__ import annotations

import uuid

import tensorflow as tf

from sandwich.specs import MODEL_SPEC_FILE, ModelSpec

PROCESSORS = {"preprocess": ("preprocessor", "bottleneck", ("source", "qstep")),
              "postprocess": ("postprocessor", "reconstruction", ("decoded", "size", "qstep"))}


def _serving_module(model, function) -> tuple[tf.Module, tf.types.experimental.GenericFunction]:
    """A module that tracks one processor's variables, and its signature:
    `function` with named inputs and a named output."""
    attribute, output, inputs = PROCESSORS[function.__name__]
    module = tf.Module()
    module.processor = getattr(model, attribute)
    # The gray scenario's colour carriers, which both processors use.
    module.carrier = model.carrier
    module.call = function
    specs = [tf.TensorSpec(spec.shape, spec.dtype, name=name)
             for spec, name in zip(function.input_signature, inputs)]
    serve = tf.function(lambda *args: {output: function(*args)}, input_signature=specs)
    return module, serve


def save(model, model_spec: ModelSpec, export_dir: str) -> str:
    """Writes the export dir atomically and returns its path.

    `model` is a `sandwich.model.Sandwich` built outside any distribution
    strategy (plain variables, so the SavedModels carry no replicas).
    """
    export_dir = export_dir.rstrip("/")
    parent, name = export_dir.rsplit("/", 1) if "/" in export_dir else (".", export_dir)
    tf.io.gfile.makedirs(parent)
    temp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for function in model.serving_functions().values():
            module, serve = _serving_module(model, function)
            directory = PROCESSORS[function.__name__][0]
            tf.saved_model.save(module, f"{temp}/{directory}", signatures={"serving_default": serve})
        with tf.io.gfile.GFile(f"{temp}/{MODEL_SPEC_FILE}", "w") as f:
            f.write(model_spec.to_json())
        _replace(temp, export_dir)
    finally:
        if tf.io.gfile.exists(temp):
            tf.io.gfile.rmtree(temp)
    return export_dir


def _replace(temp: str, final: str) -> None:
    """Moves `temp` to `final`; an older export there is removed only after."""
    old = None
    if tf.io.gfile.exists(final):
        old = f"{temp}.old"
        tf.io.gfile.rename(final, old)
    tf.io.gfile.rename(temp, final)
    if old:
        tf.io.gfile.rmtree(old)

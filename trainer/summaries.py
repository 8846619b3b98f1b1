"""TensorBoard scalars and images written with TensorFlow's core summary op.

`tf.summary.scalar`/`image` live in the `tensorboard` package, which
TensorFlow 2.21 no longer installs; the trainer must not need it just to
log. These write the same records (`tf.summary.write` with the scalars and
images plugins' metadata), which TensorBoard reads as its own.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str) -> bytes:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    ).SerializeToString()


def scalar(name: str, value: float) -> None:
    tf.summary.write(name, tf.constant(value, tf.float32), metadata=_metadata("scalars"))


def images(name: str, batch: tf.Tensor, max_outputs: int = 3) -> None:
    """`batch` is `[b, h, w, c]` floats in [0, 1]."""
    pixels = tf.image.convert_image_dtype(batch[:max_outputs], tf.uint8, saturate=True)
    encoded = tf.map_fn(tf.image.encode_png, pixels, fn_output_signature=tf.string)
    size = tf.strings.as_string(tf.shape(batch)[2:0:-1])  # width, height
    tf.summary.write(name, tf.concat([size, encoded], 0), metadata=_metadata("images"))

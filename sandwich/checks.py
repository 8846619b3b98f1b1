"""Argument checks shared by the codec proxy, the real codec and the models.

They run where the values are known in Python (eager tensors, NumPy arrays,
numbers); inside a compiled step the shapes are static and the qstep is a
variable kept positive by construction, so nothing is checked there.
"""
import math

import numpy as np
import tensorflow as tf


def check_images(images, *, channels=(1, 3), name="images") -> None:
    """Rank 4 `[batch, height, width, channels]`, non-empty, known channels."""
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ValueError(
            f"{name} must have rank 4 [batch, height, width, channels], got shape {shape}")
    if shape[-1] is not None and shape[-1] not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels, "
                         f"got {shape[-1]} (shape {shape})")
    if any(d == 0 for d in shape if d is not None):
        raise ValueError(f"{name} is empty: shape {shape}")


def check_qstep(qstep) -> None:
    """A finite, strictly positive quantisation step, where it can be known."""
    value = qstep
    if isinstance(qstep, (tf.Tensor, tf.Variable)):
        value = tf.get_static_value(qstep) if not tf.executing_eagerly() else qstep.numpy()
        if value is None:
            return
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1:
        raise ValueError(f"qstep must be a scalar, got shape {arr.shape}")
    q = float(arr.reshape(()))
    if math.isnan(q) or math.isinf(q) or q <= 0:
        raise ValueError(f"qstep must be finite and > 0, got {q}")

"""Argument checks shared by the codec proxy, the real codec and the models.

In the codec's package, the lowest layer, so that the codecs need nothing
above them and the models above take them from here.

They run where the values are known in Python (eager tensors, NumPy arrays,
numbers); inside a compiled step the shapes are static and the qstep is a
variable kept positive by construction, so nothing is checked there.

No TensorFlow import: the real codec uses these checks in workers that
never load it (a value can only be a TensorFlow tensor once it is loaded).
"""
import sys

from sandwich.jpeg import tables


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
    """A finite, strictly positive step or table of steps, where it can be known."""
    value = qstep
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(qstep, (tf.Tensor, tf.Variable)):
        value = tf.get_static_value(qstep) if not tf.executing_eagerly() else qstep.numpy()
        if value is None:
            return
    tables.check_qstep(value)

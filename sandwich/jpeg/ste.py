"""The straight-through estimator, the one trick that makes JPEG differentiable.

Every integer step of the codec (rounding, libjpeg's fixed-point arithmetic)
is computed exactly in the forward pass and given the gradient of the exact
linear operation it approximates.
"""
import tensorflow as tf


def straight_through(linear: tf.Tensor, exact: tf.Tensor) -> tf.Tensor:
    """`exact` forward, the gradient of `linear` backward."""
    return linear + tf.stop_gradient(exact - linear)

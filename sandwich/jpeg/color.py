"""JFIF colour conversion (BT.601, full range, chroma offset by 128).

These are the equations libjpeg applies when it is handed an RGB image
without `keep_rgb`, so the proxy's YCbCr mode sees what the encoder sees.
"""
import tensorflow as tf

_RGB_TO_YCBCR = [
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
]
_YCBCR_TO_RGB = [
    [1.0, 0.0, 1.402],
    [1.0, -0.344136286, -0.714136286],
    [1.0, 1.772, 0.0],
]
_CHROMA_OFFSET = [0.0, 128.0, 128.0]


def rgb_to_ycbcr(rgb: tf.Tensor) -> tf.Tensor:
    m = tf.constant(_RGB_TO_YCBCR, rgb.dtype)
    return tf.einsum("...c,kc->...k", rgb, m) + tf.constant(_CHROMA_OFFSET, rgb.dtype)


def ycbcr_to_rgb(ycbcr: tf.Tensor) -> tf.Tensor:
    m = tf.constant(_YCBCR_TO_RGB, ycbcr.dtype)
    return tf.einsum("...c,kc->...k", ycbcr - tf.constant(_CHROMA_OFFSET, ycbcr.dtype), m)

"""JFIF colour conversion (BT.601, full range, chroma offset by 128), as
libjpeg-turbo computes it.

libjpeg converts in 16-bit fixed point with its own rounding (`jccolor.c`,
`jdcolor.c`); a float conversion lands up to one level off on a sizeable
share of pixels, which alone held the proxy at 43-46 dB from the real codec.
So the forward values here are libjpeg's integers, and the gradient is that
of the exact linear map (straight-through). The arithmetic stays below 2^24,
so float32 carries the integers exactly and XLA compiles it.
"""
import numpy as np
import tensorflow as tf

from sandwich.jpeg.ste import straight_through

_SCALEBITS = 16
_ONE = float(1 << _SCALEBITS)
_HALF = float(1 << (_SCALEBITS - 1))


def _fix(x: float) -> float:
    """libjpeg's FIX(x): x in 16-bit fixed point, rounded."""
    return float(int(x * _ONE + 0.5))


# JFIF's (BT.601 full-range) RGB -> Y, Cb, Cr rows, chroma before its +128
# offset: also what the gray scenario keeps (Y) and hides (Cb, Cr).
RGB_TO_YCBCR = np.array([
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
])
_YCBCR_TO_RGB = np.array([
    [1.0, 0.0, 1.402],
    [1.0, -0.344136286, -0.714136286],
    [1.0, 1.772, 0.0],
])
_CHROMA_OFFSET = [0.0, 128.0, 128.0]
# jccolor.c's table entries; Cb and Cr round with ONE_HALF - 1 so that 255
# never rounds up to 256.
_ENCODER_FIXED = np.array([
    [_fix(0.29900), _fix(0.58700), _fix(0.11400)],
    [-_fix(0.16874), -_fix(0.33126), _fix(0.5)],
    [_fix(0.5), -_fix(0.41869), -_fix(0.08131)],
])
_ENCODER_ROUNDING = [_HALF, 128.0 * _ONE + _HALF - 1, 128.0 * _ONE + _HALF - 1]


# jdcolor.c's products, one row per output (R, G, B) over (Y, Cb', Cr'):
# R = Y + round(1.402 Cr'), G = Y + floor(-0.34414 Cb' - 0.71414 Cr' + 1/2),
# B = Y + round(1.772 Cb'), each product in fixed point.
_DECODER_FIXED = np.array([
    [0.0, 0.0, _fix(1.40200)],
    [0.0, -_fix(0.34414), -_fix(0.71414)],
    [0.0, _fix(1.77200), 0.0],
])


def _channels(x: tf.Tensor, matrix, bias=None) -> tf.Tensor:
    """`x @ matrix.T (+ bias)` over the channels of `x`, as one 2-D matmul.

    On integers every product and partial sum here stays below 2^24, so
    float32 carries the fixed-point arithmetic exactly in any order. Luma
    and chroma come and go as separate tensors: slicing or joining channels
    copies the whole image, and costs more than a matmul of its own.
    """
    matrix = np.asarray(matrix, np.float32)
    out = tf.matmul(tf.reshape(x, [-1, matrix.shape[1]]), tf.constant(matrix.T))
    if bias is not None:
        out = tf.nn.bias_add(out, tf.constant(np.asarray(bias, np.float32)))
    return tf.reshape(out, [-1, *x.shape[1:-1], matrix.shape[0]])


def rgb_to_ycbcr(rgb: tf.Tensor) -> list:
    """Integer RGB (float32) -> libjpeg's integer luma `[..., 1]` and chroma
    `[..., 2]`, with the gradient of the exact conversion."""
    integers = tf.stop_gradient(rgb)
    parts = []
    for rows in (slice(0, 1), slice(1, 3)):
        linear = _channels(rgb, RGB_TO_YCBCR[rows], _CHROMA_OFFSET[rows])
        exact = tf.floor(_channels(integers, _ENCODER_FIXED[rows], _ENCODER_ROUNDING[rows]) / _ONE)
        parts.append(straight_through(linear, exact))
    return parts


def ycbcr_to_rgb(luma: tf.Tensor, chroma: tf.Tensor) -> tf.Tensor:
    """Integer luma `[..., 1]` and chroma `[..., 2]` -> libjpeg's integer RGB
    (before the clip to 0..255), with the gradient of the exact conversion
    (`jdcolor.c`, `_DECODER_FIXED`)."""
    centred = chroma - _CHROMA_OFFSET[1]
    luma = _channels(luma, _YCBCR_TO_RGB[:, :1])
    linear = luma + _channels(centred, _YCBCR_TO_RGB[:, 1:])
    fixed = _channels(tf.stop_gradient(centred), _DECODER_FIXED[:, 1:], [_HALF] * 3)
    return straight_through(linear, tf.stop_gradient(luma) + tf.floor(fixed / _ONE))

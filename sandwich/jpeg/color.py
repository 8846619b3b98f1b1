"""JFIF colour conversion (BT.601, full range, chroma offset by 128), as
libjpeg-turbo computes it.

libjpeg converts in 16-bit fixed point with its own rounding (`jccolor.c`,
`jdcolor.c`); a float conversion lands up to one level off on a sizeable
share of pixels, which alone held the proxy at 43-46 dB from the real codec.
So the forward values here are libjpeg's integers, and the gradient is that
of the exact linear map (straight-through). The arithmetic stays below 2^24,
so float32 carries the integers exactly and XLA compiles it.
"""
import tensorflow as tf

from sandwich.jpeg.ste import straight_through

_SCALEBITS = 16
_ONE = float(1 << _SCALEBITS)
_HALF = float(1 << (_SCALEBITS - 1))


def _fix(x: float) -> float:
    """libjpeg's FIX(x): x in 16-bit fixed point, rounded."""
    return float(int(x * _ONE + 0.5))


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
# jccolor.c's table entries; Cb and Cr round with ONE_HALF - 1 so that 255
# never rounds up to 256.
_ENCODER_FIXED = [
    [_fix(0.29900), _fix(0.58700), _fix(0.11400)],
    [-_fix(0.16874), -_fix(0.33126), _fix(0.5)],
    [_fix(0.5), -_fix(0.41869), -_fix(0.08131)],
]
_ENCODER_ROUNDING = [_HALF, 128.0 * _ONE + _HALF - 1, 128.0 * _ONE + _HALF - 1]


def rgb_to_ycbcr(rgb: tf.Tensor) -> tf.Tensor:
    """Integer RGB (float dtype) -> libjpeg's integer YCbCr, with the
    gradient of the exact conversion."""
    linear = (tf.einsum("...c,kc->...k", rgb, tf.constant(_RGB_TO_YCBCR, rgb.dtype))
              + tf.constant(_CHROMA_OFFSET, rgb.dtype))
    integers = tf.stop_gradient(rgb)
    fixed = (tf.einsum("...c,kc->...k", integers, tf.constant(_ENCODER_FIXED, rgb.dtype))
             + tf.constant(_ENCODER_ROUNDING, rgb.dtype))
    return straight_through(linear, tf.floor(fixed / _ONE))


def ycbcr_to_rgb(ycbcr: tf.Tensor) -> tf.Tensor:
    """Integer YCbCr -> libjpeg's integer RGB (before the clip to 0..255),
    with the gradient of the exact conversion.

    As in `jdcolor.c`: R = Y + round(1.402 Cr'), B = Y + round(1.772 Cb'),
    G = Y + floor((-0.34414 Cb' - 0.71414 Cr' + 1/2)), Cb' = Cb - 128, each
    product in fixed point.
    """
    centred = ycbcr - tf.constant(_CHROMA_OFFSET, ycbcr.dtype)
    linear = tf.einsum("...c,kc->...k", centred, tf.constant(_YCBCR_TO_RGB, ycbcr.dtype))
    y, cb, cr = tf.unstack(tf.stop_gradient(centred), axis=-1)
    shift = lambda x: tf.floor(x / _ONE)
    r = y + shift(_fix(1.40200) * cr + _HALF)
    g = y + shift(-_fix(0.34414) * cb - _fix(0.71414) * cr + _HALF)
    b = y + shift(_fix(1.77200) * cb + _HALF)
    return straight_through(linear, tf.stack([r, g, b], axis=-1))

"""The orthonormal 8x8 DCT-II on a grid of blocks: the transform JPEG codes.

libjpeg's integer DCT is this transform scaled by 8 and divides by 8 x the
table entry when it quantises, so quantising these coefficients by `qstep`
is what the real encoder does with a flat table of `qstep`.
"""
import numpy as np
import tensorflow as tf

BLOCK = 8


def dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Rows are the orthonormal DCT-II basis vectors: `C @ C.T == I`."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos((2 * i + 1) * k * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c.astype(np.float32)


_C = dct_matrix()


def to_blocks(planes: tf.Tensor) -> tf.Tensor:
    """[b, h, w] -> [b, h/8, w/8, 8, 8] (h, w multiples of 8)."""
    b, h, w = tf.unstack(tf.shape(planes))
    x = tf.reshape(planes, [b, h // BLOCK, BLOCK, w // BLOCK, BLOCK])
    return tf.transpose(x, [0, 1, 3, 2, 4])


def from_blocks(blocks: tf.Tensor) -> tf.Tensor:
    """[b, h/8, w/8, 8, 8] -> [b, h, w]: the inverse of `to_blocks`."""
    b, nh, nw = tf.unstack(tf.shape(blocks)[:3])
    x = tf.transpose(blocks, [0, 1, 3, 2, 4])
    return tf.reshape(x, [b, nh * BLOCK, nw * BLOCK])


def blockwise_dct(planes: tf.Tensor) -> tf.Tensor:
    """[b, h, w] pixels -> [b, h/8, w/8, 8, 8] coefficients."""
    c = tf.constant(_C, planes.dtype)
    x = to_blocks(planes)
    return tf.einsum("ki,bhwij,lj->bhwkl", c, x, c)


def blockwise_idct(coefficients: tf.Tensor) -> tf.Tensor:
    """Inverse of `blockwise_dct`."""
    c = tf.constant(_C, coefficients.dtype)
    x = tf.einsum("ki,bhwkl,lj->bhwij", c, coefficients, c)
    return from_blocks(x)


# libjpeg's "islow" integer IDCT (jidctint.c: Loeffler, Ligtenberg and
# Moschytz's algorithm in 13-bit fixed point, 2 extra bits between passes).
# Its rounding differs from the exact transform's by up to a few tenths of a
# level, which moves about one decoded pixel in five by one level; the proxy
# reproduces it exactly so that its decoded pixels are the decoder's.
_CONST_BITS = 13
_PASS1_BITS = 2


def _fix(x: float) -> float:
    return float(int(x * (1 << _CONST_BITS) + 0.5))


def _descale(x: tf.Tensor, bits: int) -> tf.Tensor:
    """libjpeg's DESCALE: add half, shift right (floor), on exact integers."""
    return tf.floor((x + float(1 << (bits - 1))) / float(1 << bits))


def _odd_part(t0, t1, t2, t3) -> tuple:
    """The odd half of both islow transforms: the same four rotations
    (Loeffler's figure), on inputs 7, 5, 3, 1 of the IDCT or differences
    3-4, 2-5, 1-6, 0-7 of the forward DCT; outputs in the same order."""
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * _fix(1.175875602)
    t0, t1 = t0 * _fix(0.298631336), t1 * _fix(2.053119869)
    t2, t3 = t2 * _fix(3.072711026), t3 * _fix(1.501321110)
    z1, z2 = z1 * -_fix(0.899976223), z2 * -_fix(2.562915447)
    z3, z4 = z3 * -_fix(1.961570560) + z5, z4 * -_fix(0.390180644) + z5
    return t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4


def _islow_1d(x: list, shift: int) -> list:
    """One 8-point pass of jidctint.c on the list of 8 inputs along an axis."""
    z1 = (x[2] + x[6]) * _fix(0.541196100)
    tmp2 = z1 + x[6] * -_fix(1.847759065)
    tmp3 = z1 + x[2] * _fix(0.765366865)
    tmp0 = (x[0] + x[4]) * float(1 << _CONST_BITS)
    tmp1 = (x[0] - x[4]) * float(1 << _CONST_BITS)
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = _odd_part(x[7], x[5], x[3], x[1])
    out = [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0,
           tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
    return [_descale(v, shift) for v in out]


def islow_idct(coefficients: tf.Tensor) -> tf.Tensor:
    """libjpeg's integer IDCT of dequantised coefficients `[..., 8, 8]`
    (integers in float64, which holds every intermediate exactly); returns
    the decoded samples before the +128 shift and the clip to 0..255."""
    columns = _islow_1d(tf.unstack(coefficients, axis=-2), _CONST_BITS - _PASS1_BITS)
    rows = _islow_1d(tf.unstack(tf.stack(columns, axis=-2), axis=-1),
                     _CONST_BITS + _PASS1_BITS + 3)
    return tf.stack(rows, axis=-1)


def _islow_forward_1d(x: list, odd_shift: int, even_shift: int) -> list:
    """One 8-point pass of jfdctint.c on the list of 8 inputs along an axis;
    `even_shift` < 0 scales outputs 0 and 4 up instead of descaling them."""
    tmp0, tmp7 = x[0] + x[7], x[0] - x[7]
    tmp1, tmp6 = x[1] + x[6], x[1] - x[6]
    tmp2, tmp5 = x[2] + x[5], x[2] - x[5]
    tmp3, tmp4 = x[3] + x[4], x[3] - x[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    even = ((lambda v: v * float(1 << -even_shift)) if even_shift < 0
            else (lambda v: _descale(v, even_shift)))
    out = [None] * 8
    out[0], out[4] = even(tmp10 + tmp11), even(tmp10 - tmp11)
    z1 = (tmp12 + tmp13) * _fix(0.541196100)
    out[2] = _descale(z1 + tmp13 * _fix(0.765366865), odd_shift)
    out[6] = _descale(z1 + tmp12 * -_fix(1.847759065), odd_shift)
    odd = _odd_part(tmp4, tmp5, tmp6, tmp7)
    out[7], out[5], out[3], out[1] = (_descale(v, odd_shift) for v in odd)
    return out


def islow_fdct(samples: tf.Tensor) -> tf.Tensor:
    """libjpeg's integer forward DCT (jfdctint.c) of level-shifted samples
    `[..., 8, 8]` (integers in float64); returns coefficients scaled by 8,
    as libjpeg quantises them (by 8 x the table entry)."""
    rows = _islow_forward_1d(tf.unstack(samples, axis=-1), _CONST_BITS - _PASS1_BITS,
                             -_PASS1_BITS)
    columns = _islow_forward_1d(tf.unstack(tf.stack(rows, axis=-1), axis=-2),
                                _CONST_BITS + _PASS1_BITS, _PASS1_BITS)
    return tf.stack(columns, axis=-2)

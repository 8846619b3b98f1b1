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
# The 2-D transform of a block flattened in raster order is one 64x64 matrix
# (C kron C): one float32 matmul per batch of blocks is cheaper on a CPU than
# two separable passes and the transposes between them.
_BASIS = np.kron(_C, _C)


def to_blocks(images: tf.Tensor) -> tf.Tensor:
    """`[b, h, w, c]` -> `[b, c * h/8 * w/8, 8, 8]`: the blocks of each
    plane in raster order, plane after plane (h, w multiples of 8)."""
    _, h, w, c = images.shape
    x = tf.reshape(images, [-1, h // BLOCK, BLOCK, w // BLOCK, BLOCK, c])
    x = tf.transpose(x, [0, 5, 1, 3, 2, 4])
    return tf.reshape(x, [-1, c * (h // BLOCK) * (w // BLOCK), BLOCK, BLOCK])


def from_blocks(blocks: tf.Tensor, shape) -> tf.Tensor:
    """The inverse of `to_blocks`: blocks -> `[b, h, w, c]` for `shape` (h, w, c)."""
    h, w, c = shape
    x = tf.reshape(blocks, [-1, c, h // BLOCK, w // BLOCK, BLOCK, BLOCK])
    x = tf.transpose(x, [0, 2, 4, 3, 5, 1])
    return tf.reshape(x, [-1, h, w, c])


def _reshape(x: tf.Tensor, inner: list) -> tf.Tensor:
    """`x` with the axes after the first (the batch, which may be unknown)
    reshaped to `inner`."""
    return tf.reshape(x, [-1, *inner])


def _along_last_axis(x: tf.Tensor, matrix: np.ndarray) -> tf.Tensor:
    """`x @ matrix.T` on the last axis of `x`, as one matmul over all rows."""
    rows = tf.matmul(tf.reshape(x, [-1, matrix.shape[1]]), tf.constant(matrix.T, x.dtype))
    return _reshape(rows, [*x.shape[1:-1], matrix.shape[0]])


def _blockwise(blocks: tf.Tensor, matrix: np.ndarray) -> tf.Tensor:
    """`matrix` applied to each [8, 8] block `[..., 8, 8]`, flattened in raster order."""
    flat = _reshape(blocks, [*blocks.shape[1:-2], BLOCK * BLOCK])
    return _reshape(_along_last_axis(flat, matrix), blocks.shape[1:])


def blockwise_dct(blocks: tf.Tensor) -> tf.Tensor:
    """[..., 8, 8] pixels -> [..., 8, 8] coefficients."""
    return _blockwise(blocks, _BASIS)


def blockwise_idct(coefficients: tf.Tensor) -> tf.Tensor:
    """Inverse of `blockwise_dct`."""
    return _blockwise(coefficients, _BASIS.T)


# libjpeg's "islow" integer IDCT (jidctint.c: Loeffler, Ligtenberg and
# Moschytz's algorithm in 13-bit fixed point, 2 extra bits between passes).
# Its rounding differs from the exact transform's by up to a few tenths of a
# level, which moves about one decoded pixel in five by one level; the proxy
# reproduces it exactly so that its decoded pixels are the decoder's.
#
# Each 8-point pass of both islow transforms is an integer-linear map (the
# butterflies and fixed-point rotations below) followed by a descale of each
# output. The proxy runs a pass as one matmul with that map's integer matrix
# and one floor: where every product and partial sum is an integer below
# 2^24 (float32) or 2^53 (float64), the matmul is exact in any summation
# order, and a few ops replace the hundreds of small ones the butterflies
# take per block batch.
_CONST_BITS = 13
_PASS1_BITS = 2


def _fix(x: float) -> float:
    return float(int(x * (1 << _CONST_BITS) + 0.5))


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


def _islow_idct_1d(x: list) -> list:
    """One 8-point pass of jidctint.c on its 8 inputs, before the descale."""
    z1 = (x[2] + x[6]) * _fix(0.541196100)
    tmp2 = z1 + x[6] * -_fix(1.847759065)
    tmp3 = z1 + x[2] * _fix(0.765366865)
    tmp0 = (x[0] + x[4]) * float(1 << _CONST_BITS)
    tmp1 = (x[0] - x[4]) * float(1 << _CONST_BITS)
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = _odd_part(x[7], x[5], x[3], x[1])
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0,
            tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


def _islow_fdct_1d(x: list) -> list:
    """One 8-point pass of jfdctint.c on its 8 inputs, before the descale
    (and before pass 1 scales outputs 0 and 4 up)."""
    tmp0, tmp7 = x[0] + x[7], x[0] - x[7]
    tmp1, tmp6 = x[1] + x[6], x[1] - x[6]
    tmp2, tmp5 = x[2] + x[5], x[2] - x[5]
    tmp3, tmp4 = x[3] + x[4], x[3] - x[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    out = [None] * 8
    out[0], out[4] = tmp10 + tmp11, tmp10 - tmp11
    z1 = (tmp12 + tmp13) * _fix(0.541196100)
    out[2] = z1 + tmp13 * _fix(0.765366865)
    out[6] = z1 + tmp12 * -_fix(1.847759065)
    out[7], out[5], out[3], out[1] = _odd_part(tmp4, tmp5, tmp6, tmp7)
    return out


class _Pass:
    """One islow pass on the rows (`axis=-1`) or the columns (`axis=-2`) of
    blocks `[..., 8, 8]`: the pass's integer matrix, then libjpeg's DESCALE
    (add half, shift right) of each output by `shifts` bits, where 0 leaves
    the exact integer as it is. Neither needs a transpose: rows are one
    matmul over all blocks, columns one broadcast batch matmul."""

    def __init__(self, one_d, axis: int, shifts, scales=1):
        identity = list(np.eye(BLOCK))
        self.matrix = np.stack(one_d(identity)) * np.reshape(scales, [-1, 1])
        self.axis = axis
        shifts = np.asarray(shifts)
        shape = [-1] if axis == -1 else [-1, 1]
        self.bias = np.reshape(np.where(shifts > 0, 2.0 ** (shifts - 1), 0.0), shape)
        # A power of two: multiplying by its inverse is exact, and cheaper
        # than a float64 division.
        self.scale = np.reshape(2.0 ** -shifts, shape)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.axis == -1:
            y = _along_last_axis(x, self.matrix)
        else:
            y = tf.matmul(tf.constant(self.matrix, x.dtype), x)
        return tf.floor((y + self.bias) * self.scale)


_EVEN = np.isin(np.arange(BLOCK), [0, 4])
_IDCT_COLUMNS = _Pass(_islow_idct_1d, -2, [_CONST_BITS - _PASS1_BITS] * BLOCK)
_IDCT_ROWS = _Pass(_islow_idct_1d, -1, [_CONST_BITS + _PASS1_BITS + 3] * BLOCK)
# jfdctint.c scales outputs 0 and 4 of its first pass up by 2^PASS1_BITS
# where it descales the others, and descales them by PASS1_BITS only in its
# second pass.
_FDCT_ROWS = _Pass(_islow_fdct_1d, -1, np.where(_EVEN, 0, _CONST_BITS - _PASS1_BITS),
                   np.where(_EVEN, 1 << _PASS1_BITS, 1))
_FDCT_COLUMNS = _Pass(_islow_fdct_1d, -2,
                      np.where(_EVEN, _PASS1_BITS, _CONST_BITS + _PASS1_BITS))


def islow_idct(coefficients: tf.Tensor) -> tf.Tensor:
    """libjpeg's integer IDCT of dequantised coefficients `[..., 8, 8]`
    (float32 integers); returns the decoded samples before the +128 shift
    and the clip to 0..255, in float32. Its passes run in float64, which
    holds every intermediate exactly."""
    columns = _IDCT_COLUMNS(tf.cast(coefficients, tf.float64))
    return tf.cast(_IDCT_ROWS(columns), tf.float32)


def islow_fdct(samples: tf.Tensor) -> tf.Tensor:
    """libjpeg's integer forward DCT (jfdctint.c) of level-shifted samples
    `[..., 8, 8]` (float32 integers); returns coefficients scaled by 8, as
    libjpeg quantises them (by 8 x the table entry), in float32. The first
    pass runs in float32, exactly: its 8-bit inputs keep every partial sum
    below 2^23; the second, on 12-bit inputs, in float64."""
    rows = tf.cast(_FDCT_ROWS(samples), tf.float64)
    return tf.cast(_FDCT_COLUMNS(rows), tf.float32)

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


def _to_blocks(planes: tf.Tensor) -> tf.Tensor:
    """[b, h, w] -> [b, h/8, w/8, 8, 8] (h, w multiples of 8)."""
    b, h, w = tf.unstack(tf.shape(planes))
    x = tf.reshape(planes, [b, h // BLOCK, BLOCK, w // BLOCK, BLOCK])
    return tf.transpose(x, [0, 1, 3, 2, 4])


def _from_blocks(blocks: tf.Tensor) -> tf.Tensor:
    b, nh, nw = tf.unstack(tf.shape(blocks)[:3])
    x = tf.transpose(blocks, [0, 1, 3, 2, 4])
    return tf.reshape(x, [b, nh * BLOCK, nw * BLOCK])


def blockwise_dct(planes: tf.Tensor) -> tf.Tensor:
    """[b, h, w] pixels -> [b, h/8, w/8, 8, 8] coefficients."""
    c = tf.constant(_C, planes.dtype)
    x = _to_blocks(planes)
    return tf.einsum("ki,bhwij,lj->bhwkl", c, x, c)


def blockwise_idct(coefficients: tf.Tensor) -> tf.Tensor:
    """Inverse of `blockwise_dct`."""
    c = tf.constant(_C, coefficients.dtype)
    x = tf.einsum("ki,bhwkl,lj->bhwij", c, coefficients, c)
    return _from_blocks(x)

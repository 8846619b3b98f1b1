"""Resampling for the `high_res` scenario: bicubic down, Lanczos-3 up.

`tf.image.resize` with `antialias=True` or a Lanczos kernel lowers to the
`ScaleAndTranslate` op, which XLA cannot compile, so a training step that
called it could not run with `jit_compile=True` (TPUs require it). For an
integer factor both resamplers are fixed separable filters, so they are
written here as strided (down) and polyphase (up) 1-D convolutions, which
compile, differentiate, and accept images of any, even dynamic, size.

Conventions (shared by the baseline and the sandwich, which is what makes
the sandwich start exactly as its baseline):
- Pixel centres are aligned as `tf.image.resize` aligns them (half-pixel
  centres): output pixel `i` of a downsampling covers inputs
  `i*f .. i*f + f-1`.
- Samples outside the image are edge replicas of the border pixels.
- An image whose height or width is not a multiple of the factor is first
  extended to one by edge replication, so `downsample` returns
  `ceil(h/f) x ceil(w/f)`; `upsample` returns `f` times its input, and cuts
  back to `size` when given the original size.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

LANCZOS_LOBES = 3
# Keys' cubic with a = -0.5: what PIL, OpenCV and `tf.image.resize` call bicubic.
CUBIC_A = -0.5


def _dim(x: tf.Tensor, axis: int):
    """The static size of an axis where known (XLA wants it), else dynamic."""
    size = x.shape[axis]
    return size if size is not None else tf.shape(x)[axis]


def extend_edges(x: tf.Tensor, axis: int, before, after) -> tf.Tensor:
    """Extends `axis` by repeating its first/last sample.

    A gather with clipped indices rather than `tf.pad`, which has no
    edge-replication mode and whose SYMMETRIC mode fails when the padding
    exceeds the image (a 3-pixel image upsampled by a 7-tap filter).
    """
    n = _dim(x, axis)
    index = tf.clip_by_value(tf.range(-before, n + after), 0, n - 1)
    return tf.gather(x, index, axis=axis)


def pad_to_multiple(images: tf.Tensor, multiple: int) -> tf.Tensor:
    """Extends `[b, h, w, c]` at the bottom and right to multiples of `multiple`."""
    for axis in (1, 2):
        images = extend_edges(images, axis, 0, -_dim(images, axis) % multiple)
    return images


def _cubic(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    a = CUBIC_A
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _lanczos(t: np.ndarray) -> np.ndarray:
    return np.where(np.abs(t) < LANCZOS_LOBES, np.sinc(t) * np.sinc(t / LANCZOS_LOBES), 0.0)


def _check_factor(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"the resampling factor must be a positive integer, got {factor!r}")
    return int(factor)


def downsampling_taps(factor: int) -> tuple[np.ndarray, int]:
    """The antialiased bicubic filter for decimation by `factor`.

    Returns the normalised weights and the offset of the first tap from the
    first input pixel an output covers. Antialiasing stretches the cubic by
    the factor, so it spans 4*factor inputs.
    """
    centre = (factor - 1) / 2
    offsets = np.arange(int(np.floor(centre - 2 * factor)) + 1, int(np.ceil(centre + 2 * factor)))
    weights = _cubic((offsets - centre) / factor)
    return weights / weights.sum(), int(offsets[0])


def upsampling_taps(factor: int) -> np.ndarray:
    """The Lanczos-3 polyphase filter bank `[2*3 + 1, factor]` for interpolation.

    Output pixel `q*factor + p` sits at input coordinate `q + (p + 0.5)/factor
    - 0.5`; column `p` holds its weights for inputs `q-3 .. q+3`, normalised
    (as `tf.image.resize` normalises) so flat regions stay flat.
    """
    offsets = np.arange(-LANCZOS_LOBES, LANCZOS_LOBES + 1)[:, None]
    phases = (np.arange(factor) + 0.5) / factor - 0.5
    weights = _lanczos(offsets - phases[None, :])
    return weights / weights.sum(axis=0, keepdims=True)


def _to_planes(images: tf.Tensor) -> tf.Tensor:
    """[b, h, w, c] -> [b*c, h, w, 1]: one filter for every channel."""
    h, w = _dim(images, 1), _dim(images, 2)
    return tf.reshape(tf.transpose(images, [0, 3, 1, 2]), [-1, h, w, 1])


def _from_planes(planes: tf.Tensor, channels) -> tf.Tensor:
    h, w = _dim(planes, 1), _dim(planes, 2)
    return tf.transpose(tf.reshape(planes, [-1, channels, h, w]), [0, 2, 3, 1])


def _kernel(taps: np.ndarray, axis: int) -> tf.Tensor:
    """1-D taps `[n, out]` as a conv2d kernel running along `axis` (1 or 2)."""
    shape = [taps.shape[0], 1] if axis == 1 else [1, taps.shape[0]]
    return tf.constant(taps.reshape(shape + [1, -1]), tf.float32)


def _decimate(planes: tf.Tensor, axis: int, factor: int) -> tf.Tensor:
    weights, first = downsampling_taps(factor)
    # Output i reads inputs i*factor + first ...; the last one reads past the end.
    planes = extend_edges(planes, axis, -first, len(weights) + first - factor)
    strides = [1, factor, 1, 1] if axis == 1 else [1, 1, factor, 1]
    return tf.nn.conv2d(planes, _kernel(weights[:, None], axis), strides, "VALID")


def _interpolate(planes: tf.Tensor, axis: int, factor: int) -> tf.Tensor:
    planes = extend_edges(planes, axis, LANCZOS_LOBES, LANCZOS_LOBES)
    phases = tf.nn.conv2d(planes, _kernel(upsampling_taps(factor), axis), 1, "VALID")
    n, h, w = tf.shape(phases)[0], _dim(phases, 1), _dim(phases, 2)
    if axis == 1:
        # Interleave the phases below each row: [n, h, w, f] -> [n, h*f, w].
        phases = tf.transpose(phases, [0, 1, 3, 2])
        return tf.reshape(phases, [n, h * factor, w, 1])
    return tf.reshape(phases, [n, h, w * factor, 1])


def downsample(images: tf.Tensor, factor: int) -> tf.Tensor:
    """Antialiased bicubic downsampling of float `[b, h, w, c]` by an integer factor.

    Returns `[b, ceil(h/factor), ceil(w/factor), c]` (see the module
    docstring for the edges).
    """
    factor = _check_factor(factor)
    images = tf.convert_to_tensor(images, tf.float32)
    if factor == 1:
        return images
    planes = _to_planes(pad_to_multiple(images, factor))
    for axis in (1, 2):
        planes = _decimate(planes, axis, factor)
    return _from_planes(planes, _dim(images, 3))


def upsample(images: tf.Tensor, factor: int, size=None) -> tf.Tensor:
    """Lanczos-3 upsampling of float `[b, h, w, c]` by an integer factor.

    Returns `[b, h*factor, w*factor, c]`, or the top-left `size = (height,
    width)` of it, which undoes the padding of `downsample` on an image of
    that size.
    """
    factor = _check_factor(factor)
    images = tf.convert_to_tensor(images, tf.float32)
    if factor > 1:
        planes = _to_planes(images)
        for axis in (1, 2):
            planes = _interpolate(planes, axis, factor)
        images = _from_planes(planes, _dim(images, 3))
    if size is not None:
        images = images[:, :size[0], :size[1]]
    return images

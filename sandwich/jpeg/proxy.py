"""The differentiable JPEG proxy.

Its decoded pixels are libjpeg-turbo's, bit for bit (tested on held-out
photographs in every mode and at every step): it computes what the encoder
and the decoder compute, in their own integer arithmetic, namely the
fixed-point colour conversion, the biased 2x2 chroma downsampling, the
"islow" integer forward and inverse DCTs, the quantiser's rounding, the
"fancy" chroma upsampling and the edge replication of partial blocks. Every
step still has a gradient: each integer result is passed straight through
(`ste.straight_through`: the integer forward, the gradient of the exact
linear operation it approximates backward), so the pre-processor and the
quantisation tables learn through it. Every op is XLA-compatible and shapes stay static, so a
training step that calls it compiles with `jit_compile=True` (TPUs require
it). The integer paths run in float32 where every intermediate of libjpeg's
32-bit arithmetic stays below 2^24, and in float64, which holds them all
exactly, where it does not. On a CPU without XLA each op costs about as
much to dispatch as to run, so the proxy is written in few, large ops:
matmuls for the DCTs and the colour conversion, one batch of blocks for
every plane, no slices, splits or broadcasts over whole images that a
matmul or a reshape can replace.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from sandwich.jpeg import checks, color, tables
from sandwich.jpeg.dct import (BLOCK, blockwise_dct, blockwise_idct, from_blocks, islow_fdct,
                               islow_idct, to_blocks)
from sandwich.jpeg.ste import straight_through


def ste_round(x: tf.Tensor) -> tf.Tensor:
    """Rounds half up forward (as libjpeg descales pixels), identity backward.

    The straight-through estimator: the forward pass is the integer a codec
    would produce, the gradient passes as if the rounding were not there.
    """
    return straight_through(x, tf.floor(x + 0.5))


@tf.custom_gradient
def clip_levels(x: tf.Tensor):
    """`tf.clip_by_value(x, 0, 255)` with the same gradient (passed where
    0 <= x <= 255, zero outside), taken as one comparison and one product
    instead of the stock gradient's two comparisons and four selects over
    the whole image."""
    clipped = tf.clip_by_value(x, 0.0, 255.0)
    return clipped, lambda dy: dy * tf.cast(tf.equal(clipped, x), dy.dtype)


# Relu6Grad passes a gradient where its feature is strictly between 0 and 6:
# whole numbers from 0 to 255, and no others, map there as (x + 1/2) * 6/256
# (exactly: a sum with 1/2 and a product with 3/128).
_LEVELS_TO_RELU6 = 6.0 / 256.0


@tf.custom_gradient
def clip_integer_levels(x: tf.Tensor):
    """`clip_levels` of whole numbers `x`, its gradient taken by one fused
    op (`Relu6Grad`) instead of a comparison, a cast and a product, which
    took 3x as long as the op on the decoded images."""
    clipped = tf.clip_by_value(x, 0.0, 255.0)
    return clipped, lambda dy: tf.raw_ops.Relu6Grad(
        gradients=dy, features=(x + 0.5) * _LEVELS_TO_RELU6)


def pad_partial_blocks(images: tf.Tensor, rows: int, columns: int | None = None) -> tf.Tensor:
    """Pads `[b, h, w, ...]` on the bottom/right by repeating the last
    row/column, to multiples of `rows` and `columns` (default: `rows`).

    libjpeg extends partial blocks by replicating the edge sample, so the
    proxy does the same; the padding is cut away after decoding.
    """
    h, w = images.shape[1], images.shape[2]
    ph, pw = -h % rows, -w % (columns or rows)
    if ph:
        images = tf.concat([images, tf.repeat(images[:, -1:], ph, axis=1)], axis=1)
    if pw:
        images = tf.concat([images, tf.repeat(images[:, :, -1:], pw, axis=2)], axis=2)
    return images


def _crop(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """`images[:, :height, :width]`, without an op (nor a gradient op) where
    it would cut nothing."""
    if images.shape[1] == height and images.shape[2] == width:
        return images
    return images[:, :height, :width]


def code_planes(components: list, qtables: tf.Tensor):
    """JPEG-codes components `[b, h_i, w_i, c_i]`, each plane of the i-th
    with the i-th quantisation table of `qtables` `[n, 64]` (natural order).

    The blocks of every plane are coded as one batch, each with its own
    table: a few large ops instead of a chain per component.

    Returns the decoded components (rounded and clipped to 0..255, as the
    decoder outputs them) and the quantisation indices `[b, c_i * blocks_i,
    64]` of each, planes one after the other, for the rate model.
    """
    padded = [pad_partial_blocks(c, BLOCK) for c in components]
    blocks = [to_blocks(c) for c in padded]
    counts = [x.shape[1] for x in blocks]
    slot = np.repeat(np.arange(len(counts)), counts)
    table = tf.reshape(tf.gather(qtables, slot), [-1, BLOCK, BLOCK])
    blocks = tf.concat(blocks, axis=1) - 128.0
    # Ops between tensors of one shape run several times faster than
    # broadcasting ones: give the table the blocks' shape once.
    table = tf.broadcast_to(table, tf.shape(blocks))
    # The encoder's own integer DCT and rounding forward (libjpeg divides its
    # DCT, scaled by 8, by 8 x the entry, rounding half away from zero); the
    # exact transform's gradient.
    linear = blockwise_dct(blocks) / table
    # The scaled coefficients are integers below 2^15 and the divisors below
    # 2^11, so a float32 division rounds to the right side of every integer
    # and the quotient's floor is exact.
    scaled = islow_fdct(tf.stop_gradient(blocks))
    divisor = 8.0 * tf.stop_gradient(table)
    exact = tf.sign(scaled) * tf.floor((tf.abs(scaled) + divisor / 2.0) / divisor)
    indices = straight_through(linear, exact)
    # The decoder's own integer IDCT, forward; the exact transform's gradient.
    dequantised = indices * table
    exact = islow_idct(tf.stop_gradient(dequantised))
    decoded = straight_through(blockwise_idct(dequantised) + 128.0, exact + 128.0)
    decoded = tf.split(clip_integer_levels(decoded), counts, axis=1)
    decoded = [_crop(from_blocks(x, p.shape[1:]), c.shape[1], c.shape[2])
               for x, p, c in zip(decoded, padded, components)]
    indices = tf.split(tf.reshape(indices, [-1, sum(counts), BLOCK * BLOCK]), counts, axis=1)
    return decoded, indices


def _ste_floor(x: tf.Tensor, bias) -> tf.Tensor:
    """`floor(x + bias)` forward, `x` backward: libjpeg's integer filters
    (a sum, a rounding bias, a shift) with the gradient of their linear part,
    `x` being the filter's sum already divided by its power of two, which is
    exact."""
    return straight_through(x, tf.floor(x + bias))


def _downsample_2x2(planes: tf.Tensor) -> tf.Tensor:
    """libjpeg's h2v2 downsampling of full-resolution chroma [b, h, w, c].

    Each output sample is the sum of a 2x2 block plus a bias that alternates
    1, 2 along the row (so that rounding does not drift), divided by 4.
    libjpeg first widens the row by edge replication to the 16-pixel MCU
    (`jcsample.c`) and heightens it to an even count (`jcprepct.c`).
    """
    planes = pad_partial_blocks(planes, 2, 2 * BLOCK)
    means = tf.nn.avg_pool2d(planes, 2, 2, "VALID")
    columns = means.shape[2]
    bias = tf.constant([[(1.0 + (j % 2)) / 4.0] for j in range(columns)], means.dtype)
    # Columns past ceil(w/2) are coded too: they pad the chroma blocks with
    # downsampled replicas of the edge, as libjpeg's do.
    return _ste_floor(means, bias)


def _fancy_upsampling_kernel(channels: int) -> np.ndarray:
    """The 3x3 kernels `[3, 3, c, 4 c]` of the four output phases of
    libjpeg's fancy h2v2 upsampling of each of `channels` planes, in
    `depth_to_space` order (row phase, column phase, then channel)."""
    taps = np.array([[1.0, 3.0, 0.0], [0.0, 3.0, 1.0]])  # nearer sample 3, farther 1
    phases = np.stack([np.outer(taps[row], taps[column])
                       for row in range(2) for column in range(2)], axis=-1)
    kernel = np.einsum("xyp,ij->xyipj", phases, np.eye(channels))
    return kernel.reshape(3, 3, channels, 4 * channels).astype(np.float32)


# jdsample.c rounds even output columns with a bias of 8, odd ones with 7.
_FANCY_BIAS = np.array([8.0, 7.0, 8.0, 7.0], np.float32)


def _upsample_2x2(planes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """libjpeg-turbo's 'fancy' h2v2 upsampling (`jdsample.c`) of decoded
    chroma `[b, h', w', c]` (at least ceil(h/2) x ceil(w/2)) to `[b, h, w, c]`.

    A triangle filter: vertically 3/4 of the nearer row and 1/4 of the
    farther, horizontally the same on those column sums, rounded with a bias
    of 8 on even and 7 on odd output columns; edges repeat. The column sums
    are integers, so each output phase is one 3x3 filter of the
    edge-extended plane (integer weights over 16: exact in float32, the sums
    stay below 2^12) and one rounding: a convolution to the four phases,
    interleaved by `depth_to_space`.
    """
    channels = planes.shape[-1]
    planes = _crop(planes, -(-height // 2), -(-width // 2))
    # SYMMETRIC padding by one sample repeats the edge sample.
    padded = tf.pad(planes, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    sums = tf.nn.conv2d(padded, _fancy_upsampling_kernel(channels) / 16.0, strides=1,
                        padding="VALID")
    phases = _ste_floor(sums, np.repeat(_FANCY_BIAS, channels) / 16.0)
    return _crop(tf.nn.depth_to_space(phases, 2), height, width)


def _tables(qstep) -> tf.Tensor:
    """A step, a `[64]` table or `[2, 64]` tables -> float32 `[2, 64]`, the
    integers in 1..255 that the encoder writes (straight-through, so a
    trainable step still learns)."""
    q = tf.cast(qstep, tf.float32)
    if q.shape.rank == 3:
        q = tf.reshape(q, [-1, BLOCK * BLOCK])
    q = tf.broadcast_to(q, [tables.TABLE_SLOTS, BLOCK * BLOCK])
    integers = tf.clip_by_value(tf.floor(q + 0.5), float(tables.BASELINE_MIN_STEP),
                                float(tables.BASELINE_MAX_STEP))
    return straight_through(q, integers)


def proxy_code(images: tf.Tensor, qstep, *, color_mode: str = "ycbcr",
               subsampling: str = "420"):
    """Runs the proxy codec; returns (decoded [b,h,w,c] float, [indices per table]).

    `qstep` is a flat step or quantisation tables (`sandwich.jpeg.tables`):
    slot 0 codes the first component (luma, or R in 'planes'), slot 1 the
    other two. `indices` is a list of `[b, blocks, 64]` tensors, one per
    table slot in use (one for a grayscale image).
    """
    mode = tables.JpegMode(color_mode, subsampling)
    images = tf.convert_to_tensor(images)
    checks.check_images(images)
    checks.check_qstep(qstep)
    if images.shape[1] is None or images.shape[2] is None:
        raise ValueError("the proxy needs static height and width; give the "
                         "tf.function an input_signature with known sizes")
    qtables = _tables(qstep)
    # The encoder takes integers: round the input the same straight-through way.
    x = ste_round(clip_levels(tf.cast(images, tf.float32)))
    channels = x.shape[-1]
    if channels == 1:
        (decoded,), indices = code_planes([x], qtables)
        return decoded, indices
    if channels != 3 or mode.channels != 3:
        raise ValueError(f"the proxy codes 1 channel, or 3 in JPEG mode ycbcr-* or planes; got "
                         f"{channels} in {mode.name}")
    h, w = x.shape[1], x.shape[2]
    if mode.color_mode == "ycbcr":
        first, others = color.rgb_to_ycbcr(x)
    else:
        first, others = tf.split(x, [1, 2], axis=-1)
    if mode.subsampling == "420":
        others = _downsample_2x2(others)
    (first, others), indices = code_planes([first, others], qtables)
    if mode.subsampling == "420":
        others = _upsample_2x2(others, h, w)
    if mode.color_mode == "ycbcr":
        return clip_integer_levels(color.ycbcr_to_rgb(first, others)), indices
    return tf.concat([first, others], axis=-1), indices

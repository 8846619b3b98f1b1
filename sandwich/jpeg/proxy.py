"""The differentiable JPEG proxy.

Mirrors what libjpeg(-turbo) does to a flat-table JPEG closely enough that
its decoded pixels agree with the real decoder's to well above 45 dB, while
every step has a gradient: rounding uses the straight-through estimator, so
the pre-processor and the quantisation step both learn through it. Every op
is XLA-compatible and shapes stay static, so a training step that calls it
compiles with `jit_compile=True` (TPUs require it).
"""
from __future__ import annotations

import tensorflow as tf

from sandwich import checks
from sandwich.jpeg import color
from sandwich.jpeg.dct import BLOCK, blockwise_dct, blockwise_idct

COLOR_MODES = ("planes", "ycbcr")
SUBSAMPLING_MODES = ("444", "420")


# Float DCTs land a hair off the exact ties that libjpeg's integer arithmetic
# hits in flat regions (a DC of exactly k + 1/2 steps, a pixel of exactly
# n + 1/2); nudging by this much resolves those ties the way libjpeg does.
_TIE_EPSILON = 1e-3


def ste_round(x: tf.Tensor) -> tf.Tensor:
    """Rounds half up forward (as libjpeg descales pixels), identity backward.

    The straight-through estimator: the forward pass is the integer a codec
    would produce, the gradient passes as if the rounding were not there.
    """
    return x + tf.stop_gradient(tf.floor(x + (0.5 + _TIE_EPSILON)) - x)


def ste_quantize(x: tf.Tensor) -> tf.Tensor:
    """Rounds half away from zero (libjpeg's quantiser), identity backward."""
    rounded = tf.sign(x) * tf.floor(tf.abs(x) + (0.5 + _TIE_EPSILON))
    return x + tf.stop_gradient(rounded - x)


def pad_to_multiple(planes: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pads [b, h, w] on the bottom/right by repeating the last row/column.

    libjpeg extends partial blocks by replicating the edge sample, so the
    proxy does the same; the padding is cut away after decoding.
    """
    h, w = planes.shape[1], planes.shape[2]
    ph, pw = -h % multiple, -w % multiple
    if ph:
        planes = tf.concat([planes, tf.repeat(planes[:, -1:, :], ph, axis=1)], axis=1)
    if pw:
        planes = tf.concat([planes, tf.repeat(planes[:, :, -1:], pw, axis=2)], axis=2)
    return planes


def code_planes(planes: tf.Tensor, qstep: tf.Tensor):
    """JPEG-codes a batch of grayscale planes [n, h, w] with a flat table.

    Returns the decoded planes (rounded and clipped to 0..255, as the decoder
    outputs them) and the quantisation indices [n, blocks, 64] for the rate
    model.
    """
    h, w = planes.shape[1], planes.shape[2]
    x = pad_to_multiple(planes, BLOCK) - 128.0
    coefficients = blockwise_dct(x)
    indices = ste_quantize(coefficients / qstep)
    decoded = blockwise_idct(indices * qstep)[:, :h, :w] + 128.0
    decoded = ste_round(tf.clip_by_value(decoded, 0.0, 255.0))
    n = tf.shape(indices)[0]
    return decoded, tf.reshape(indices, [n, -1, BLOCK * BLOCK])


def _downsample_2x2(planes: tf.Tensor) -> tf.Tensor:
    """libjpeg's h2v2 downsampling: the mean of each 2x2 block."""
    x = pad_to_multiple(planes, 2)[..., None]
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")[..., 0]


def _upsample_2x2(planes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """libjpeg-turbo's 'fancy' h2v2 upsampling: a triangle (3/4, 1/4) filter,
    which is bilinear interpolation at half-pixel centres."""
    h, w = planes.shape[1], planes.shape[2]
    up = tf.image.resize(planes[..., None], [2 * h, 2 * w], method="bilinear")[..., 0]
    return up[:, :height, :width]


def _split_channels(images: tf.Tensor) -> tf.Tensor:
    """[b, h, w, c] -> [b * c, h, w], channel-major within each image."""
    b, h, w, c = images.shape
    return tf.reshape(tf.transpose(images, [0, 3, 1, 2]), [-1, h, w])


def _merge_channels(planes: tf.Tensor, channels: int) -> tf.Tensor:
    h, w = planes.shape[1], planes.shape[2]
    return tf.transpose(tf.reshape(planes, [-1, channels, h, w]), [0, 2, 3, 1])


def _per_image(indices: tf.Tensor, channels: int) -> tf.Tensor:
    """[b * c, blocks, 64] -> [b, c * blocks, 64]."""
    return tf.reshape(indices, [-1, channels * indices.shape[1], BLOCK * BLOCK])


def proxy_code(images: tf.Tensor, qstep, *, color_mode: str = "planes",
               subsampling: str = "444"):
    """Runs the proxy codec; returns (decoded [b,h,w,c] float, [indices per plane group]).

    `indices` is a list of `[b, blocks, 64]` tensors, one per group of planes
    that share a sampling grid (one for `planes`, luma and chroma for `ycbcr`).
    """
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    if subsampling not in SUBSAMPLING_MODES:
        raise ValueError(f"subsampling must be one of {SUBSAMPLING_MODES}, got {subsampling!r}")
    images = tf.convert_to_tensor(images)
    checks.check_images(images)
    checks.check_qstep(qstep)
    if images.shape[1] is None or images.shape[2] is None:
        raise ValueError("the proxy needs static height and width; give the "
                         "tf.function an input_signature with known sizes")
    qstep = tf.cast(qstep, tf.float32)
    # The encoder takes integers: round the input the same straight-through way.
    x = ste_round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0))
    channels = x.shape[-1]
    if color_mode == "planes" or channels == 1:
        if subsampling != "444":
            raise ValueError("4:2:0 subsampling needs color_mode='ycbcr' and 3 channels")
        decoded, indices = code_planes(_split_channels(x), qstep)
        return _merge_channels(decoded, channels), [_per_image(indices, channels)]
    if channels != 3:
        raise ValueError("color_mode='ycbcr' needs 3 channels")
    h, w = x.shape[1], x.shape[2]
    ycc = ste_round(color.rgb_to_ycbcr(x))
    luma, luma_idx = code_planes(ycc[..., 0], qstep)
    chroma = _split_channels(ycc[..., 1:])
    if subsampling == "420":
        chroma = ste_round(_downsample_2x2(chroma))
    chroma, chroma_idx = code_planes(chroma, qstep)
    if subsampling == "420":
        chroma = ste_round(_upsample_2x2(chroma, h, w))
    ycc = tf.concat([luma[..., None], _merge_channels(chroma, 2)], axis=-1)
    decoded = ste_round(tf.clip_by_value(color.ycbcr_to_rgb(ycc), 0.0, 255.0))
    return decoded, [luma_idx, _per_image(chroma_idx, 2)]


def proxy_roundtrip(images, qstep, *, color_mode: str = "planes", subsampling: str = "444",
                    rate_model=None):
    """Differentiable stand-in for `real_roundtrip`.

    Args:
      images: float32 `[b, h, w, c]` in 0..255 (c = 1 or 3); any h and w.
      qstep: the flat quantisation step, a positive scalar (may be a variable).
      color_mode: 'planes' codes each channel as its own grayscale plane (what
        the sandwich uses, and what `real_roundtrip` does by default);
        'ycbcr' applies JFIF colour conversion first.
      subsampling: '444' or '420' (chroma planes halved, 'ycbcr' only).
      rate_model: maps the quantisation indices to bits; defaults to
        `sandwich.rate.LogRateModel.default()`, calibrated on the real encoder.

    Returns:
      `(decoded, bits)`: decoded float32 images like `images`, rounded and
      clipped as a decoder outputs them; bits, a float32 `[b]` estimate of each
      image's JPEG file size in bits.
    """
    from sandwich import rate  # Local: rate calibrates itself with this module.

    decoded, indices = proxy_code(images, qstep, color_mode=color_mode, subsampling=subsampling)
    rate_model = rate_model or rate.LogRateModel.default()
    return decoded, rate_model.bits(indices, tf.cast(qstep, tf.float32))

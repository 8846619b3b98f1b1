"""Colour carried by a grayscale codec: chroma hidden in the luma as texture.

The gray scenario's JPEG keeps one channel. A sandwich can still send colour
through it the way colour-embedding schemes for gray prints do (de Queiroz
and Braun, "Color to gray and back", IEEE TIP 2006): the source's chroma,
which is smooth, modulates two carriers at the highest frequencies a JPEG
block holds, (-1)^(x+y) for Cb and (-1)^x for Cr, added to the luma; the
decoder multiplies the decoded luma by each carrier again and blurs, which
brings the chroma back to low frequencies and sends the luma's own content
up to where the blur removes it.

`ColourCarrier` is that scheme as a layer of the sandwich, with what the
networks cannot easily find on their own: a carrier's sign must be known at
every pixel (a convolution is the same everywhere), and while the
pre-processor adds no texture the post-processor has nothing to learn to
read, and while it reads none the texture only costs: a saddle that the
plain networks left only slowly (+0.9 dB over the luma-only baseline after
4,500 steps, measured on held-back strips). Here the pre-processor's chroma
is modulated with a learned gain per carrier, and the post-processor gets
the two demodulated planes as inputs beside the image; its residual learns
what to make of them. With a gain of 0 (`Sandwich`'s default) the model is
its baseline bit for bit; the trainer starts the gains at
`DEFAULT_GAIN`, and both learn from there.

The carrier's phase is counted from each tile's corner, so tiles must start
on even bottleneck pixels (`codec.exported` checks a gray model's layout).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from sandwich import resample
from sandwich.jpeg.color import RGB_TO_YCBCR

# Side of the box blur that keeps chroma below the carriers' frequencies and
# that turns demodulated luma content into its local mean: one JPEG block.
BLUR = 8
# The gains a trainer starts from: a chroma excursion of 100 becomes a
# texture of +-30 levels, which a flat step up to about 64 still codes.
DEFAULT_GAIN = 0.3


def _carriers(like: tf.Tensor) -> tf.Tensor:
    """(-1)^(x+y) and (-1)^x over the grid of `like` `[b, h, w, c]`: `[1, h,
    w, 2]`, of static size where `like`'s is (the proxy needs it)."""
    height, width = (like.shape[i] if like.shape[i] is not None else tf.shape(like)[i]
                     for i in (1, 2))
    rows = tf.range(height)[:, None]
    columns = tf.range(width)[None, :]
    diagonal = 1.0 - 2.0 * tf.cast((rows + columns) % 2, tf.float32)
    horizontal = 1.0 - 2.0 * tf.cast(tf.broadcast_to(columns, [height, width]) % 2, tf.float32)
    return tf.stack([diagonal, horizontal], axis=-1)[None]


def blur(planes: tf.Tensor) -> tf.Tensor:
    """The mean over a `BLUR` x `BLUR` box around each sample of `[b, h, w,
    c]`, edges mirrored (so a flat image stays flat at its borders)."""
    before, after = (BLUR - 1) // 2, BLUR // 2
    padded = tf.pad(planes, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(padded, BLUR, 1, "VALID")


class ColourCarrier(keras.layers.Layer):
    """The gray scenario's colour path (module docstring): `modulate` adds
    the carriers to the luma bottleneck, `demodulate` reads them back as
    two planes for the post-processor.

    Args:
      factor: the scenario's downsampling factor; the carriers live on the
        bottleneck's grid.
      gain: both carriers' initial gain (0: the model is its baseline).
    """

    def __init__(self, factor: int = 1, gain: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.gain = self.add_weight(shape=(2,), initializer=keras.initializers.Constant(gain),
                                    name="gain")
        self.built = True  # Its one weight does not depend on the input.

    def modulate(self, rgb: tf.Tensor) -> tf.Tensor:
        """The texture `[b, h', w', 1]` (0..255 units) to add to the luma
        bottleneck of the pre-processed `rgb` `[b, h, w, 3]`: each blurred
        chroma plane times its carrier and its gain, summed."""
        # JFIF's Cb and Cr without their +128: signed around grey.
        chroma = tf.tensordot(tf.cast(rgb, tf.float32),
                              tf.constant(RGB_TO_YCBCR[1:].T, tf.float32), 1)
        chroma = blur(resample.downsample(chroma, self.factor))
        carriers = _carriers(chroma)
        return tf.reduce_sum(chroma * carriers * self.gain, axis=-1, keepdims=True)

    def demodulate(self, decoded: tf.Tensor, size) -> tf.Tensor:
        """The decoded luma `[b, h', w', 1]` times each carrier, blurred:
        `[b, *size, 2]`, about gain x chroma where a texture was coded (the
        luma's own content at these frequencies is what remains), in units
        of half the peak, as the processors' inputs are."""
        decoded = tf.cast(decoded, tf.float32)
        carriers = _carriers(decoded)
        planes = blur(decoded * carriers) / 127.5
        return resample.upsample(planes, self.factor, size)

"""The pre- and post-processor networks of the sandwich (arXiv 2402.05887).

Each processor adds a residual to its input: a U-Net (spatial context at
several scales) and a per-pixel MLP (colour mixing, tone curves) run in
parallel on the image normalised around mid-grey, and their sum, scaled back
to pixel units, is added to the image. The last convolution of both branches
starts at zero, so an untrained processor is exactly the identity and the
sandwich starts as its baseline; training only has to find the gain.

Sizes are named presets (`sandwich.model_options`): `paper` (encoder
32-64-128-256, decoder 512-256-128-64-32) suits accelerators; `slim` (about
59k parameters per U-Net) is what a CPU can train within a useful budget.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from sandwich import resample
from sandwich.jpeg import checks
# Defined with the model's other options, free of TensorFlow; still named here.
from sandwich.model_options import PRESETS as PRESETS, NetworkSize, network_size


class ConvBlock(keras.Sequential):
    """Two 3x3 convolutions: one U-Net level's feature extraction."""

    def __init__(self, filters: int, **kwargs):
        super().__init__([
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        ], **kwargs)


class UNet(keras.layers.Layer):
    """The spatial residual branch: an encoder-decoder with skip connections.

    Works on any image size: the input is extended by edge replication to a
    multiple of 2^depth (each level halves it) and the output cut back.
    """

    def __init__(self, widths, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.depth = len(widths)
        # Tuples, not lists: Keras 3 tracks a list's layers for `weights` but
        # hides them from `tf.train.Checkpoint`, which would then save and
        # restore only the bottom and head of the U-Net.
        self.encoders = tuple(ConvBlock(w, name=f"encoder_{i}") for i, w in enumerate(widths))
        self.pool = keras.layers.MaxPooling2D(2)
        self.bottom = ConvBlock(2 * widths[-1], name="bottom")
        self.upsamplers = tuple(keras.layers.Conv2DTranspose(w, 2, strides=2, name=f"up_{i}")
                                for i, w in enumerate(reversed(widths)))
        self.decoders = tuple(ConvBlock(w, name=f"decoder_{i}")
                              for i, w in enumerate(reversed(widths)))
        self.head = keras.layers.Conv2D(channels, 1, kernel_initializer="zeros", name="head")

    def call(self, x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        x = resample.pad_to_multiple(x, 2 ** self.depth)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(tf.concat([upsample(x), skip], axis=-1))
        # Crop away the padding.
        return self.head(x)[:, :height, :width]


class PixelMLP(keras.Sequential):
    """The per-pixel residual branch: 1x1 convolutions with sine activations,
    which fit smooth per-pixel colour and tone maps with few parameters."""

    def __init__(self, widths, channels: int = 3, **kwargs):
        super().__init__(
            [keras.layers.Conv2D(w, 1, activation=tf.sin) for w in widths]
            + [keras.layers.Conv2D(channels, 1, kernel_initializer="zeros")], **kwargs)


class Processor(keras.layers.Layer):
    """`x + peak/2 * (unet(n) + mlp(n))` with `n = 2x/peak - 1` in [-1, 1].

    Both the pre- and the post-processor: `peak` is the pixel scale of the
    images it sees (the source's `2^d - 1`), so its branches work in the same
    normalised units whatever the bit depth. Starts as the identity.

    A `conditioned` processor also takes a `level` per image (about -1..1),
    fed to both branches as one more constant input plane: the
    post-processor of a rate-conditioned sandwich reads how coarsely the
    codec quantised, so one network restores every rate of its range
    instead of over-smoothing the finer ones.

    A processor with a `level_gain` takes a level too, but only to scale its
    residual, per channel, by `1 + a * level + b * level^2` (`a`, `b` learned,
    starting at 0): the branches see the image alone, so the residual is the
    same at every step and only its strength follows the step: the least
    a pre-processor needs to hold back at fine steps what helps at coarse
    ones. Measured, it lost 0.18 dB BD-PSNR against leaving the
    pre-processor step-independent (docs/ablation.md); exported,
    it is pre-processed once per probe, like the `conditioned` one.
    """

    def __init__(self, size: str | NetworkSize = "slim", *, peak: float = 255.0,
                 channels: int = 3, conditioned: bool = False, level_gain: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if conditioned and level_gain:
            raise ValueError("a processor reads the level as an input plane or as a gain, "
                             "not both")
        self.size = network_size(size)
        self.peak = float(peak)
        self.channels = channels
        self.conditioned = conditioned
        self.unet = UNet(self.size.unet_widths, channels, name="unet")
        self.mlp = PixelMLP(self.size.mlp_widths, channels, name="mlp")
        self.level_gain = (self.add_weight(shape=(2, channels), initializer="zeros",
                                           name="level_gain") if level_gain else None)

    @property
    def reads_level(self) -> bool:
        return self.conditioned or self.level_gain is not None

    def call(self, images, level=None, features=None):
        """`images` plus the learned residual; `features` (`[b, h, w, k]`,
        of the images' size, in units of half the peak) are more input
        planes that only the residual reads (the gray scenario's
        demodulated colour, `sandwich.colour_carrier`)."""
        checks.check_images(images, channels=(self.channels,))
        if self.reads_level == (level is None):
            raise ValueError("a processor that reads the level needs one, another takes none")
        images = tf.cast(images, tf.float32)
        half = self.peak / 2
        normalised = images / half - 1.0
        inputs = normalised
        if self.conditioned:
            level = tf.reshape(tf.cast(level, tf.float32), [-1, 1, 1, 1])
            plane = tf.zeros_like(normalised[..., :1]) + level
            inputs = tf.concat([normalised, plane], axis=-1)
        if features is not None:
            inputs = tf.concat([inputs, tf.cast(features, tf.float32)], axis=-1)
        residual = self.unet(inputs) + self.mlp(inputs)
        if self.level_gain is not None:
            level = tf.reshape(tf.cast(level, tf.float32), [-1, 1, 1, 1])
            residual *= 1.0 + level * self.level_gain[0] + tf.square(level) * self.level_gain[1]
        return images + half * residual

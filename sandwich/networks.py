"""The pre- and post-processor networks of the sandwich (arXiv 2402.05887).

Each processor adds a residual to its input: a U-Net (spatial context at
several scales) and a per-pixel MLP (colour mixing, tone curves) run in
parallel on the image normalised around mid-grey, and their sum, scaled back
to pixel units, is added to the image. The last convolution of both branches
starts at zero, so an untrained processor is exactly the identity and the
sandwich starts as its baseline; training only has to find the gain.

Sizes are named presets: `paper` (encoder 32-64-128-256, decoder
512-256-128-64-32) suits accelerators; `slim` (about 59k parameters per
U-Net) is what a CPU can train within a useful budget.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from sandwich import resample
from sandwich.jpeg import checks


@dataclasses.dataclass(frozen=True)
class NetworkSize:
    """Widths of one processor: the U-Net's encoder levels (the bottom level
    is twice the last, the decoder mirrors the encoder) and the MLP's hidden
    layers."""

    unet_widths: tuple[int, ...]
    mlp_widths: tuple[int, ...]

    def __post_init__(self):
        if not self.unet_widths or not self.mlp_widths:
            raise ValueError("a processor needs at least one U-Net level and one MLP layer")
        if any(not isinstance(w, int) or w < 1 for w in self.unet_widths + self.mlp_widths):
            raise ValueError(f"widths must be positive integers, got {self}")


    def macs_per_pixel(self, in_channels: int = 3, out_channels: int = 3) -> float:
        """Multiply-accumulates per pixel of one processor (U-Net plus MLP),
        the model-size measure of the paper's Table II: a level-l layer runs
        on 1/4^l of the pixels, a 2x2 stride-2 transposed convolution costs
        c_in * c_out per output pixel."""
        widths, total, channels = self.unet_widths, 0.0, in_channels
        for level, width in enumerate(widths):  # encoder
            total += 9 * (channels * width + width * width) / 4 ** level
            channels = width
        bottom = 2 * widths[-1]
        total += 9 * (channels * bottom + bottom * bottom) / 4 ** len(widths)
        channels = bottom
        for level in reversed(range(len(widths))):  # decoder
            width = widths[level]
            total += (channels * width + 9 * (2 * width * width + width * width)) / 4 ** level
            channels = width
        total += channels * out_channels  # head
        channels = in_channels
        for width in self.mlp_widths + (out_channels,):
            total += channels * width
            channels = width
        return total


PRESETS = {
    "slim": NetworkSize(unet_widths=(5, 10, 15, 20), mlp_widths=(16, 16)),
    # For full-resolution scenarios on CPUs: at x1, 20 minutes on 264 photos,
    # held out, it beat slim by +0.13 dB over plain JPEG (+1.83 against
    # +1.70) at 97% of its steps per second: the codec proxy, not the
    # networks, sets the pace there. On twelve photos the two were within noise;
    # wide, in the same 20 minutes, ran 68% of its steps and ended 0.03 dB
    # below it (docs/ablation.md, "Network size": `python benchmarks/quality.py
    # --models high_res:1 'slim=high_res:1:--size slim' ...`).
    "medium": NetworkSize(unet_widths=(8, 16, 24, 32), mlp_widths=(16, 16)),
    # For upsampling scenarios on CPUs: at x2, 5,000 steps, held out, slim,
    # 8-16-24-32 and this measured +0.72, +0.89 and +1.04 dB over the baseline;
    # in 20 minutes on 264 photos, medium +0.91 and this +1.04 dB, though
    # medium ran 1.35x its steps (docs/ablation.md, "Network size": `python
    # benchmarks/ablation.py --factor 2 --arms slim wider reference`).
    "wide": NetworkSize(unet_widths=(16, 32, 48, 64), mlp_widths=(16, 16)),
    "paper": NetworkSize(unet_widths=(32, 64, 128, 256), mlp_widths=(64, 64)),
}


def network_size(size: str | NetworkSize) -> NetworkSize:
    """A preset by name, or a `NetworkSize` as given."""
    if isinstance(size, NetworkSize):
        return size
    if size not in PRESETS:
        raise ValueError(f"unknown network size {size!r}; presets are {sorted(PRESETS)}")
    return PRESETS[size]


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

    def call(self, images, level=None):
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
        residual = self.unet(inputs) + self.mlp(inputs)
        if self.level_gain is not None:
            level = tf.reshape(tf.cast(level, tf.float32), [-1, 1, 1, 1])
            residual *= 1.0 + level * self.level_gain[0] + tf.square(level) * self.level_gain[1]
        return images + half * residual

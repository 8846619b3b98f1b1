"""What a `sandwich.model.Sandwich` is built with, as plain data: the
processors' sizes (`NetworkSize`, the named `PRESETS`), what of its
quantisation learns (`QUANTIZATIONS`) and how its pre-processor reads the
step (`PREPROCESSOR_CONDITIONING`).

Kept apart from the networks and the model, and free of TensorFlow, so that a
command offers them as `choices` and checks its flags (`sandwich-train
--help`, a mistyped flag) without loading TensorFlow, which costs seconds
and hundreds of megabytes before it answers.
"""
from __future__ import annotations

import dataclasses

from sandwich.jpeg import tables

# How a rate-conditioned sandwich's pre-processor reads the step: not at all
# (a rate search pre-processes once per image), as an input plane of both
# its branches, or as a learned per-channel gain on its residual.
PREPROCESSOR_CONDITIONING = ("off", "input", "gain")
# What of the quantisation tables learns: one step for all entries, one
# step per table slot (luma, chroma), or every entry of both 8x8 tables
# (written into the file's DQT, so any decoder still reads it).
QUANTIZATIONS = {"flat": [], "steps": [tables.TABLE_SLOTS, 1],
                 "tables": [tables.TABLE_SLOTS, 64]}


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

"""The trainer's check with the real codec, on eval patches: what the sandwich
gains over its baseline.

Training sees only the proxy and the rate model; what counts is the JPEG
file that is actually written. Two measures, both through the real encoder:

- at the sandwich's current qstep, the sandwich and the scenario's baseline
  at the same quantiser (`evaluate_patches`: directly comparable points);
- over the steps the sandwich serves, its BD-PSNR against the baseline's
  curve (`RateDistortionGain`): the gain at equal *rate*, the figure a user
  sees. The trainer keeps the weights where it was best (`--keep_best`):
  trained long, a sandwich learns to exploit what the rate model misprices
  (its fit error on the pre-processed patches grew from 5% to 11% over a
  20-minute run) and falls below its own earlier, better self.

What their `*_bpp` count: the bits of the plain JPEG file of each patch
(`real_roundtrip`'s file sizes: markers, tables and Huffman codes
included) per patch pixel. They leave out the bottleneck header
(`pipelines.bottleneck_format`'s comment segment) that a file of
`pipelines.compress` carries; `pipelines.evaluate` counts the whole file,
header included, per source image: the bpp of the deployed file.
"""
from __future__ import annotations

import numpy as np

from sandwich import metrics

BATCH = 16
# Steps of the sandwich's curve; the baseline's spans twice as many, half
# to twice as far, so that the two curves share their rates.
CURVE_POINTS = 5


def evaluate_patches(model, patches: np.ndarray) -> dict[str, float]:
    """Mean bpp and PSNR (dB) of the sandwich and the baseline on `patches`.

    Bits per pixel are JPEG file bits (no bottleneck header) per source
    pixel of the patch; PSNR at the source's peak, of the squared error
    pooled over the patches (`_point`).
    """
    qstep = float(model.qstep)
    sandwich = _point(lambda batch: _sandwich(model, batch, qstep), patches)
    baseline = _point(lambda batch: _baseline(model.scenario, batch, qstep), patches)
    result = {"sandwich_bpp": sandwich[0], "sandwich_psnr": sandwich[1],
              "baseline_bpp": baseline[0], "baseline_psnr": baseline[1]}
    result["psnr_gain"] = result["sandwich_psnr"] - result["baseline_psnr"]
    result["qstep"] = qstep
    return result


def _sandwich(model, batch, qstep):
    forward = model.real_forward(batch, qstep)
    return forward["bpp"], forward["psnr"]


def _baseline(scenario, batch, qstep):
    reconstruction, bits = scenario.baseline(batch, qstep)
    return (metrics.bits_per_pixel(bits, *batch.shape[1:3]),
            metrics.psnr(reconstruction, batch, scenario.bit_depth))


def _point(code, patches: np.ndarray) -> tuple[float, float]:
    """(bpp, PSNR) over `patches` of `code(batch) -> (bpp[b], psnr[b])`: the
    mean bpp, and the PSNR of the mean squared error over all patches.

    Pooled, not the mean of the patches' PSNRs: a patch coded exactly (a
    flat one at a fine step) has an infinite PSNR of its own, which would
    make the mean infinite and the curve unusable.
    """
    bpp, psnr = zip(*(code(patches[i:i + BATCH]) for i in range(0, len(patches), BATCH)))
    relative_error = np.power(10.0, -np.concatenate(psnr) / 10.0)  # MSE / peak^2; 0 if exact
    return float(np.mean(np.concatenate(bpp))), float(-10.0 * np.log10(np.mean(relative_error)))


def curve_qsteps(model) -> list[float]:
    """The steps the sandwich is measured at: its range, or around its step."""
    low, high = model.qstep_range or (float(model.qstep) / 1.5, float(model.qstep) * 1.5)
    return [float(q) for q in np.geomspace(low, high, CURVE_POINTS)]


class RateDistortionGain:
    """BD-PSNR (dB) of a sandwich over its scenario's baseline on fixed
    patches, with the real codec, over the steps the sandwich serves.

    The baseline's curve is measured once (it never changes), over twice
    the points from half the lowest to twice the highest step.
    """

    def __init__(self, scenario, patches: np.ndarray, qsteps):
        self.patches = patches
        low, high = min(qsteps), max(qsteps)
        self.baseline = list(zip(*(
            _point(lambda batch: _baseline(scenario, batch, q), patches)  # noqa: B023
            for q in np.geomspace(low / 2, high * 2, 2 * CURVE_POINTS))))

    def __call__(self, model) -> float:
        """The BD-PSNR, or -inf where the curves share no rates (a trained
        step that ran more than twice past the baseline's span)."""
        bpp, psnr = zip(*(_point(lambda batch: _sandwich(model, batch, q), self.patches)  # noqa: B023
                          for q in curve_qsteps(model)))
        try:
            return metrics.bd_psnr(*self.baseline, bpp, psnr)
        except ValueError:
            return float("-inf")

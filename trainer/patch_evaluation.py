"""The trainer's check with the real codec, on eval patches: what the sandwich
gains over its baseline.

Training sees only the proxy and the rate model; what counts is the JPEG
file that is actually written. Two measures, both through the real encoder:

- at the sandwich's current qstep, the sandwich and the scenario's baseline
  at the same quantiser (`evaluate_patches`: directly comparable points),
  in PSNR, in MS-SSIM (with the training loss's scale rule for the patch
  size, `sandwich.model.ms_ssim_scales`) and, for the bottleneck file as a
  viewer shows it without the post-processor, in PSNR against the
  baseline's own bottleneck before coding (the loss's view term's
  reference, `Sandwich.view_reference`);
- over the steps the sandwich serves, its BD-PSNR against the baseline's
  curve (`RateDistortionGain`): the gain at equal *rate*, the figure a user
  sees. The trainer keeps the weights where it was best (`--keep_best`):
  trained long, a sandwich learns to exploit what the rate model misprices
  (its fit error on the pre-processed patches grew from 5% to 11% over a
  20-minute run) and falls below its own earlier, better self.

What their `*_bpp` count: the bits of the plain JPEG file of each patch
(`real_roundtrip`'s file sizes: markers, tables and Huffman codes
included) per patch pixel. They leave out the bottleneck header
(`codec.bottleneck_format`'s comment segment) that a file of
`pipelines.compress` carries; `pipelines.evaluate` counts the whole file,
header included, per source image: the bpp of the deployed file.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from sandwich import metrics, specs
from sandwich.model import ms_ssim

BATCH = 16
# Steps of the sandwich's curve; the baseline's spans twice as many, half
# to twice as far, so that the two curves share their rates.
CURVE_POINTS = 5


def evaluate_patches(model, patches: np.ndarray) -> dict[str, float]:
    """Mean bpp, PSNR (dB) and MS-SSIM of the sandwich and the baseline on
    `patches`, and the PSNR of their bottleneck files without the
    post-processor (`*_bottleneck_psnr`).

    Bits per pixel are JPEG file bits (no bottleneck header) per source
    pixel of the patch; PSNR at the source's peak (the bottleneck's at
    255), of the squared error pooled over the patches (`_point`);
    MS-SSIM is the mean of the patches'.
    """
    qstep = float(model.qstep)
    result = {}
    for name, code in (("sandwich", lambda batch: _sandwich(model, batch, qstep)),
                       ("baseline", lambda batch: _baseline(model.scenario, batch, qstep))):
        measured = _measure(code, model, patches)
        result.update({f"{name}_{key}": value for key, value in measured.items()})
    result["psnr_gain"] = result["sandwich_psnr"] - result["baseline_psnr"]
    result["ms_ssim_gain"] = result["sandwich_ms_ssim"] - result["baseline_ms_ssim"]
    result["qstep"] = qstep
    return result


def _measure(code, model, patches: np.ndarray) -> dict[str, float]:
    """`code(batch) -> (reconstruction, decoded bottleneck, bits)` over
    `patches`, measured."""
    bpp, errors, bottleneck_errors, similarity = [], [], [], []
    peak = model.scenario.peak
    for i in range(0, len(patches), BATCH):
        batch = patches[i:i + BATCH]
        reconstruction, decoded, bits = code(batch)
        bpp.append(metrics.bits_per_pixel(bits, *batch.shape[1:3]))
        errors.append(metrics.mse(reconstruction, batch) / peak ** 2)
        reference = model.view_reference(batch).numpy()
        bottleneck_errors.append(metrics.mse(decoded, reference) / 255.0 ** 2)
        similarity.append(ms_ssim(tf.constant(reconstruction, tf.float32),
                                  tf.constant(batch, tf.float32), peak).numpy())
    return {"bpp": float(np.mean(np.concatenate(bpp))), "psnr": _pooled_psnr(errors),
            "ms_ssim": float(np.mean(np.concatenate(similarity))),
            "bottleneck_psnr": _pooled_psnr(bottleneck_errors)}


def _pooled_psnr(relative_errors) -> float:
    """PSNR of the mean of squared errors relative to the peak's square."""
    return float(-10.0 * np.log10(np.mean(np.concatenate(relative_errors))))


def _sandwich(model, batch, qstep):
    forward = model.real_forward(batch, qstep)
    return forward["reconstruction"], forward["decoded"], forward["bits"]


def _baseline(scenario, batch, qstep):
    return scenario.baseline_coded(batch, qstep)


def _rate_distortion(scenario, batch, qstep):
    """(bpp [b], PSNR [b]) of the baseline, through `Scenario.baseline`."""
    reconstruction, bits = scenario.baseline(batch, qstep)
    return (metrics.bits_per_pixel(bits, *batch.shape[1:3]),
            metrics.psnr(reconstruction, batch, scenario.bit_depth))


def _sandwich_rate_distortion(model, batch, qstep):
    forward = model.real_forward(batch, qstep)
    return forward["bpp"], forward["psnr"]


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
    """The steps the sandwich is measured at: the steps it serves
    (`specs.qstep_bounds`: its range, or around its one step), as rate
    control and the evaluator use it."""
    return specs.qstep_sweep(float(model.qstep), model.qstep_range, CURVE_POINTS)


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
            _point(lambda batch: _rate_distortion(scenario, batch, q), patches)  # noqa: B023
            for q in np.geomspace(low / 2, high * 2, 2 * CURVE_POINTS))))

    def __call__(self, model) -> float:
        """The BD-PSNR, or -inf where the curves share no rates (a trained
        step that ran more than twice past the baseline's span)."""
        bpp, psnr = zip(*(_point(lambda batch: _sandwich_rate_distortion(model, batch, q),  # noqa: B023
                                 self.patches)
                          for q in curve_qsteps(model)))
        try:
            return metrics.bd_psnr(*self.baseline, bpp, psnr)
        except ValueError:
            return float("-inf")

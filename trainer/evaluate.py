"""Evaluation with the real codec: what the sandwich gains over its baseline.

Training sees only the proxy and the rate model; what counts is the JPEG
file that is actually written. Both the sandwich and the scenario's
baseline are run through the real encoder at the sandwich's current qstep,
so the two points are at the same quantiser and directly comparable.
"""
from __future__ import annotations

import numpy as np

from sandwich import metrics

BATCH = 16


def evaluate(model, patches: np.ndarray) -> dict[str, float]:
    """Mean bpp and PSNR (dB) of the sandwich and the baseline on `patches`.

    Bits per pixel are per source pixel; PSNR at the source's peak.
    """
    qstep = float(model.qstep)
    sums = dict.fromkeys(("sandwich_bpp", "sandwich_psnr", "baseline_bpp", "baseline_psnr"), 0.0)
    height, width = patches.shape[1:3]

    for start in range(0, len(patches), BATCH):
        batch = patches[start:start + BATCH]
        sandwich = model.real_forward(batch)
        reconstruction, bits = model.scenario.baseline(batch, qstep)
        sums["sandwich_bpp"] += float(np.sum(sandwich["bpp"]))
        sums["sandwich_psnr"] += float(np.sum(sandwich["psnr"]))
        sums["baseline_bpp"] += float(np.sum(metrics.bits_per_pixel(bits, height, width)))
        sums["baseline_psnr"] += float(np.sum(
            metrics.psnr(reconstruction, batch, model.scenario.bit_depth)))
    result = {name: total / len(patches) for name, total in sums.items()}
    result["psnr_gain"] = result["sandwich_psnr"] - result["baseline_psnr"]
    result["qstep"] = qstep
    return result

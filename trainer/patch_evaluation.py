"""The trainer's check with the real codec, on eval patches: what the sandwich
gains over its baseline.

Training sees only the proxy and the rate model; what counts is the JPEG
file that is actually written. Both the sandwich and the scenario's
baseline are run through the real encoder at the sandwich's current qstep,
so the two points are at the same quantiser and directly comparable.

What its `*_bpp` count: the bits of the plain JPEG file of each patch
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


def evaluate_patches(model, patches: np.ndarray) -> dict[str, float]:
    """Mean bpp and PSNR (dB) of the sandwich and the baseline on `patches`.

    Bits per pixel are JPEG file bits (no bottleneck header) per source
    pixel of the patch; PSNR at the source's peak.
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

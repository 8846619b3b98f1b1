"""Quality and rate metrics, in the units the literature reports.

PSNR is taken at the source's own peak (2^d - 1 for a d-bit source), bits
per pixel are counted at the *source* resolution (a half-resolution
bottleneck is not allowed to look cheap), and RD curves are compared with
Bjontegaard's metrics over the rate (BD-rate) or quality (BD-PSNR) range that
both curves cover.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def peak(bit_depth: int) -> float:
    return float(2 ** bit_depth - 1)


def mse(a, b) -> np.ndarray:
    """Mean squared error per image over `[b, h, w, c]` arrays."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.mean(np.square(diff), axis=tuple(range(1, diff.ndim)))


def psnr(a, b, bit_depth: int = 8) -> np.ndarray:
    """PSNR in dB per image at peak 2^bit_depth - 1; inf where identical."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak(bit_depth) ** 2 / mse(a, b))


def psnr_tf(a: tf.Tensor, b: tf.Tensor, bit_depth: int = 8) -> tf.Tensor:
    """`psnr` for float tensors inside a (compiled) step; `[b]` dB. The only
    TensorFlow here, imported here: the jobs' launchers and the real codec's
    users read metrics without it."""
    import tensorflow as tf

    error = tf.reduce_mean(tf.square(a - b), axis=[1, 2, 3])
    return 10.0 * tf.math.log(peak(bit_depth) ** 2 / tf.maximum(error, 1e-10)) / tf.math.log(10.0)


def bits_per_pixel(bits, height: int, width: int):
    """Bits per pixel of the source: file bits over source height x width."""
    return np.asarray(bits, np.float64) / float(height * width)


def pareto_front(bpp: Sequence[float], psnr_db: Sequence[float]):
    """The points no other point beats on both rate and quality, by rate.

    Used to turn RD points from several gammas and qsteps into one curve.
    """
    points = sorted(zip(map(float, bpp), map(float, psnr_db)), key=lambda p: (p[0], -p[1]))
    front = []
    for rate, quality in points:
        if not front or quality > front[-1][1]:
            front.append((rate, quality))
    return [p[0] for p in front], [p[1] for p in front]


def upper_envelope(curves):
    """The front of several models' curves (`(bpp, psnr)` pairs): the
    measured points that no other model's curve beats at their rate.

    Each model serves every step of its range, so between its points it
    reaches its curve (interpolated linearly in log rate, `psnr_at`), not
    only its points: a point below another model's curve is not on the
    front, though no other *point* beats it on both rate and quality (the
    Pareto front of the points alone would keep it). One curve is its own
    front.
    """
    fronts = [pareto_front(bpp, psnr) for bpp, psnr in curves]
    kept = [(rate, quality) for i, (bpp, psnr) in enumerate(fronts)
            for rate, quality in zip(bpp, psnr)
            if all(quality >= (psnr_at(*other, rate) or -np.inf)
                   for j, other in enumerate(fronts) if j != i)]
    return pareto_front([r for r, _ in kept], [q for _, q in kept])


def _integrate_fit(x, y, low, high):
    """Mean of a polynomial fit of y(x) over [low, high] (cubic when there
    are 4 or more points, as Bjontegaard's VCEG-M33 prescribes), fitted to
    the points that bear on the interval: those inside it, the nearest
    beyond each end, and more of the nearest until there are four. One
    cubic through every point of a long curve (a front of x1, x2 and x4
    models spans 0.03-2 bpp) bends inside a short interval: a front that is
    one model's curve over 0.25-1 bpp measured 2.4 points worse than that
    curve alone at equal Butteraugli."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    distance = np.maximum(low - x, 0.0) + np.maximum(x - high, 0.0)
    keep = set(np.flatnonzero(distance == 0.0))  # inside the interval
    for side in (x < low, x > high):  # the nearest point beyond each end
        if side.any():
            keep.add(int(np.flatnonzero(side)[np.argmin(distance[side])]))
    for i in np.argsort(distance, kind="stable"):
        if len(keep) >= 4:
            break
        keep.add(int(i))
    chosen = sorted(keep)
    degree = min(3, len(chosen) - 1)
    poly = np.polyint(np.polyfit(x[chosen], y[chosen], degree))
    return (np.polyval(poly, high) - np.polyval(poly, low)) / (high - low)


def _curve(bpp, psnr_db):
    bpp, psnr_db = np.asarray(bpp, np.float64), np.asarray(psnr_db, np.float64)
    if bpp.shape != psnr_db.shape or bpp.ndim != 1 or len(bpp) < 2:
        raise ValueError("an RD curve needs at least two (bpp, psnr) points of equal length")
    if np.any(bpp <= 0) or not np.all(np.isfinite(psnr_db)):
        raise ValueError("RD points need bpp > 0 and finite PSNR")
    return np.log10(bpp), psnr_db


def bd_rate(anchor_bpp, anchor_psnr, test_bpp, test_psnr, quality_range=None) -> float:
    """Average rate difference of `test` over `anchor` at equal PSNR (or any
    quality where higher is better), in %, over the qualities both curves
    reach (and `quality_range`, (low, high), if given).

    Negative is better: -20 means the test method needs 20% fewer bits.
    """
    log_a, psnr_a = _curve(anchor_bpp, anchor_psnr)
    log_t, psnr_t = _curve(test_bpp, test_psnr)
    low, high = max(psnr_a.min(), psnr_t.min()), min(psnr_a.max(), psnr_t.max())
    if quality_range is not None:
        low, high = max(low, quality_range[0]), min(high, quality_range[1])
    if high <= low:
        raise ValueError("the two RD curves share no PSNR range; BD-rate is undefined")
    diff = _integrate_fit(psnr_t, log_t, low, high) - _integrate_fit(psnr_a, log_a, low, high)
    return float((10.0 ** diff - 1.0) * 100.0)


def bd_psnr(anchor_bpp, anchor_psnr, test_bpp, test_psnr, rate_range=None) -> float:
    """Average PSNR difference of `test` over `anchor` at equal rate, in dB,
    over the rates both curves cover (and `rate_range`, (low, high) bpp, if given)."""
    log_a, psnr_a = _curve(anchor_bpp, anchor_psnr)
    log_t, psnr_t = _curve(test_bpp, test_psnr)
    low, high = max(log_a.min(), log_t.min()), min(log_a.max(), log_t.max())
    if rate_range is not None:
        low, high = max(low, np.log10(rate_range[0])), min(high, np.log10(rate_range[1]))
    if high <= low:
        raise ValueError("the two RD curves share no rate range; BD-PSNR is undefined")
    return float(_integrate_fit(log_t, psnr_t, low, high) - _integrate_fit(log_a, psnr_a, low, high))


def psnr_at(bpp: Sequence[float], psnr_db: Sequence[float], rate: float) -> float | None:
    """The PSNR of a curve's Pareto front at `rate` bpp, interpolated linearly
    in log rate; None outside the rates the curve covers."""
    front_bpp, front_psnr = pareto_front(bpp, psnr_db)
    if not front_bpp or not front_bpp[0] <= rate <= front_bpp[-1]:
        return None
    return float(np.interp(np.log10(rate), np.log10(front_bpp), front_psnr))

"""Metrics with known answers."""
import numpy as np
import pytest

from sandwich import metrics


def test_psnr_uses_the_source_peak():
    a = np.zeros((1, 4, 4, 3))
    b = np.ones((1, 4, 4, 3))
    assert metrics.psnr(a, b, 8)[0] == pytest.approx(20 * np.log10(255))
    assert metrics.psnr(a, b, 10)[0] == pytest.approx(20 * np.log10(1023))
    assert metrics.psnr(a, a)[0] == np.inf


def test_bpp_counts_source_pixels():
    assert metrics.bits_per_pixel(8000, 100, 40) == pytest.approx(2.0)


def test_bd_rate_of_a_curve_shifted_in_rate():
    """A test curve needing exactly 20% fewer bits at every PSNR: BD-rate -20%."""
    bpp = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    quality = 30 + 4 * np.log2(bpp)
    assert metrics.bd_rate(bpp, quality, 0.8 * bpp, quality) == pytest.approx(-20.0, abs=1e-6)
    assert metrics.bd_rate(0.8 * bpp, quality, bpp, quality) == pytest.approx(25.0, abs=1e-6)


def test_bd_rate_over_a_quality_range():
    """A test curve that saves bits only at low quality: over the lower
    qualities alone it saves more than over the whole range, and a range
    neither curve reaches is refused."""
    bpp = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    quality = 30 + 4 * np.log2(bpp)
    saving = np.interp(quality, [22, 38], [0.6, 1.0])  # 40% fewer bits at 22 dB, none at 38
    whole = metrics.bd_rate(bpp, quality, saving * bpp, quality)
    low = metrics.bd_rate(bpp, quality, saving * bpp, quality, quality_range=(22, 28))
    assert low < whole - 5 < 0
    with pytest.raises(ValueError, match="share no"):
        metrics.bd_rate(bpp, quality, saving * bpp, quality, quality_range=(50, 60))


def test_bd_psnr_over_a_rate_range():
    """A test curve whose gain falls linearly with log rate: over a range of
    rates, BD-PSNR is the gain at the range's middle (in log rate), not the
    whole curve's; the curves' own ends bound a wider range, and a range
    neither curve covers is refused."""
    bpp = np.array([0.125, 0.25, 0.5, 1.0, 2.0, 4.0])
    quality = 30 + 4 * np.log2(bpp)
    gain = 2.0 - 1.5 * np.log10(bpp)  # +3.35 dB at 0.125 bpp, +1.10 at 4

    def over(rate_range):
        return metrics.bd_psnr(bpp, quality, bpp, quality + gain, rate_range=rate_range)

    middle = np.mean(np.log10([0.25, 1.0]))
    assert over((0.25, 1.0)) == pytest.approx(2.0 - 1.5 * middle, abs=1e-9)
    assert over(None) == pytest.approx(2.0 - 1.5 * np.mean(np.log10([0.125, 4.0])), abs=1e-9)
    assert over((0.01, 100.0)) == pytest.approx(over(None), abs=1e-12)
    assert over((0.01, 0.5)) == pytest.approx(over((0.125, 0.5)), abs=1e-12)
    with pytest.raises(ValueError, match="share no"):
        over((8.0, 16.0))


def test_a_front_that_is_one_curve_over_the_range_measures_as_that_curve():
    """A front of a model's curve and far coarser points (another model's,
    where the first does not reach) is that curve over a range inside it:
    BD-rate and BD-PSNR over the range are the curve's own, though one
    cubic through every point of the front would bend inside the range.
    The points are the shipped set's held-out Butteraugli measurements."""
    member = np.array([[2.131, 0.923], [1.399, 1.255], [0.859, 1.755], [0.529, 2.434],
                       [0.327, 3.441]])
    coarser = np.array([[0.034, 15.907], [0.053, 11.685], [0.082, 8.804], [0.122, 6.724],
                        [0.169, 5.802], [0.278, 4.094]])
    anchor = np.array([[0.353, 3.583], [0.410, 3.166], [0.484, 2.797], [0.565, 2.520],
                       [0.711, 2.153], [0.787, 2.007], [0.884, 1.840], [1.027, 1.639],
                       [1.244, 1.407], [1.593, 1.158], [2.459, 0.826], [3.582, 0.616]])
    front = np.concatenate([coarser, member])

    def quality(points):  # Butteraugli as a quality: -10 log10, higher is better
        return -10 * np.log10(points[:, 1])

    span = (quality(anchor)[0], quality(anchor)[7])  # the anchor's 0.35-1.03 bpp
    alone = metrics.bd_rate(anchor[:, 0], quality(anchor), member[:, 0], quality(member),
                            quality_range=span)
    assert alone < -10
    assert metrics.bd_rate(anchor[:, 0], quality(anchor), front[:, 0], quality(front),
                           quality_range=span) == pytest.approx(alone, abs=0.3)
    gains = [metrics.bd_psnr(anchor[:, 0], quality(anchor), c[:, 0], quality(c),
                             rate_range=(0.35, 1.0)) for c in (member, front)]
    assert gains[1] == pytest.approx(gains[0], abs=0.02)


def test_bd_psnr_of_a_curve_shifted_in_quality():
    bpp = np.array([0.25, 0.5, 1.0, 2.0])
    quality = 30 + 4 * np.log2(bpp)
    assert metrics.bd_psnr(bpp, quality, bpp, quality + 1.5) == pytest.approx(1.5, abs=1e-9)
    # Shifting rate by a factor r is 4*log2(1/r) dB on this curve.
    assert metrics.bd_psnr(bpp, quality, bpp / 2, quality) == pytest.approx(4.0, abs=1e-9)


def test_bd_metrics_refuse_disjoint_curves():
    with pytest.raises(ValueError, match="share no"):
        metrics.bd_rate([1, 2], [30, 31], [1, 2], [40, 41])
    with pytest.raises(ValueError, match="at least two"):
        metrics.bd_psnr([1], [30], [1, 2], [30, 31])


def test_pareto_front_keeps_only_undominated_points():
    bpp = [1.0, 0.5, 2.0, 1.5, 0.5]
    psnr = [32.0, 30.0, 35.0, 31.0, 29.0]
    assert metrics.pareto_front(bpp, psnr) == ([0.5, 1.0, 2.0], [30.0, 32.0, 35.0])


def test_the_upper_envelope_drops_points_below_another_curve():
    """Two curves that cross near 1 bpp: the second's 0.5 bpp point beats
    none of the first's points on both rate and quality, yet lies below the
    first's curve there; the second alone reaches 4 bpp."""
    first = ([0.25, 0.4, 0.7, 1.0], [28.0, 30.5, 32.5, 33.0])
    second = ([0.5, 1.0, 2.0, 4.0], [30.8, 33.5, 36.0, 38.0])
    assert metrics.pareto_front(first[0] + second[0], first[1] + second[1])[0].count(0.5) == 1
    assert metrics.upper_envelope([first, second]) == (
        [0.25, 0.4, 0.7, 1.0, 2.0, 4.0], [28.0, 30.5, 32.5, 33.5, 36.0, 38.0])
    assert metrics.upper_envelope([first]) == first

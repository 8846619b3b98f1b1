"""The scenarios' fixed steps and their baselines through the real codec."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sandwich import metrics, resample, samples, scenarios, specs
from sandwich.jpeg import real_roundtrip, tables
from tests import photos


@pytest.fixture(scope="module")
def crops():
    """Held-out 8-bit crops, of a size that is no multiple of 2 or 8."""
    return photos.held_out_crops(74, per_photo=1, seed=5)[:, :, :66][:4]


def test_high_res_baseline_is_bicubic_jpeg_lanczos(crops):
    scenario = scenarios.make("high_res")
    reconstruction, bits = scenario.baseline(crops, 8.0)
    assert reconstruction.shape == crops.shape and reconstruction.dtype == np.uint8
    bottleneck = scenarios.codec_input(resample.downsample(crops.astype(np.float32), 2)).numpy()
    assert bottleneck.shape == (4, 37, 33, 3)
    decoded, expected_bits = real_roundtrip(bottleneck, 8.0)
    np.testing.assert_array_equal(bits, expected_bits)
    upsampled = resample.upsample(decoded.astype(np.float32), 2, crops.shape[1:3])
    np.testing.assert_array_equal(reconstruction, np.clip(np.floor(upsampled + 0.5), 0, 255))
    assert np.all(metrics.psnr(reconstruction, crops) > 20.0)


def test_gray_baseline_is_the_luma_through_a_one_component_jpeg(crops):
    """Luma by BT.601's weights, rounded, coded by Pillow as a grayscale
    JPEG with a flat table, decoded and repeated in R, G and B."""
    scenario = scenarios.make("gray")
    assert scenario.jpeg_mode.name == "gray" and scenario.channels == 1
    reconstruction, decoded, bits = scenario.baseline_coded(crops, 12.0)
    bottleneck = scenarios.codec_input(scenario.to_bottleneck(tf.cast(crops, tf.float32))).numpy()
    luma = np.floor(crops.astype(np.float64) @ [0.299, 0.587, 0.114] + 0.5)
    # Float32 sums may round a half the other way.
    assert np.abs(bottleneck[..., 0] - luma).max() <= 1
    assert np.mean(bottleneck[..., 0] == luma) > 0.999
    for image, got, coded, size in zip(bottleneck, reconstruction, decoded, bits):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0], "L").save(buffer, "JPEG", qtables=[[12] * 64],
                                                 optimize=True)
        assert size == 8 * len(buffer.getvalue())
        with Image.open(buffer) as file:
            assert file.mode == "L"
            expected = np.asarray(file)
        np.testing.assert_array_equal(coded[..., 0], expected)
        np.testing.assert_array_equal(got, np.repeat(expected[..., None], 3, axis=-1))


def test_high_bit_depth_bottleneck_drops_the_low_bits(crops):
    scenario = scenarios.make("high_bit_depth")
    source = samples.block_sum(crops, 2)
    bottleneck = scenario.to_bottleneck(tf.cast(source, tf.float32))
    np.testing.assert_array_equal(bottleneck, source // 4)
    # Without a codec the reconstruction is off by at most half a step.
    back = scenario.from_bottleneck(bottleneck, source.shape[1:3])
    assert np.max(np.abs(back - source)) <= 2.0


# How far the finest step's error may be from the sum of its two parts
# (measured: 0.16 dB in planes, 0.13 in ycbcr-444, 0.22 in ycbcr-420).
ADDITIVE_DB = 0.5


@pytest.mark.parametrize("jpeg_mode", tables.COLOR_MODE_NAMES)
def test_high_bit_depth_baseline_approaches_the_8_bit_bound(crops, jpeg_mode):
    """At the finest step the baseline loses what 8 bits cost and what
    JPEG's own rounding at step 1 costs an 8-bit image in this mode (step 1
    is not lossless; colour conversion rounds once more and 4:2:0 halves
    the chroma, so those modes fall further from the bound: measured 49-51
    and 34-50 dB against 58), and nothing else: its squared error is the
    sum of the two, within `ADDITIVE_DB`. It never beats the 8-bit bound;
    coarser steps cost quality and save bits."""
    scenario = scenarios.make("high_bit_depth", bit_depth=10, jpeg_mode=jpeg_mode)
    source = samples.block_sum(crops, 2)
    eight_bits = np.floor(source / 4)
    bound = metrics.psnr(eight_bits * 4 + 2, source, 10)
    fine, fine_bits = scenario.baseline(source, 1.0)
    coarse, coarse_bits = scenario.baseline(source, 16.0)
    assert fine.dtype == np.uint16 and fine.shape == source.shape
    fine_psnr, coarse_psnr = metrics.psnr(fine, source, 10), metrics.psnr(coarse, source, 10)
    assert np.all(fine_psnr <= bound + 0.01)
    decoded, _ = real_roundtrip(eight_bits.astype(np.uint8), 1.0,
                                **tables.JpegMode.parse(jpeg_mode).kwargs())
    rounding_error = metrics.mse(eight_bits * 4 + 2, source)
    codec_error = 16 * metrics.mse(decoded, eight_bits)  # in 10-bit levels
    expected = 10 * np.log10(metrics.peak(10) ** 2 / (rounding_error + codec_error))
    np.testing.assert_allclose(fine_psnr, expected, atol=ADDITIVE_DB)
    assert np.all(coarse_psnr < fine_psnr) and np.all(coarse_bits < fine_bits)


def test_ste_floor_passes_gradients_straight_through():
    x = tf.constant([0.2, 1.7, 254.9])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = scenarios.ste_floor(x)
    np.testing.assert_array_equal(y, [0.0, 1.0, 254.0])
    np.testing.assert_array_equal(tape.gradient(y, x), [1.0, 1.0, 1.0])


def test_scenarios_come_from_specs():
    spec = specs.DatasetSpec(scenario="high_bit_depth", bit_depth=12, patch_size=64, factor=1,
                             splits={"train": 1})
    scenario = scenarios.from_spec(spec)
    assert (scenario.bit_depth, scenario.peak, scenario.dtype) == (12, 4095.0, tf.uint16)
    assert scenarios.make("high_res", factor=3).factor == 3


@pytest.mark.parametrize("name, kwargs, message", [
    ("grayscale", {}, "unknown scenario"),
    ("high_bit_depth", {"bit_depth": 8}, "bit depth above 8"),
    ("high_res", {"factor": 0}, "factor >= 1"),
    ("high_res", {"jpeg_mode": "ycbcr-422"}, "unknown JPEG mode"),
    ("gray", {"bit_depth": 10}, "8-bit colour"),
    ("gray", {"jpeg_mode": "ycbcr-420"}, "codes one channel"),
    ("high_res", {"jpeg_mode": "gray"}, "codes one channel"),
])
def test_bad_scenarios_are_refused(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenarios.make(name, **kwargs)


@pytest.mark.parametrize("source, message", [
    (np.zeros([8, 8, 3], np.uint16), "rank 4"),
    (np.zeros([1, 8, 8, 1], np.uint16), "3 channels"),
    (np.zeros([1, 8, 8, 3], np.uint8), "must be uint16"),
    (np.full([1, 8, 8, 3], 1024, np.uint16), "exceeds the 10-bit peak"),
])
def test_bad_sources_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        scenarios.make("high_bit_depth").baseline(source, 8.0)


def test_baseline_slope_is_the_codecs_price_of_a_bit(crops):
    """At full resolution a step's distortion-rate slope grows about as the
    step squared (uniform quantiser at high rate); it is what the next
    step's point costs, measured with the real codec."""
    scenario = scenarios.make("high_res", factor=1)
    fine, coarse = scenario.slope(crops, 10.0), scenario.slope(crops, 40.0)
    assert 0 < fine < coarse
    assert 8 < coarse / fine < 24
    (d0, b0), (d1, b1) = [
        (np.mean(np.square(r.astype(float) - crops)), np.mean(bits))
        for r, bits in (scenario.baseline(crops, q) for q in (10 / 1.05, 10 * 1.05))]
    pixels = crops.shape[1] * crops.shape[2]
    assert fine == pytest.approx((d1 - d0) / ((b0 - b1) / pixels))

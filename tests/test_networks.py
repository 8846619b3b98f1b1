"""Resampling and the processor networks, on real photographs."""
import numpy as np
import pytest
import tensorflow as tf

from sandwich import networks, resample
from tests import photos


@pytest.fixture(scope="module")
def photo():
    return photos.load("motorcycle_left.png")[100:196, 200:320].astype(np.float32)[None]


@pytest.mark.parametrize("factor", [2, 3])
def test_resamplers_match_tf_image_resize_away_from_the_edges(photo, factor):
    """Same kernels as `tf.image.resize` (which XLA cannot compile); only the
    edge handling differs, so compare 3 output pixels in from the border."""
    h, w = photo.shape[1] // factor, photo.shape[2] // factor
    down = resample.downsample(photo, factor)
    expected = tf.image.resize(photo, [h, w], method="bicubic", antialias=True)
    np.testing.assert_allclose(down[:, 3:-3, 3:-3], expected[:, 3:-3, 3:-3], atol=1e-3)
    up = resample.upsample(down, factor)
    expected = tf.image.resize(down, [h * factor, w * factor], method="lanczos3")
    edge = 3 * factor
    np.testing.assert_allclose(up[:, edge:-edge, edge:-edge], expected[:, edge:-edge, edge:-edge],
                               atol=1e-3)


def test_sizes_not_divisible_by_the_factor_are_padded_and_cut_back(photo):
    odd = photo[:, :37, :29]
    down = resample.downsample(odd, 2)
    assert down.shape == (1, 19, 15, 3)
    # The padding replicates the edges.
    padded = resample.pad_to_multiple(odd, 2)
    assert padded.shape == (1, 38, 30, 3)
    np.testing.assert_array_equal(padded[:, -1, :29], odd[:, -1])
    np.testing.assert_array_equal(padded[:, :37, -1], odd[:, :, -1])
    assert resample.upsample(down, 2, (37, 29)).shape == odd.shape


def test_flat_images_stay_flat():
    flat = tf.fill([1, 9, 7, 3], 77.0)
    for factor in (2, 3):
        np.testing.assert_allclose(resample.upsample(resample.downsample(flat, factor), factor),
                                   77.0, atol=1e-3)


def test_resampling_compiles_with_xla_and_passes_gradients(photo):
    @tf.function(jit_compile=True)
    def roundtrip_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = resample.upsample(resample.downsample(x, 2), 2, x.shape[1:3])
            loss = tf.reduce_sum(tf.square(y - x))
        return y, tape.gradient(loss, x)

    odd = photo[:, :45, :61]
    y, gradient = roundtrip_and_gradient(odd)
    assert y.shape == odd.shape
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)


def test_resampling_works_on_dynamic_and_tiny_sizes():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
    def roundtrip(x):
        return resample.upsample(resample.downsample(x, 2), 2, tf.shape(x)[1:3])

    for shape in ([1, 1, 1, 3], [2, 5, 1, 3], [1, 3, 8, 3]):
        assert roundtrip(tf.ones(shape)).shape == shape


@pytest.mark.parametrize("factor", [0, -2, 1.5, True])
def test_bad_factors_are_refused(factor):
    with pytest.raises(ValueError, match="positive integer"):
        resample.downsample(tf.zeros([1, 4, 4, 3]), factor)


def test_slim_unet_has_about_57k_parameters():
    processor = networks.Processor("slim")
    processor(tf.zeros([1, 16, 16, 3]))
    assert 55_000 <= processor.unet.count_params() <= 60_000
    # The per-pixel path stays small next to the U-Net.
    assert processor.mlp.count_params() < 1_000


def test_paper_preset_mirrors_the_papers_widths():
    unet = networks.UNet(networks.PRESETS["paper"].unet_widths)
    unet(tf.zeros([1, 16, 16, 3]))
    assert [e.layers[-1].filters for e in unet.encoders] == [32, 64, 128, 256]
    assert [unet.bottom.layers[-1].filters] + [d.layers[-1].filters for d in unet.decoders] == [
        512, 256, 128, 64, 32]


def test_untrained_processor_is_the_identity_on_odd_sizes(photo):
    """Zero-initialised heads: the sandwich starts as its baseline."""
    source = tf.cast(photo[:, :37, :29] * 4, tf.uint16)
    processor = networks.Processor("slim", peak=1023.0)
    out = processor(source)
    assert out.shape == source.shape
    np.testing.assert_array_equal(out, tf.cast(source, tf.float32))


def test_trained_processor_changes_the_image_but_keeps_its_size(photo):
    processor = networks.Processor(networks.NetworkSize((4, 8), (8,)))
    processor(photo)
    for variable in processor.trainable_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.1, seed=1))
    out = processor(photo[:, :21, :13])
    assert out.shape == (1, 21, 13, 3)
    assert not np.allclose(out, photo[:, :21, :13])


def test_a_level_gain_scales_one_residual_by_the_step(photo):
    """With a level gain the branches see the image alone: at every level the
    residual is the level-0 one times `1 + a * level + b * level^2`, per channel."""
    processor = networks.Processor(networks.NetworkSize((4, 8), (8,)), level_gain=True)
    processor(photo, tf.constant([0.0]))
    for variable in processor.trainable_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.1, seed=2))
    a, b = processor.level_gain.numpy()
    image = tf.cast(photo, tf.float32).numpy()
    residual = processor(photo, tf.constant([0.0])).numpy() - image
    assert np.abs(residual).max() > 0.1
    for level in (-1.0, 0.5, 1.0):
        scaled = processor(photo, tf.constant([level])).numpy() - image
        np.testing.assert_allclose(scaled, residual * (1 + a * level + b * level ** 2),
                                   rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="needs one"):
        processor(photo)
    with pytest.raises(ValueError, match="not both"):
        networks.Processor("slim", conditioned=True, level_gain=True)


def test_processor_runs_with_dynamic_shapes():
    processor = networks.Processor("slim")
    serve = tf.function(processor, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert serve(tf.zeros([1, 5, 3, 3])).shape == (1, 5, 3, 3)


@pytest.mark.parametrize("shape, message", [([5, 5, 3], "rank 4"), ([1, 5, 5, 4], "3 channels")])
def test_processor_rejects_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        networks.Processor("slim")(tf.zeros(shape))


def test_unknown_sizes_are_refused():
    with pytest.raises(ValueError, match="presets are"):
        networks.network_size("huge")
    with pytest.raises(ValueError, match="positive integers"):
        networks.NetworkSize((8, 0), (8,))


@pytest.mark.parametrize("size", ["slim", networks.NetworkSize((4, 8), (8,))])
def test_macs_per_pixel_agree_with_tensorflows_profiler(size):
    """The analytic count against TensorFlow's own count of the traced graph
    (2 float ops a multiply-accumulate; biases and activations add a little)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    processor = networks.Processor(size)
    graph = convert_variables_to_constants_v2(tf.function(processor).get_concrete_function(
        tf.TensorSpec([1, 64, 64, 3]))).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    measured = flops / 2 / (64 * 64)
    assert measured == pytest.approx(networks.network_size(size).macs_per_pixel(), rel=0.05)

"""Rate models against the real encoder's bit counts."""
import numpy as np
import pytest
import tensorflow as tf

from sandwich import rate, samples
from sandwich.jpeg import proxy_code, real_roundtrip
from tests import photos

QSTEPS = (2, 4, 8, 16, 32, 64)


@pytest.fixture(scope="module")
def held_out():
    return photos.held_out_crops(128, per_photo=4, seed=3)


@pytest.fixture(scope="module")
def fitted():
    """Fitted on the bundled photographs, which the held-out set excludes."""
    return rate.LogRateModel(rate.calibrate(samples.crops(samples.load_all(), 128), QSTEPS))


def _relative_errors(model, images, qstep):
    _, indices = proxy_code(images.astype(np.float32), qstep)
    predicted = model.bits(indices, qstep).numpy()
    _, bits = real_roundtrip(images, qstep)
    return np.abs(predicted - bits) / bits


@pytest.mark.parametrize("qstep", QSTEPS)
def test_log_model_predicts_held_out_bit_counts(fitted, held_out, qstep):
    errors = _relative_errors(fitted, held_out, qstep)
    print(f"qstep {qstep}: |model - real| / real  median {100 * np.median(errors):.1f}%  "
          f"p90 {100 * np.percentile(errors, 90):.1f}%  ({len(errors)} images)")
    assert np.median(errors) < 0.10


def test_default_table_interpolates_between_its_rows(held_out):
    """qsteps off the calibration grid are served by log-linear interpolation."""
    errors = _relative_errors(rate.LogRateModel.default(), held_out, 20.0)
    assert np.median(errors) < 0.10


def test_refit_moves_a_one_row_table_in_place(held_out):
    model = rate.LogRateModel(rate.calibrate(held_out[::2], [4.0]))
    before = model.ac_scale.numpy().copy()
    report = model.refit(held_out[::2], [32.0])
    assert report.qsteps == [32.0]
    assert not np.allclose(before, model.ac_scale.numpy())
    assert np.median(_relative_errors(model, held_out[1::2], 32.0)) < 0.10
    with pytest.raises(ValueError, match="rows"):
        rate.LogRateModel.default().refit(held_out[:2], [8.0])


def test_rate_model_compiles_and_has_gradients(held_out):
    model = rate.LogRateModel.default()
    qstep = tf.Variable(10.0)

    @tf.function(jit_compile=True)
    def bits_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, indices = proxy_code(x, qstep)
            bits = model.bits(indices, qstep)
            total = tf.reduce_sum(bits)
        return bits, tape.gradient(total, [x, qstep])

    bits, (grad_x, grad_q) = bits_and_grad(tf.constant(held_out[:2].astype(np.float32)))
    assert bits.shape == (2,) and np.all(bits.numpy() > 0)
    assert float(tf.reduce_max(tf.abs(grad_x))) > 0
    assert float(grad_q) < 0  # A coarser step costs fewer bits.


def test_gaussian_model_orders_rates_like_the_encoder(held_out):
    model = rate.GaussianRateModel()
    estimates = []
    for q in (2, 8, 32):
        _, indices = proxy_code(held_out[:4].astype(np.float32), q)
        estimates.append(model.bits(indices).numpy())
    assert np.all(estimates[0] > estimates[1]) and np.all(estimates[1] > estimates[2])
    _, real_bits = real_roundtrip(held_out[:4], 8)
    # The ideal-coder estimate is below what baseline JPEG pays, but not absurdly.
    ratio = estimates[1] / real_bits
    assert np.all(ratio > 0.2) and np.all(ratio < 1.5)


def test_a_single_plane_is_priced_with_the_luma_scales(held_out):
    """One plane, one table slot: its magnitudes and its nonzero count take
    the luma columns of each feature, never the chroma ones."""
    model = rate.LogRateModel(rate.calibrate(held_out[:4], [16.0]))
    _, indices = proxy_code(held_out[:2, ..., :1].astype(np.float32), 16.0)
    ac, dc, blocks = rate.log_rate_features(indices)
    magnitudes, nonzero, runs = np.asarray(ac).T
    luma_log, _, luma_nonzero, _, luma_runs, _ = model.calibration.ac_scale[0]
    expected = (luma_log * magnitudes + luma_nonzero * nonzero + luma_runs * runs
                + rate.DC_BITS_PER_LOG2 * dc
                + model.calibration.block_bits[0] * blocks + model.calibration.header_bits[0])
    np.testing.assert_allclose(model.bits(indices, 16.0).numpy(), expected, rtol=1e-5)


def _masked_max_previous(mask: np.ndarray) -> np.ndarray:
    """The search `_previous_nonzero` replaced: 1 + j maximised over the
    nonzeros j before each position, as a masked max of a [63, 63] product."""
    preceding = np.triu(np.arange(1, 64, dtype=np.float32)[:, None] * np.ones((1, 63), np.float32), 1)
    return np.max(mask[..., :, None] * preceding, axis=-2)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_previous_nonzero_equals_the_masked_max(jit_compile):
    rng = np.random.default_rng(0)
    # Densities from empty to full, one per block.
    masks = (rng.random((3, 40, 63)) < rng.random((3, 40, 1))).astype(np.float32)
    masks[:, 0], masks[:, 1] = 0.0, 1.0
    masks[:, 2], masks[:, 3] = np.eye(63)[0], np.eye(63)[62]
    search = tf.function(rate._previous_nonzero, jit_compile=jit_compile)
    for batch in (masks, masks[0], masks[:, :, None]):
        np.testing.assert_array_equal(search(tf.constant(batch)).numpy(), _masked_max_previous(batch))


def _per_slot_features(indices):
    """The features as each table slot's own chain of ops computed them
    before the slots shared their ops (`log_rate_features`), the zigzag
    order by a gather and the indicator by `tanh` passed straight through."""
    log2 = lambda logs, count: tf.reduce_sum(logs, axis=1) / np.log(2.0) + count
    ac, nonzero, runs, dc = [], [], [], 0.0
    for k in indices:
        ac.append(log2(rate._per_block(tf.math.log(0.5 + 0.5 * tf.abs(k)), rate._AC),
                       k.shape[1] * 63.0))
        smooth = tf.tanh(tf.abs(k))
        indicator = smooth + tf.stop_gradient(tf.cast(tf.not_equal(k, 0.0), k.dtype) - smooth)
        nonzero.append(tf.reduce_sum(rate._per_block(indicator, rate._AC), axis=1))
        zigzag = tf.gather(indicator, rate.ZIGZAG[1:], axis=-1)
        previous = rate._previous_nonzero(tf.stop_gradient(tf.cast(zigzag > 0.5, tf.float32)))
        price = tf.math.log(rate.AC_POSITIONS - previous) / np.log(2.0)
        runs.append(tf.reduce_sum(zigzag * price, axis=[1, 2]))
        dc_indices = rate._per_block(k, rate._DC)
        previous = tf.pad(dc_indices[:, :-1], [[0, 0], [1, 0]])
        dc += log2(tf.math.log(0.5 + 0.5 * tf.abs(dc_indices - previous)), float(k.shape[1]))
    return tf.stack(ac + nonzero + runs, axis=-1), dc


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("mode", ["ycbcr-420", "planes", "gray"])
def test_shared_ops_give_the_per_slot_features_and_gradients(held_out, mode, jit_compile):
    """The slots' shared ops, the zigzag order by a product and the
    indicator's own gradient: the same features to the bit, the same
    gradients to float precision."""
    images = held_out[:3].astype(np.float32)
    kwargs = {"color_mode": "planes", "subsampling": "444"} if mode == "planes" else {}
    if mode == "gray":
        images = images[..., :1]

    def features_and_gradients(features):
        @tf.function(jit_compile=jit_compile)
        def run(indices, weights):
            with tf.GradientTape() as tape:
                tape.watch(indices)
                ac, dc = features(indices)[:2]
                total = tf.reduce_sum(ac * weights) + tf.reduce_sum(dc)
            return ac, dc, tape.gradient(total, indices)
        return run

    for qstep in (2.0, 16.0, 64.0):
        indices = proxy_code(images, qstep, **kwargs)[1]
        weights = tf.constant(np.random.default_rng(0).random([1, 3 * len(indices)]), tf.float32)
        ac, dc, grads = features_and_gradients(rate.log_rate_features)(indices, weights)
        expected_ac, expected_dc, expected_grads = features_and_gradients(_per_slot_features)(
            indices, weights)
        np.testing.assert_array_equal(ac.numpy(), expected_ac.numpy())
        np.testing.assert_array_equal(dc.numpy(), expected_dc.numpy())
        for grad, expected in zip(grads, expected_grads):
            np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)

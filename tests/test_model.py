"""The sandwich model: starts as its baseline, learns, compiles, serves."""
import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sandwich import jpeg, metrics, model, networks, samples, scenarios
from tests import photos

# Small enough that XLA compiles a training step in seconds on 2 cores.
TINY = networks.NetworkSize(unet_widths=(4, 8), mlp_widths=(8,))


@pytest.fixture(scope="module")
def crops():
    return photos.held_out_crops(64, per_photo=1, seed=7)


def _source(scenario, crops):
    return crops if scenario.bit_depth == 8 else samples.block_sum(crops, 2)


@pytest.mark.parametrize("jpeg_mode", ["ycbcr-420", "planes"])
@pytest.mark.parametrize("name", scenarios.specs.SCENARIOS)
def test_untrained_sandwich_is_its_baseline_through_the_real_codec(crops, name, jpeg_mode):
    scenario = scenarios.make(name, jpeg_mode=jpeg_mode)
    source = _source(scenario, crops)[:3, :61, :45]  # Sizes no codec block divides.
    sandwich = model.Sandwich(scenario, size="slim", qstep=12.0)
    real = sandwich.real_forward(source)
    reconstruction, bits = scenario.baseline(source, 12.0)
    baseline_psnr = metrics.psnr(reconstruction, source, scenario.bit_depth)
    np.testing.assert_allclose(real["psnr"], baseline_psnr, atol=0.01)
    np.testing.assert_array_equal(real["bits"], bits)
    np.testing.assert_array_equal(real["reconstruction"], reconstruction)
    assert real["reconstruction"].shape == source.shape


def test_gradients_reach_the_preprocessor_and_qstep(crops):
    sandwich = model.Sandwich(scenarios.make("high_res"), size=TINY, qstep=12.0)
    with tf.GradientTape() as tape:
        loss = sandwich(crops[:2])["loss"]
    pre = sandwich.preprocessor
    # At initialisation only the zero-initialised heads can move the output.
    heads = [pre.unet.head.kernel, pre.mlp.layers[-1].kernel, sandwich.qstep_parameter]
    for variable, gradient in zip(heads, tape.gradient(loss, heads)):
        assert gradient is not None and np.any(gradient.numpy() != 0), variable.path


def test_compiled_training_step_lowers_the_loss(crops):
    # Distortion-led (gamma 1): the post-processor has something to learn in
    # 30 steps; at gamma 50 the identity start is already near this batch's optimum.
    sandwich = model.Sandwich(scenarios.make("high_bit_depth"), size=TINY, qstep=12.0, gamma=1.0)
    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(3e-3), jit_compile=True)
    batch = tf.constant(samples.block_sum(crops[:2], 2))
    initial_qstep = float(sandwich.qstep)
    losses = [float(train_step(batch)["loss"]) for _ in range(30)]
    print(f"loss {losses[0]:.2f} -> {losses[-1]:.2f} over {len(losses)} steps")
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.98 * losses[0]
    assert float(sandwich.qstep) != pytest.approx(initial_qstep, rel=1e-4)  # qstep is trained


def test_loss_terms_are_consistent(crops):
    scenario = scenarios.make("high_bit_depth")
    sandwich = model.Sandwich(scenario, size=TINY, qstep=8.0, gamma=10.0, penalty_weight=2.0)
    source = samples.block_sum(crops[:2], 2)
    terms = sandwich(source)
    forward = sandwich.forward(source)
    pixels = source.shape[1] * source.shape[2]
    np.testing.assert_allclose(terms["bpp"], np.mean(forward.bits) / pixels, rtol=1e-6)
    np.testing.assert_allclose(
        terms["loss"], terms["distortion"] + 10.0 * terms["bpp"] + 2.0 * terms["penalty"],
        rtol=1e-6)
    # Distortion is in 0..255 units whatever the bit depth.
    error = (forward.reconstruction - forward.source) * 255.0 / 1023.0
    np.testing.assert_allclose(terms["distortion"], np.mean(np.square(error)), rtol=1e-5)
    assert float(terms["penalty"]) == 0.0
    for image in terms["images"].values():
        assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0


def test_penalty_pushes_the_bottleneck_back_into_range(crops):
    sandwich = model.Sandwich(scenarios.make("high_res"), size=TINY)
    sandwich.preprocessor.mlp.layers[-1].bias.assign([300.0, 0.0, 0.0])
    terms = sandwich(crops[:1])
    assert float(terms["penalty"]) > 0.0


def test_qstep_stays_above_its_floor():
    sandwich = model.Sandwich(scenarios.make("high_res"), size=TINY, qstep=1.5,
                              train_qstep=False)
    np.testing.assert_allclose(float(sandwich.qstep), 1.5, rtol=1e-6)
    assert all(v is not sandwich.qstep_parameter for v in sandwich.trainable_variables)
    sandwich.qstep_parameter.assign(-100.0)
    assert float(sandwich.qstep) >= model.QSTEP_FLOOR
    with pytest.raises(ValueError, match="must exceed"):
        model.Sandwich(scenarios.make("high_res"), size=TINY, qstep=1.0)


def test_serving_functions_work_on_any_size_and_save(crops, tmp_path):
    scenario = scenarios.make("high_res", factor=2)
    sandwich = model.Sandwich(scenario, size=TINY, qstep=10.0)
    source = crops[0, :37, :50]
    serving = sandwich.serving_functions()
    bottleneck = serving["preprocess"](source, tf.constant(10.0))
    assert bottleneck.dtype == tf.uint8 and bottleneck.shape == (19, 25, 3)
    reconstruction = serving["postprocess"](bottleneck, tf.constant([37, 50]), tf.constant(10.0))
    assert reconstruction.dtype == tf.uint8 and reconstruction.shape == source.shape

    module = tf.Module()
    module.weights = list(sandwich.variables)  # What the functions capture.
    module.preprocess, module.postprocess = serving["preprocess"], serving["postprocess"]
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_array_equal(loaded.preprocess(source, tf.constant(10.0)), bottleneck)


@pytest.mark.parametrize("source, message", [
    (np.zeros([8, 8, 3], np.uint8), "rank 4"),
    (np.zeros([1, 8, 8, 4], np.uint8), "3 channels"),
    (np.zeros([1, 8, 8, 3], np.uint16), "must be uint8"),
])
def test_bad_input_is_refused(source, message):
    sandwich = model.Sandwich(scenarios.make("high_res"), size=TINY)
    with pytest.raises(ValueError, match=message):
        sandwich(source)
    with pytest.raises(ValueError, match=message):
        sandwich.real_forward(source)


@pytest.mark.parametrize("quantization", ["steps", "tables"])
def test_learned_quantization_trains_and_codes_its_own_tables(crops, quantization):
    """Per-table steps or whole 8x8 tables start flat, learn apart, and are
    what the real encoder writes into the file's DQT."""
    sandwich = model.Sandwich(scenarios.make("high_res", factor=1), size=TINY, qstep=12.0,
                              quantization=quantization)
    np.testing.assert_allclose(sandwich.qtables.numpy(), 12.0, rtol=1e-6)
    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(3e-2), jit_compile=True)
    for _ in range(5):
        train_step(tf.constant(crops[:2]))
    qtables = sandwich.qtables.numpy()
    assert qtables.shape == (2, 64) and len(np.unique(qtables)) > 1
    real = sandwich.real_forward(crops[:1])
    data = jpeg.encode(real["bottleneck"][0], sandwich.codec_tables())
    assert 8 * len(data) == real["bits"][0]
    with Image.open(io.BytesIO(data)) as image:
        assert [list(image.quantization[i]) for i in (0, 1)] == (
            jpeg.tables.integer_tables(qtables).tolist())


@pytest.mark.parametrize("condition_preprocessor", ["off", "input", "gain"])
def test_untrained_conditioned_sandwich_is_its_baseline_at_every_step(crops,
                                                                      condition_preprocessor):
    """Rate conditioning keeps the start: identity processors at any step,
    however the pre-processor reads the step."""
    scenario = scenarios.make("high_res", factor=2)
    sandwich = model.Sandwich(scenario, size=TINY, qstep_range=(4.0, 36.0),
                              condition_preprocessor=condition_preprocessor)
    assert float(sandwich.qstep) == pytest.approx(12.0)
    for qstep in (4.0, 12.0, 36.0):
        real = sandwich.real_forward(crops[:2], qstep)
        reconstruction, bits = scenario.baseline(crops[:2], qstep)
        np.testing.assert_array_equal(real["bits"], bits)
        np.testing.assert_array_equal(real["reconstruction"], reconstruction)


def test_conditioned_training_draws_steps_and_the_processors_read_them(crops):
    sandwich = model.Sandwich(scenarios.make("high_res", factor=1), size=TINY,
                              qstep_range=(4.0, 36.0), gamma=1.0, condition_preprocessor=True)
    batches = [tf.constant(crops[i:i + 2]) for i in range(0, 6, 2)]
    drawn = [float(sandwich.drawn_qstep(b)) for b in batches]
    assert all(4.0 <= q <= 36.0 for q in drawn) and len(set(drawn)) == 3
    assert float(sandwich.drawn_qstep(batches[0])) == drawn[0]  # reproducible
    assert float(sandwich.level(4.0)) == -1.0 and float(sandwich.level(36.0)) == 1.0
    assert float(sandwich.level(100.0)) == 1.0  # clipped outside the range

    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(1e-2), jit_compile=True)
    scalars = [train_step(batches[i % 3]) for i in range(6)]
    assert all(np.isfinite(float(s["loss"])) for s in scalars)
    assert float(sandwich.qstep) == pytest.approx(12.0)  # the range fixes the scale
    decoded = sandwich.preprocess(crops[:1])
    fine, coarse = (sandwich.postprocess(decoded, (64, 64), q).numpy() for q in (4.0, 36.0))
    assert not np.array_equal(fine, coarse)
    # The pre-processor reads the step too.
    assert not np.array_equal(sandwich.preprocess(crops[:1], 4.0), sandwich.preprocess(crops[:1], 36.0))
    np.testing.assert_array_equal(sandwich.preprocess(crops[:1], 12.0), decoded)

    serving = sandwich.serving_functions()
    np.testing.assert_array_equal(serving["postprocess"](
        decoded[0], tf.constant([64, 64]), tf.constant(36.0)).numpy(), coarse[0])
    np.testing.assert_array_equal(serving["preprocess"](crops[0], tf.constant(4.0)).numpy(),
                                  sandwich.preprocess(crops[:1], 4.0)[0])


def test_a_preprocessor_left_unconditioned_ignores_the_step(crops):
    """The default: only the post-processor reads the step, so a rate
    search can pre-process once per image."""
    sandwich = model.Sandwich(scenarios.make("high_res", factor=1), size=TINY,
                              qstep_range=(4.0, 36.0))
    assert not sandwich.preprocessor_conditioned and sandwich.postprocessor.conditioned
    head = sandwich.preprocessor.unet.head
    head.kernel.assign(0.1 * np.random.default_rng(0).standard_normal(head.kernel.shape))
    np.testing.assert_array_equal(sandwich.preprocess(crops[:1], 4.0),
                                  sandwich.preprocess(crops[:1], 36.0))


def test_a_gain_conditioned_preprocessor_reads_the_step_and_exports_it(crops):
    sandwich = model.Sandwich(scenarios.make("high_res", factor=1), size=TINY,
                              qstep_range=(4.0, 36.0), gamma=1.0, condition_preprocessor="gain")
    assert sandwich.preprocessor_conditioned and sandwich.preprocessor_conditioning == "gain"
    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(1e-2), jit_compile=False)
    for i in range(4):
        train_step(tf.constant(crops[2 * (i % 3):2 * (i % 3) + 2]))
    assert np.any(sandwich.preprocessor.level_gain.numpy() != 0)
    fine, coarse = (sandwich.preprocess(crops[:1], q) for q in (4.0, 36.0))
    assert not np.array_equal(fine, coarse)
    serving = sandwich.serving_functions()
    np.testing.assert_array_equal(serving["preprocess"](crops[0], tf.constant(4.0)).numpy(),
                                  fine[0])
    with pytest.raises(ValueError, match="condition_preprocessor must be one of"):
        model.Sandwich(scenarios.make("high_res"), size=TINY, qstep_range=(4.0, 36.0),
                       condition_preprocessor="plane")


def test_a_qstep_range_is_checked():
    for bad in ((1.0, 8.0), (8.0, 4.0), (8.0, 8.0)):
        with pytest.raises(ValueError, match="low < high"):
            model.Sandwich(scenarios.make("high_res"), size=TINY, qstep_range=bad)


def test_a_checkpoint_of_the_model_holds_every_weight(tmp_path):
    """Every variable travels through `tf.train.Checkpoint(model=...)` on
    its own (Keras 3 hides layers kept in lists from it)."""
    scenario = scenarios.make("high_res", factor=2)
    saved = model.Sandwich(scenario, size=TINY, qstep_range=(4.0, 36.0), condition_preprocessor=True)
    rng = np.random.default_rng(0)
    for variable in saved.variables:
        variable.assign(rng.standard_normal(variable.shape).astype(np.float32))
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    restored = model.Sandwich(scenario, size=TINY, qstep_range=(4.0, 36.0),
                              condition_preprocessor=True)
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    assert len(restored.variables) == len(saved.variables)
    for a, b in zip(saved.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

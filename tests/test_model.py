"""The sandwich model: starts as its baseline, learns, compiles, serves."""
import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sandwich import jpeg, metrics, model, networks, samples, scenarios, specs
from tests import photos

# Small enough that XLA compiles a training step in seconds on 2 cores.
TINY = networks.NetworkSize(unet_widths=(4, 8), mlp_widths=(8,))
# Steps of each run of the view-term test. With 40, over seeds 0-4, the view
# term kept the bottleneck 0.43-1.21 dB closer to the source.
VIEW_STEPS = 40


@pytest.fixture(scope="module")
def crops():
    return photos.held_out_crops(64, per_photo=1, seed=7)


def _source(scenario, crops):
    return crops if scenario.bit_depth == 8 else samples.block_sum(crops, 2)


@pytest.mark.parametrize("name, jpeg_mode", [
    *((name, mode) for name in ("high_bit_depth", "high_res") for mode in ("ycbcr-420", "planes")),
    ("gray", "gray")])
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


def test_a_gray_sandwich_compiles_and_learns_colour(crops):
    """Under XLA the gray scenario's step (luma bottleneck, colour carriers,
    demodulated planes into the post-processor) trains: the loss falls
    and the carriers' gains move."""
    sandwich = model.Sandwich(scenarios.make("gray"), size=TINY, qstep=12.0, gamma=1.0,
                              carrier_gain=0.3)
    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(3e-3), jit_compile=True)
    batch = tf.constant(crops[:2])
    losses = [float(train_step(batch)["loss"]) for _ in range(30)]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < 0.9 * losses[0]
    assert not np.allclose(sandwich.carrier.gain.numpy(), 0.3)
    assert sandwich.forward(batch).decoded.shape == (2, *crops.shape[1:3], 1)


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


@pytest.mark.parametrize("quantization, shape", [("steps", "flat"), ("tables", "standard")])
def test_learned_quantization_trains_and_codes_its_own_tables(crops, quantization, shape):
    """Per-table steps or whole 8x8 tables start at the scenario's tables
    (flat, or Annex K's shape), learn apart, and are what the real encoder
    writes into the file's DQT."""
    scenario = scenarios.make("high_res", factor=1, table_shape=shape)
    sandwich = model.Sandwich(scenario, size=TINY, qstep=12.0, quantization=quantization)
    np.testing.assert_allclose(sandwich.qtables.numpy(), scenario.tables_at(12.0), rtol=1e-6)
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
    """Compiled with XLA, with every term of the loss: a mix of squared
    error and MS-SSIM, and the view term."""
    sandwich = model.Sandwich(scenarios.make("high_res", factor=1), size=TINY,
                              qstep_range=(4.0, 36.0), gamma=1.0, condition_preprocessor=True,
                              distortion="mix", ms_ssim_weight=0.5, view_weight=0.5)
    batches = [tf.constant(crops[i:i + 2]) for i in range(0, 6, 2)]
    drawn = [float(sandwich.drawn_qstep(b)) for b in batches]
    assert all(4.0 <= q <= 36.0 for q in drawn) and len(set(drawn)) == 3
    assert float(sandwich.drawn_qstep(batches[0])) == drawn[0]  # reproducible
    assert float(sandwich.level(4.0)) == -1.0 and float(sandwich.level(36.0)) == 1.0
    assert float(sandwich.level(100.0)) == 1.0  # clipped outside the range

    train_step = model.make_train_step(sandwich, keras.optimizers.Adam(1e-2), jit_compile=True)
    scalars = [train_step(batches[i % 3]) for i in range(6)]
    assert all(np.isfinite(float(s[name])) for s in scalars
               for name in (*model.SCALARS, *model.OPTIONAL_SCALARS))
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


def test_a_qstep_range_is_checked_by_one_rule_wherever_it_is_given():
    """The model, its spec and the trainer's flag refuse the same ranges
    (`specs.check_qstep_range`): the low end above the smallest table
    entry, the high end at most the largest, low below high."""
    from trainer import task

    for bad in ((1.0, 8.0), (8.0, 4.0), (8.0, 8.0), (16.0, 300.0), (0.5, 8.0)):
        with pytest.raises(ValueError, match="low < high"):
            model.Sandwich(scenarios.make("high_res"), size=TINY, qstep_range=bad)
        with pytest.raises(specs.SpecError, match="low < high"):
            specs.ModelSpec(model_id="m", scenario="high_res", bit_depth=8, factor=2,
                            qstep=16.0, qstep_range=list(bad))
        with pytest.raises(SystemExit):
            task.parse(["--data", "d", "--qstep_range", ",".join(map(str, bad))])
    for good in ((1.5, 8.0), (24.0, 255.0)):
        assert model.Sandwich(scenarios.make("high_res"), size=TINY,
                              qstep_range=good).qstep_range == good
        assert task.parse(["--data", "d", "--qstep_range", ",".join(map(str, good))]
                          )[0].qstep_range == good


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


def test_ms_ssim_takes_the_scales_a_patch_holds():
    """Five scales of an 11-pixel window need 176 pixels; smaller images keep
    the scales whose coarsest is at least 8 pixels, the window cut to it."""
    full = model.MS_SSIM_POWER_FACTORS
    assert model.ms_ssim_scales(176, 300) == (pytest.approx(full), 11)
    factors, window = model.ms_ssim_scales(64, 64)
    assert window == 8 and factors == pytest.approx(np.array(full[:4]) * sum(full) / sum(full[:4]))
    assert model.ms_ssim_scales(16, 40)[1] == 8 and len(model.ms_ssim_scales(16, 40)[0]) == 2
    assert model.ms_ssim_scales(100, 100) == (pytest.approx(factors), 11)
    # It is TensorFlow's MS-SSIM with those scales: its five at 176 pixels,
    # and on sizes that an odd scale pads.
    photo = samples.load_all()[0][:200, :181].astype(np.float32)
    noisy = photo + np.random.default_rng(0).normal(0, 8, photo.shape).astype(np.float32)
    for height, width in ((176, 176), (200, 181), (64, 64), (45, 61)):
        a, b = noisy[None, :height, :width], photo[None, :height, :width]
        factors, window = model.ms_ssim_scales(height, width)
        np.testing.assert_allclose(
            model.ms_ssim(a, b, 255.0),
            tf.image.ssim_multiscale(a, b, 255.0, power_factors=factors, filter_size=window),
            rtol=1e-5)


def test_the_mix_is_squared_error_and_ms_ssim_in_its_units(crops):
    scenario = scenarios.make("high_bit_depth")
    sandwich = model.Sandwich(scenario, size=TINY, qstep=16.0, gamma=10.0, distortion="mix",
                              ms_ssim_weight=0.25, view_weight=0.5)
    source = samples.block_sum(crops[:2], 2)
    forward = sandwich.forward(source)
    terms = sandwich.loss_terms(forward)
    error = (forward.reconstruction - forward.source) * 255.0 / 1023.0
    factors, window = model.ms_ssim_scales(32, 32)
    similarity = tf.image.ssim_multiscale(forward.reconstruction, forward.source, 1023.0,
                                          power_factors=factors, filter_size=window)
    # TensorFlow's MS-SSIM, to float rounding (1 - MS-SSIM, 250 times, to 5e-4).
    np.testing.assert_allclose(terms["ms_ssim"], np.mean(similarity), rtol=1e-5)
    np.testing.assert_allclose(
        terms["distortion"], 0.75 * np.mean(np.square(error))
        + 0.25 * model.MS_SSIM_TO_MSE * (1 - np.mean(similarity)), rtol=5e-4)
    # The view term measures the decoded bottleneck (8 bits) against the
    # source's 8-bit floor, the baseline's own bottleneck.
    reference = np.floor(forward.source.numpy() / 4)
    view_similarity = tf.image.ssim_multiscale(forward.decoded, reference, 255.0,
                                               power_factors=factors, filter_size=window)
    np.testing.assert_allclose(
        terms["view_distortion"], 0.75 * np.mean(np.square(forward.decoded - reference))
        + 0.25 * model.MS_SSIM_TO_MSE * (1 - np.mean(view_similarity)), rtol=5e-4)
    np.testing.assert_allclose(
        terms["loss"], terms["distortion"] + 0.5 * terms["view_distortion"] + 10.0 * terms["bpp"],
        rtol=1e-6)
    with pytest.raises(ValueError, match="for distortion 'mix'"):
        model.Sandwich(scenario, size=TINY, distortion="mse", ms_ssim_weight=0.5)


def test_ms_ssim_gradients_stay_finite(crops):
    """Where a contrast term is clipped at zero (anti-correlated images),
    `tf.image.ssim_multiscale`'s gradient is NaN; the loss's is zero there
    (the MS-SSIM is 0 whatever the pixels do), and elsewhere it is not; at
    the start of training it is finite everywhere."""
    source = tf.constant(crops[:2], tf.float32)
    inverted = tf.Variable(255.0 - source)
    with tf.GradientTape() as tape:
        value, similarity = model.distortion(inverted, source, 255.0, 1.0)
    gradient = tape.gradient(value, inverted).numpy()
    assert float(similarity[0]) == 0.0 and float(similarity[1]) > 0.0
    np.testing.assert_allclose(value[0], model.MS_SSIM_TO_MSE)
    assert np.all(gradient[0] == 0.0) and np.all(np.isfinite(gradient[1]))
    assert np.any(gradient[1] != 0.0)

    sandwich = model.Sandwich(scenarios.make("high_res", factor=1, table_shape="standard"),
                              size=TINY, qstep_range=(8.0, 64.0), distortion="ms-ssim",
                              view_weight=1.0)
    with tf.GradientTape() as tape:
        loss = sandwich(crops[:4], training=True)["loss"]
    variables = sandwich.trainable_variables
    gradients = dict(zip((v.path for v in variables), tape.gradient(loss, variables)))
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients.values() if g is not None)
    # The zero-initialised heads, which alone move the output at first, learn.
    for processor in (sandwich.preprocessor, sandwich.postprocessor):
        assert np.any(gradients[processor.unet.head.kernel.path].numpy() != 0)


def _annex_k_file(rgb):
    """Annex K itself, as libjpeg writes it at quality 50."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def _jpegli_file(rgb):
    """jpegli's own file at quality 70, whose tables the shape copies."""
    import pyjpegli

    return pyjpegli.encode(np.ascontiguousarray(rgb).tobytes(), rgb.shape[1], rgb.shape[0], 70)


@pytest.mark.parametrize("shape, steps, reference", [
    ("standard", (24.0, 59.5, 255.0), _annex_k_file),
    ("jpegli", (14.0, 18.5, 120.0), _jpegli_file)])
def test_shaped_tables_code_the_baseline_with_their_tables_in_the_file(crops, shape, steps,
                                                                        reference):
    """With standard or jpegli tables an untrained sandwich is still its
    baseline, bit for bit, at every step of its range; the file's DQT is the
    shape at the step's scale, the proxy codes with the very same integers,
    and at the reference encoder's own scale they are its tables exactly."""
    from sandwich.jpeg import proxy

    scenario = scenarios.make("high_res", factor=1, table_shape=shape)
    sandwich = model.Sandwich(scenario, size=TINY, qstep_range=(steps[0], steps[-1]))
    for qstep in steps:
        real = sandwich.real_forward(crops[:2], qstep)
        reconstruction, bits = scenario.baseline(crops[:2], qstep)
        np.testing.assert_array_equal(real["bits"], bits)
        np.testing.assert_array_equal(real["reconstruction"], reconstruction)
        written = jpeg.tables.integer_tables(sandwich.codec_tables(qstep))
        with Image.open(io.BytesIO(jpeg.encode(real["bottleneck"][0],
                                               sandwich.codec_tables(qstep)))) as image:
            assert [list(image.quantization[i]) for i in (0, 1)] == written.tolist()
        np.testing.assert_array_equal(proxy._tables(sandwich.tables_at(qstep)).numpy(), written)
    with Image.open(io.BytesIO(reference(crops[0]))) as image:
        theirs = np.array([image.quantization[i] for i in (0, 1)])
    scale = jpeg.tables.scale(theirs)
    np.testing.assert_array_equal(jpeg.tables.integer_tables(sandwich.codec_tables(scale)), theirs)
    with pytest.raises(ValueError, match="shaped for luma and chroma"):
        scenarios.make("high_res", jpeg_mode="planes", table_shape=shape)


def test_the_view_term_keeps_the_bottleneck_close_to_the_source():
    """The same training, with and without the view term: with it, the
    bottleneck file, decoded by the real codec without the post-processor,
    stays closer to the source on held-out photos (coffee, the bundled photo
    that quality reports hold out, is left out of the training too)."""
    training = samples.crops([samples.load(p) for p in samples.paths() if p.stem != "coffee"], 32)
    order = np.random.default_rng(0).permutation(len(training))
    held_out = photos.held_out_crops(32, per_photo=2, seed=3)
    scenario = scenarios.make("high_res", factor=1)
    bottleneck_psnr = {}
    for view_weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        sandwich = model.Sandwich(scenario, size=TINY, qstep=16.0, train_qstep=False, gamma=1.0,
                                  view_weight=view_weight)
        train_step = model.make_train_step(sandwich, keras.optimizers.Adam(3e-3),
                                           jit_compile=False)
        for i in range(VIEW_STEPS):
            train_step(tf.constant(training[order[4 * i:4 * i + 4]]))
        decoded = sandwich.real_forward(held_out)["decoded"]
        bottleneck_psnr[view_weight] = float(np.mean(metrics.psnr(decoded, held_out)))
    print(f"bottleneck PSNR without and with the view term: {bottleneck_psnr}")
    assert bottleneck_psnr[1.0] > bottleneck_psnr[0.0] + 0.2

"""The evaluator: BD metrics with a known answer, and the Beam job on real photographs."""
import contextlib
import io
import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import evaluate
from sandwich import alternatives, metrics, samples, scenarios
from sandwich.image_io import encode_png16
from sandwich.specs import ModelSpec
from tests import photos
from tests.sandwich_exports import export_sandwich

SCENARIO = scenarios.make("high_res")
BASELINE = evaluate.baseline_name(SCENARIO)  # 'baseline-x2'
ANCHOR_BPP = [0.25, 0.5, 1.0, 2.0]
ANCHOR_PSNR = [27.0, 30.5, 33.5, 36.0]
ANCHOR_MS_SSIM = [0.90, 0.95, 0.97, 0.98]
ANCHOR_NORM = [4.0, 3.0, 2.0, 1.5]  # Butteraugli 3-norm, falling as the rate rises


def _measurements(method, bpps, psnrs, images=("a.png", "b.png"), ms_ssims=None,
                  norms=None):
    """Per-image measurements whose means are the given curve: the images
    spread +-0.1 bpp and +-1 dB around each point (and alike in MS-SSIM and
    Butteraugli's 3-norm, where given; its max is twice the 3-norm)."""
    out = []
    for qstep, (bpp, psnr) in enumerate(zip(bpps, psnrs)):
        for image, sign in zip(images, (1, -1)):
            perceptual = {} if ms_ssims is None else {
                "ms_ssim": ms_ssims[qstep] + sign * 0.001,
                "butteraugli": 2 * (norms[qstep] + sign * 0.1),
                "butteraugli_3norm": norms[qstep] + sign * 0.1}
            out.append(evaluate.Measurement(method, float(qstep), image,
                                            bits=round((bpp + sign * 0.1) * 10_000),
                                            pixels=10_000, psnr=psnr + sign, **perceptual))
    return out


def test_bd_rate_of_a_curve_needing_a_fifth_fewer_bits_is_minus_20_percent():
    measurements = (_measurements(BASELINE, ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("g50", [0.8 * b for b in ANCHOR_BPP], ANCHOR_PSNR))
    summary = evaluate.summarise(measurements, {"g50": SCENARIO})
    assert summary["bd"][BASELINE]["g50"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)
    assert summary["bd"][BASELINE]["sandwich"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)


def test_bd_psnr_of_a_curve_one_db_higher_is_plus_one_db():
    measurements = (_measurements(BASELINE, ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("g10", ANCHOR_BPP, [p + 1.0 for p in ANCHOR_PSNR])
                    + _measurements("g200", ANCHOR_BPP, [p - 2.0 for p in ANCHOR_PSNR]))
    summary = evaluate.summarise(measurements, {"g10": SCENARIO, "g200": SCENARIO})
    bd = summary["bd"][BASELINE]
    assert bd["g10"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)
    assert bd["g200"]["bd_psnr"] == pytest.approx(-2.0, abs=1e-9)
    # The front is g10's curve: at every rate it beats g200.
    front = next(m for m in summary["methods"] if m["name"] == "sandwich")["results"]
    g10 = summary_curve(summary, "g10")
    assert (front["bpp"], front["psnr"]) == (g10["bpp"], g10["psnr"])
    assert bd["sandwich"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)


def test_bd_rate_at_equal_perceptual_quality_of_a_fifth_fewer_bits_is_minus_20_percent():
    measurements = (_measurements(BASELINE, ANCHOR_BPP, ANCHOR_PSNR, ms_ssims=ANCHOR_MS_SSIM,
                                  norms=ANCHOR_NORM)
                    + _measurements("g50", [0.8 * b for b in ANCHOR_BPP], ANCHOR_PSNR,
                                    ms_ssims=ANCHOR_MS_SSIM, norms=ANCHOR_NORM))
    summary = evaluate.summarise(measurements, {"g50": SCENARIO})
    assert summary["metrics"] == ["psnr", "ms-ssim", "butteraugli"]
    for method in ("g50", "sandwich"):
        bd = summary["bd"][BASELINE][method]
        for key in ("bd_rate", "bd_rate_ms_ssim", "bd_rate_butteraugli"):
            assert bd[key] == pytest.approx(-20.0, abs=1e-6), (method, key)
    g50 = summary_curve(summary, "g50")
    assert g50["ms-ssim"] == pytest.approx(ANCHOR_MS_SSIM)
    assert g50["ms-ssim-db"] == pytest.approx([-10 * np.log10(1 - v) for v in ANCHOR_MS_SSIM])
    assert g50["butteraugli-3norm"] == pytest.approx(ANCHOR_NORM)
    assert g50["butteraugli"] == pytest.approx([2 * n for n in ANCHOR_NORM])


def test_lower_butteraugli_is_better_and_each_metric_has_its_front():
    """'sharp' has the baseline's PSNR and a fifth less Butteraugli distance
    at every rate; 'smooth' 1 dB more PSNR and a quarter more distance. The
    PSNR front is smooth's curve, the Butteraugli front sharp's, and the
    sandwich's BD figures take each metric on its front."""
    measurements = (
        _measurements(BASELINE, ANCHOR_BPP, ANCHOR_PSNR, ms_ssims=ANCHOR_MS_SSIM,
                      norms=ANCHOR_NORM)
        + _measurements("sharp", ANCHOR_BPP, ANCHOR_PSNR, ms_ssims=ANCHOR_MS_SSIM,
                        norms=[0.8 * n for n in ANCHOR_NORM])
        + _measurements("smooth", ANCHOR_BPP, [p + 1 for p in ANCHOR_PSNR],
                        ms_ssims=ANCHOR_MS_SSIM, norms=[1.25 * n for n in ANCHOR_NORM]))
    summary = evaluate.summarise(measurements, {"sharp": SCENARIO, "smooth": SCENARIO})
    bd = summary["bd"][BASELINE]
    assert bd["sharp"]["bd_rate_butteraugli"] < 0 < bd["smooth"]["bd_rate_butteraugli"]
    assert bd["smooth"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)
    sharp, smooth = summary_curve(summary, "sharp"), summary_curve(summary, "smooth")
    psnr_front = summary_curve(summary, "sandwich")
    butteraugli_front = summary_curve(summary, "sandwich-butteraugli")
    assert psnr_front["psnr"] == smooth["psnr"] and psnr_front["model"] == ["smooth"] * 4
    assert butteraugli_front["butteraugli-3norm"] == sharp["butteraugli-3norm"]
    assert butteraugli_front["model"] == ["sharp"] * 4
    assert bd["sandwich"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)
    assert bd["sandwich"]["bd_rate_butteraugli"] == pytest.approx(
        bd["sharp"]["bd_rate_butteraugli"])


def summary_curve(summary, name):
    return next(m for m in summary["methods"] if m["name"] == name)["results"]


def test_curves_that_share_no_range_say_why_bd_is_undefined():
    measurements = (_measurements(BASELINE, ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("far", [10 * b for b in ANCHOR_BPP],
                                    [p + 20 for p in ANCHOR_PSNR]))
    bd = evaluate.summarise(measurements, {"far": SCENARIO})["bd"][BASELINE]["far"]
    assert bd["bd_rate"] is None and "no PSNR range" in bd["bd_rate_undefined"]


def test_the_baseline_steps_reach_every_models_range():
    """Each model point needs its baseline's curve at its rate: the default
    grid (4..96) reaches out to x4's coarse range and a fine range, and a
    model inside the grid leaves it as it is."""
    def spec(factor, qstep_range):
        return ModelSpec(model_id=f"x{factor}", scenario="high_res", bit_depth=8,
                         factor=factor, qstep=qstep_range[0], qstep_range=qstep_range)

    assert evaluate.baseline_steps([spec(2, [12, 96])]) == evaluate.DEFAULT_BASELINE_QSTEPS
    steps = evaluate.baseline_steps([spec(1, [2, 16]), spec(2, [12, 96]), spec(4, [16, 128])])
    assert steps == (2, *evaluate.DEFAULT_BASELINE_QSTEPS, 128)


def test_a_deeper_sources_alternatives_are_coded_at_its_8_bit_ceiling():
    """A 10-bit source: each alternative's file is the codec's own file of
    the source rounded down to 8 bits, the `high_bit_depth` baseline's
    bottleneck, decoded back to the middle of each 10-bit step; so its PSNR
    never beats the 8-bit bound (that of the rounding alone)."""
    source = samples.block_sum(photos.load("chelsea.png")[:96, :128], 2)  # 10 bits, 48x64
    eight_bits = source // 4
    qualities = [50, 100]
    files = list(evaluate.alternative_files("jpeg", source, 10, qualities))
    for (data, decoded), quality in zip(files, qualities):
        assert data == alternatives.plain_jpeg(eight_bits.astype(np.uint8), quality)
        assert decoded.dtype == np.uint16 and decoded.shape == source.shape
        np.testing.assert_array_equal(decoded, 4 * alternatives.pillow_decode(data).astype(int) + 2)
    bound = metrics.psnr((4 * eight_bits + 2)[None], source[None], 10)[0]
    (bits_50, psnr_50), (bits_100, psnr_100) = evaluate.measure_alternative(
        "jpeg", source, 10, qualities)
    assert (bits_50, bits_100) == (8 * len(files[0][0]), 8 * len(files[1][0]))
    assert psnr_50 < psnr_100 <= bound
    assert psnr_100 == pytest.approx(metrics.psnr(files[1][1][None], source[None], 10)[0])


def test_a_deeper_sources_8_bit_ceiling_and_lossless_size_are_reported(tmp_path, capsys):
    """The evaluator's 8-bit ceiling of 10-bit photos is the mean PSNR of
    each rounded down to 8 bits and back to the middle of its 10-bit step,
    computed here apart; the lossless size is each photo's 16-bit PNG."""
    images, ceilings, png_bpp = tmp_path / "ten_bit", [], []
    images.mkdir()
    for name in ("motorcycle_left.png", "hubble_deep_field.jpg"):
        source = samples.block_sum(photos.load(name)[:96, :128], 2)  # 10 bits, 48x64
        png = encode_png16(source, 10)
        (images / f"{name}.png").write_bytes(png)
        rounded = np.floor(source / 4.0) * 4 + 2
        error = np.mean(np.square(rounded - source.astype(np.float64)))
        ceilings.append(10 * np.log10(1023.0 ** 2 / error))
        png_bpp.append(8 * len(png) / (48 * 64))
    summary = evaluate.run([
        "--models", export_sandwich("high_bit_depth", model_id="hbd-untrained"),
        f"--input={images}/*.png", f"--output={tmp_path / 'results'}", "--qsteps", "4", "8",
        "--baseline_qsteps", "4", "8", "--alternatives", "jpeg", "--qualities", "90", "100",
        "--metrics", "psnr", "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert summary["eight_bit_ceiling_psnr"] == pytest.approx(np.mean(ceilings), abs=1e-9)
    assert summary["lossless_png_bpp"] == pytest.approx(np.mean(png_bpp))
    assert f"8-bit ceiling (no codec){' ' * 13}{np.mean(ceilings):8.2f}" in capsys.readouterr().out
    # No 8-bit JPEG passes it, however fine.
    jpeg = next(m for m in summary["methods"] if m["name"] == "jpeg")["results"]
    assert max(jpeg["psnr"]) < summary["eight_bit_ceiling_psnr"]


# MS-SSIM's five scales need both sides of at least 161 pixels: the crops
# are just above, and a thumbnail below becomes a dead letter.
CROP = (176, 192)
THUMBNAIL = "thumbnail.png"


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    images = tmp_path_factory.mktemp("held_out")
    for name in ("motorcycle_left.png", "hubble_deep_field.jpg"):
        Image.fromarray(photos.load(name)[:CROP[0], :CROP[1]]).save(images / f"{name}.png")
    Image.fromarray(photos.load("color.png")[:150, :192]).save(images / THUMBNAIL)
    return images


@pytest.fixture(scope="module")
def evaluated(held_out, tmp_path_factory):
    """Three models on two held-out crops: at x2, untrained (= the baseline)
    and perturbed (worse); at x1 (full resolution), untrained; against the
    two baselines, plain JPEG and jpegli; in every metric (the default)."""
    output = tmp_path_factory.mktemp("results")
    untrained = export_sandwich("high_res", model_id="hr-untrained")
    perturbed = export_sandwich("high_res", model_id="hr-perturbed", perturb=0.02, seed=1)
    full = export_sandwich("high_res", model_id="x1-untrained", factor=1)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = evaluate.run([
            "--models", untrained, perturbed, full, f"--input={held_out}/*.png",
            f"--output={output}", "--qsteps", "8", "16", "32", "--baseline_qsteps", "8", "16",
            "32", "64", "--alternatives", "jpeg", "jpegli", "--qualities", "30", "60", "90",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return output, summary


def test_results_are_compressai_json_and_plots(evaluated):
    output, summary = evaluated
    names = {"baseline-x1", "baseline-x2", "jpeg", "jpegli", "hr-untrained", "hr-perturbed",
             "x1-untrained", "x1-untrained-view", "sandwich", "sandwich-ms-ssim",
             "sandwich-butteraugli"}
    for name in names:
        method = json.loads((output / f"{name}.json").read_text())
        assert method["name"] == name and method["description"]
        results = method["results"]
        assert len(results["bpp"]) == len(results["psnr"]) >= 2
        assert results["psnr-rgb"] == results["psnr"]
        assert all(b > 0 for b in results["bpp"]) and all(20 < p < 60 for p in results["psnr"])
        assert all(0.5 < v < 1 for v in results["ms-ssim"])
        assert results["ms-ssim-db"] == pytest.approx(
            [-10 * np.log10(1 - v) for v in results["ms-ssim"]])
        assert all(0 < n <= m for n, m in zip(results["butteraugli-3norm"],
                                               results["butteraugli"]))
    assert json.loads((output / "summary.json").read_text()) == summary
    assert {m["name"] for m in summary["methods"]} == names and summary["images"] == 2
    assert summary["metrics"] == ["psnr", "ms-ssim", "butteraugli"]
    assert summary["own_baseline"] == {"hr-untrained": "baseline-x2",
                                       "hr-perturbed": "baseline-x2",
                                       "x1-untrained": "baseline-x1"}
    for reference in ("jpeg", "jpegli", "baseline-x1", "baseline-x2"):
        bd = summary["bd"][reference]["sandwich"]
        for key in ("bd_rate", "bd_psnr", "bd_rate_ms_ssim", "bd_rate_butteraugli"):
            assert bd[key] is not None or bd[f"{key}_undefined"]
    # The view row only against what a viewer would get instead.
    assert {r for r, compared in summary["bd"].items() if "x1-untrained-view" in compared} == {
        "jpeg", "jpegli"}
    for plot in ("rd.png", "rd_ms-ssim.png", "rd_butteraugli.png"):
        with Image.open(output / plot) as image:
            assert image.format == "PNG" and image.size[0] > 400


def test_a_thumbnail_below_ms_ssims_size_is_a_dead_letter(evaluated):
    output, _ = evaluated
    [letter] = [json.loads(line) for line in (output / "dead_letters.jsonl").open()]
    assert letter["path"].endswith(THUMBNAIL) and "161" in letter["reason"]
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    assert not any(m["image"].endswith(THUMBNAIL) for m in per_image)


def test_points_are_the_means_of_the_images(evaluated):
    output, summary = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    jpeg = summary_curve(summary, "jpeg")
    for i, quality in enumerate(jpeg["qstep"]):
        point = [m for m in per_image if m["method"] == "jpeg" and m["qstep"] == quality]
        assert len(point) == 2
        for key, field in (("ms-ssim", "ms_ssim"), ("butteraugli", "butteraugli"),
                           ("butteraugli-3norm", "butteraugli_3norm")):
            assert jpeg[key][i] == pytest.approx(np.mean([m[field] for m in point]))


def test_untrained_model_is_the_baseline_at_the_same_step(evaluated):
    """Known answer: same PSNR at every shared step, a few header bytes more."""
    output, summary = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    for model, baseline_method in (("hr-untrained", "baseline-x2"),
                                   ("x1-untrained", "baseline-x1")):
        baseline = {(m["image"], m["qstep"]): m for m in per_image
                    if m["method"] == baseline_method}
        untrained = [m for m in per_image if m["method"] == model]
        assert len(untrained) == 2 * 3
        for m in untrained:
            base = baseline[m["image"], m["qstep"]]
            assert m["psnr"] == pytest.approx(base["psnr"], abs=1e-9)
            assert 0 < m["bits"] - base["bits"] < 8 * 250  # the comment segment
    bd = summary["bd"]["baseline-x2"]
    # Only the comment segment's ~200 bytes differ: on these small 4:2:0
    # files (about 2-6 kB) that is worth a few tenths of a dB.
    assert -0.4 < bd["hr-untrained"]["bd_psnr"] <= 0
    assert bd["hr-perturbed"]["bd_psnr"] < bd["hr-untrained"]["bd_psnr"]
    # The front: at each of its rates, the best any model's curve reaches there.
    front = summary_curve(summary, "sandwich")
    models = [summary_curve(summary, m["name"]) for m in summary["methods"]
              if m["name"].endswith("untrained") or m["name"] == "hr-perturbed"]
    for rate, psnr in zip(front["bpp"], front["psnr"]):
        reached = [q for c in models
                   if (q := metrics.psnr_at(c["bpp"], c["psnr"], rate)) is not None]
        assert psnr == pytest.approx(max(reached))
    assert np.all(np.diff(front["bpp"]) > 0) and np.all(np.diff(front["psnr"]) > 0)


def test_alternative_rows_are_direct_encoder_calls(evaluated, held_out):
    """The plain-JPEG and jpegli points are exactly what Pillow and pyjpegli
    make of the same images: same bytes, same PSNR after decoding with Pillow."""
    import pyjpegli

    output, _ = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    for m in (m for m in per_image if m["method"] in ("jpeg", "jpegli")):
        pixels = np.asarray(Image.open(m["image"]).convert("RGB"))
        if m["method"] == "jpeg":
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=int(m["qstep"]),
                                         subsampling=2, optimize=True)
            data = buffer.getvalue()
        else:
            data = pyjpegli.encode(pixels.tobytes(), pixels.shape[1], pixels.shape[0],
                                   int(m["qstep"]))
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert m["bits"] == 8 * len(data)
        assert m["psnr"] == pytest.approx(float(metrics.psnr(decoded[None], pixels[None])[0]))


def _butteraugli_main(reference, distorted) -> tuple[float, float]:
    """libjxl's binary on two files: its first line is the largest distance,
    its second '3-norm: <value>'."""
    first, second = subprocess.run(
        ["butteraugli_main", str(reference), str(distorted), "--pnorm", "3"],
        capture_output=True, text=True, check=True).stdout.splitlines()[:2]
    return float(first), float(second.split(":")[1])


def test_perceptual_values_are_direct_calls_on_the_same_files(evaluated, tmp_path):
    """Each plain-JPEG point, coded again here (Pillow is deterministic) and
    written to PNG files, measured by `tf.image.ssim_multiscale` and by
    `butteraugli_main` directly."""
    output, _ = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    for m in (m for m in per_image if m["method"] == "jpeg"):
        pixels = np.asarray(Image.open(m["image"]).convert("RGB"))
        data, decoded = alternatives.code("jpeg", pixels, int(m["qstep"]))
        assert m["bits"] == 8 * len(data)
        Image.fromarray(pixels).save(tmp_path / "source.png")
        Image.fromarray(decoded).save(tmp_path / "decoded.png")
        ms_ssim = float(tf.image.ssim_multiscale(tf.constant(pixels), tf.constant(decoded), 255))
        assert m["ms_ssim"] == pytest.approx(ms_ssim, abs=1e-7)
        assert (m["butteraugli"], m["butteraugli_3norm"]) == _butteraugli_main(
            tmp_path / "source.png", tmp_path / "decoded.png")


def test_the_view_row_is_the_same_file_as_a_viewer_shows_it(evaluated):
    """A factor-1 8-bit model has a view row, factor 2 none. Its bits are
    the model row's at every step; untrained, the post-processor adds
    nothing (`sandwich.model`), so the viewer sees what it reconstructs."""
    output, _ = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    views = {m["method"] for m in per_image if m["method"].endswith("-view")}
    assert views == {"x1-untrained-view"}
    model = {(m["image"], m["qstep"]): m for m in per_image if m["method"] == "x1-untrained"}
    view = [m for m in per_image if m["method"] == "x1-untrained-view"]
    assert len(view) == len(model) == 2 * 3
    for m in view:
        row = model[m["image"], m["qstep"]]
        assert m["bits"] == row["bits"]
        for field in ("psnr", "ms_ssim", "butteraugli", "butteraugli_3norm"):
            assert m[field] == pytest.approx(row[field], abs=1e-9), field


def test_metrics_flag_and_a_missing_butteraugli(monkeypatch, tmp_path, capsys):
    """PSNR is always measured; asking for Butteraugli without its binary
    fails before any work, naming the package that has it."""
    model = export_sandwich("high_res", model_id="x1-untrained", factor=1)
    argv = ["--models", model, f"--input={tmp_path}/*.png", f"--output={tmp_path}/out"]
    config, _, _ = evaluate.parse_args(argv + ["--metrics", "butteraugli"])
    assert config.metrics == ("psnr", "butteraugli")
    monkeypatch.setenv("PATH", str(tmp_path))
    config, _, _ = evaluate.parse_args(argv + ["--metrics", "psnr", "ms-ssim"])
    assert config.metrics == ("psnr", "ms-ssim")
    with pytest.raises(SystemExit):
        evaluate.parse_args(argv)
    assert "libjxl-devtools" in capsys.readouterr().err

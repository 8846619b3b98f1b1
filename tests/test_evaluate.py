"""The evaluator: BD metrics with a known answer, and the Beam job on real photographs."""
import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from pipelines import evaluate
from sandwich import metrics, scenarios
from sandwich.specs import ModelSpec
from tests import photos
from tests.sandwich_exports import export_sandwich

SCENARIO = scenarios.make("high_res")
BASELINE = evaluate.baseline_name(SCENARIO)  # 'baseline-x2'
ANCHOR_BPP = [0.25, 0.5, 1.0, 2.0]
ANCHOR_PSNR = [27.0, 30.5, 33.5, 36.0]


def _measurements(method, bpps, psnrs, images=("a.png", "b.png")):
    """Per-image measurements whose means are the given curve: the images
    spread +-0.1 bpp and +-1 dB around each point."""
    out = []
    for qstep, (bpp, psnr) in enumerate(zip(bpps, psnrs)):
        for image, sign in zip(images, (1, -1)):
            out.append(evaluate.Measurement(method, float(qstep), image,
                                            bits=round((bpp + sign * 0.1) * 10_000),
                                            pixels=10_000, psnr=psnr + sign))
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


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    images = tmp_path_factory.mktemp("held_out")
    for name in ("motorcycle_left.png", "hubble_deep_field.jpg"):
        Image.fromarray(photos.load(name)[:160, :192]).save(images / f"{name}.png")
    return images


@pytest.fixture(scope="module")
def evaluated(held_out, tmp_path_factory):
    """Three models on two held-out crops: at x2, untrained (= the baseline)
    and perturbed (worse); at x1 (full resolution), untrained; against the
    two baselines, plain JPEG and jpegli."""
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


def test_results_are_compressai_json_and_a_plot(evaluated):
    output, summary = evaluated
    names = {"baseline-x1", "baseline-x2", "jpeg", "jpegli", "hr-untrained", "hr-perturbed",
             "x1-untrained", "sandwich"}
    for name in names:
        method = json.loads((output / f"{name}.json").read_text())
        assert method["name"] == name and method["description"]
        results = method["results"]
        assert len(results["bpp"]) == len(results["psnr"]) >= 2
        assert results["psnr-rgb"] == results["psnr"]
        assert all(b > 0 for b in results["bpp"]) and all(20 < p < 60 for p in results["psnr"])
    assert json.loads((output / "summary.json").read_text()) == summary
    assert {m["name"] for m in summary["methods"]} == names and summary["images"] == 2
    assert summary["own_baseline"] == {"hr-untrained": "baseline-x2",
                                       "hr-perturbed": "baseline-x2",
                                       "x1-untrained": "baseline-x1"}
    for reference in ("jpeg", "jpegli", "baseline-x1", "baseline-x2"):
        assert "sandwich" in summary["bd"][reference]
    with Image.open(output / "rd.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 400


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

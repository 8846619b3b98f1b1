"""The evaluator: BD metrics with a known answer, and the Beam job on real photographs."""
import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from pipelines import evaluate
from sandwich import scenarios
from tests import photos
from tests.sandwich_exports import export_sandwich

SCENARIO = scenarios.make("high_res")
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
    measurements = (_measurements("baseline", ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("g50", [0.8 * b for b in ANCHOR_BPP], ANCHOR_PSNR))
    summary = evaluate.summarise(measurements, SCENARIO)
    assert summary["bd_vs_baseline"]["g50"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)
    assert summary["bd_vs_baseline"]["sandwich"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)


def test_bd_psnr_of_a_curve_one_db_higher_is_plus_one_db():
    measurements = (_measurements("baseline", ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("g10", ANCHOR_BPP, [p + 1.0 for p in ANCHOR_PSNR])
                    + _measurements("g200", ANCHOR_BPP, [p - 2.0 for p in ANCHOR_PSNR]))
    summary = evaluate.summarise(measurements, SCENARIO)
    bd = summary["bd_vs_baseline"]
    assert bd["g10"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)
    assert bd["g200"]["bd_psnr"] == pytest.approx(-2.0, abs=1e-9)
    # The front is g10's curve: at every rate it beats g200.
    front = next(m for m in summary["methods"] if m["name"] == "sandwich")["results"]
    assert front["psnr"] == pytest.approx([p + 1.0 for p in ANCHOR_PSNR])
    assert bd["sandwich"]["bd_psnr"] == pytest.approx(1.0, abs=1e-9)


def test_curves_that_share_no_range_say_why_bd_is_undefined():
    measurements = (_measurements("baseline", ANCHOR_BPP, ANCHOR_PSNR)
                    + _measurements("far", [10 * b for b in ANCHOR_BPP],
                                    [p + 20 for p in ANCHOR_PSNR]))
    bd = evaluate.summarise(measurements, SCENARIO)["bd_vs_baseline"]["far"]
    assert bd["bd_rate"] is None and "no PSNR range" in bd["bd_rate_undefined"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two models (untrained = the baseline; perturbed = worse) on two held-out crops."""
    images = tmp_path_factory.mktemp("held_out")
    for name in ("motorcycle_left.png", "hubble_deep_field.jpg"):
        Image.fromarray(photos.load(name)[:160, :192]).save(images / f"{name}.png")
    output = tmp_path_factory.mktemp("results")
    untrained = export_sandwich("high_res", model_id="hr-untrained")
    perturbed = export_sandwich("high_res", model_id="hr-perturbed", perturb=0.02, seed=1)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = evaluate.run([
            "--models", untrained, perturbed, f"--input={images}/*.png", f"--output={output}",
            "--qsteps", "8", "16", "32", "--baseline_qsteps", "8", "16", "32", "64",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return output, summary


def test_results_are_compressai_json_and_a_plot(evaluated):
    output, summary = evaluated
    names = {"baseline", "hr-untrained", "hr-perturbed", "sandwich"}
    for name in names:
        method = json.loads((output / f"{name}.json").read_text())
        assert method["name"] == name and method["description"]
        results = method["results"]
        assert len(results["bpp"]) == len(results["psnr"]) >= 2
        assert all(b > 0 for b in results["bpp"]) and all(20 < p < 60 for p in results["psnr"])
    assert json.loads((output / "summary.json").read_text()) == summary
    assert {m["name"] for m in summary["methods"]} == names and summary["images"] == 2
    with Image.open(output / "rd.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 400


def test_untrained_model_is_the_baseline_at_the_same_step(evaluated):
    """Known answer: same PSNR at every shared step, a few header bytes more."""
    output, summary = evaluated
    per_image = [json.loads(line) for line in (output / "per_image.jsonl").open()]
    baseline = {(m["image"], m["qstep"]): m for m in per_image if m["method"] == "baseline"}
    untrained = [m for m in per_image if m["method"] == "hr-untrained"]
    assert len(untrained) == 2 * 3
    for m in untrained:
        base = baseline[m["image"], m["qstep"]]
        assert m["psnr"] == pytest.approx(base["psnr"], abs=1e-9)
        assert 0 < m["bits"] - base["bits"] < 8 * 250  # the comment segment
    bd = summary["bd_vs_baseline"]
    # Only the comment segment's ~200 bytes differ: on these small 4:2:0
    # files (about 2-6 kB) that is worth a few tenths of a dB.
    assert -0.4 < bd["hr-untrained"]["bd_psnr"] <= 0
    assert bd["hr-perturbed"]["bd_psnr"] < bd["hr-untrained"]["bd_psnr"]
    front = next(m for m in summary["methods"] if m["name"] == "sandwich")["results"]
    points = {(b, p) for m in summary["methods"] if m["name"].startswith("hr-")
              for b, p in zip(m["results"]["bpp"], m["results"]["psnr"])}
    assert set(zip(front["bpp"], front["psnr"])) <= points
    assert np.all(np.diff(front["bpp"]) > 0) and np.all(np.diff(front["psnr"]) > 0)

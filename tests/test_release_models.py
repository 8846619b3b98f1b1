"""`benchmarks/release_models.py`: the gain excess, how far a model beat its
identity on one held-out photo beyond its recorded gain, the slack rate
control gives it (`codec.rate_control.gain_slack`), on per-image records
whose answer is worked out by hand; and a superseded model, which keeps
decoding its files without the pre-processor it no longer ships."""
import importlib.util
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest

from codec import Codec, exported, rate_control
from pipelines import compress
from pipelines.eval_results import Measurement
from sandwich.specs import MODEL_SPEC_FILE, ModelSpec, SpecError
from tests import photos
from tests.sandwich_exports import export_sandwich

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def release_models():
    """The script as a module (it imports its neighbours as a script does)."""
    benchmarks = os.path.join(REPO, "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        spec = importlib.util.spec_from_file_location(
            "release_models_script", os.path.join(benchmarks, "release_models.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(benchmarks)
    return module


def _row(image, method, bpp, psnr):
    return Measurement(method, 0.0, image, round(bpp * 1000), 1000, psnr)


# The identity of photo a: 30 dB at 0.5 bpp, 36 at 2 bpp, so 33 dB at 1 bpp
# (halfway in log rate); of photo b: 40 dB at 1 bpp, 44 at 4, so 42 at 2.
IDENTITY = [_row("a", "id", 0.5, 30.0), _row("a", "id", 2.0, 36.0),
            _row("b", "id", 1.0, 40.0), _row("b", "id", 4.0, 44.0)]


def test_the_excess_is_the_largest_gain_over_the_identity_beyond_the_recorded_one(
        release_models):
    rows = IDENTITY + [
        _row("a", "m", 1.0, 34.5),   # 1.5 dB over the identity, octave (0.5, 1]
        _row("a", "m", 0.9, 33.0),   # 0.46 over it, under the gain, the same octave
        _row("a", "m", 8.0, 60.0),   # beyond the identity's rates: not counted
        _row("b", "m", 2.0, 42.7),   # 0.7 dB over it, octave (1, 2]
        _row("b", "m-view", 2.0, 50.0),  # another method
    ]
    excess = release_models.gain_excess(rows, "m", "id", 0.5)
    assert excess.keys() == {1.0, 2.0}
    assert excess[1.0] == pytest.approx(1.0) and excess[2.0] == pytest.approx(0.2)
    # A recorded loss is taken as no gain, as rate control takes it.
    assert release_models.gain_excess(rows, "m", "id", -0.3)[1.0] == pytest.approx(1.5)
    assert release_models.gain_excess(rows[4:], "m", "id", 0.5) == {}


def test_a_run_records_the_excess_of_the_shipped_models_it_evaluated(release_models,
                                                                     tmp_path):
    model_id = "hr-x1-r1"
    to = tmp_path / "models"
    os.makedirs(to / model_id)
    with open(os.path.join(REPO, "codec", "models", model_id, MODEL_SPEC_FILE)) as f:
        before = ModelSpec.from_json(f.read())
    before.release.pop(rate_control.GAIN_EXCESS, None)  # as released before it was measured
    with open(to / model_id / MODEL_SPEC_FILE, "w") as f:
        f.write(before.to_json())
    gain = before.metrics[rate_control.GAIN_FIGURE]
    run = tmp_path / "run"
    # 0.4 dB beyond the recorded gain at 1 bpp as given, 0.9 on the JPEG-sourced
    # copies; 0.1 at 1.5 bpp on both.
    for kind, over in (("high_res", 0.4), ("high_res-jpeg", 0.9)):
        os.makedirs(run / "eval" / kind)
        rows = [_row("a", "baseline-x1", 0.5, 30.0), _row("a", "baseline-x1", 2.0, 36.0),
                _row("a", model_id, 1.0, 33.0 + gain + over),
                _row("a", model_id, 1.5, 30 + 6 * math.log(3, 4) + gain + 0.1)]
        with open(run / "eval" / kind / "per_image.jsonl", "w") as f:
            f.writelines(row.to_json() + "\n" for row in rows)
    summary = {"own_baseline": {model_id: "baseline-x1", "not-shipped": "baseline-x1"}}
    with open(run / "quality.json", "w") as f:
        json.dump({"summaries": {"high_res": summary, "high_res-jpeg": summary}}, f)
    release_models.record_gain_excess(str(run), str(to))
    with open(to / model_id / MODEL_SPEC_FILE) as f:
        after = ModelSpec.from_json(f.read())
    [[one, at_one], [two, at_two]] = after.release[rate_control.GAIN_EXCESS]
    assert (one, two) == (1.0, 2.0)
    assert at_one == pytest.approx(0.9) and at_two == pytest.approx(0.1)
    assert {k: v for k, v in after.release.items() if k != rate_control.GAIN_EXCESS} \
        == before.release
    # A pick at 1.2 bpp falls in the octave (1, 2], or down to 1.2 / sqrt 2 in (0.5, 1];
    # at 1.8 bpp in (1, 2] alone; beyond every octave measured, the most of any.
    margin = rate_control.GAIN_MARGIN_DB
    assert rate_control.gain_slack(after, 1.2) == pytest.approx(0.9 + margin)
    assert rate_control.gain_slack(after, 1.8) == pytest.approx(0.1 + margin)
    assert rate_control.gain_slack(after, 5.0) == pytest.approx(0.9 + margin)
    assert rate_control.gain_slack(before, 1.2) == rate_control.GAIN_SLACK_DB


def test_a_superseded_model_decodes_its_files_and_codes_nothing_new(release_models, tmp_path):
    source = photos.load("motorcycle_left.png")[100:196, 200:328]
    for model_id in ("rel-old", "rel-new"):
        shutil.copytree(export_sandwich("high_res", model_id=model_id, seed=1), tmp_path / model_id)
    old = str(tmp_path / "rel-old")
    before = Codec.load(old)
    written = before.compress(source, qstep=20)
    release_models.supersede(str(tmp_path), "rel-old", "rel-new")
    assert sorted(os.listdir(old)) == [MODEL_SPEC_FILE, "postprocessor"]
    spec = exported.read_spec(old)
    assert spec.release["superseded_by"] == "rel-new" and not exported.can_code(old)
    # The file it wrote decodes to the same pixels without its pre-processor.
    after = Codec.load(old)
    assert np.array_equal(after.decompress(written), before.decompress(written))
    with pytest.raises(SpecError, match=r"rel-old has no preprocessor: it decodes only.*superseded by rel-new"):
        after.compress(source, qstep=20)
    # A job refuses it before it reads a photo.
    with pytest.raises(SpecError, match="rel-old has no preprocessor"):
        compress.parse_args([f"--input={tmp_path}/*.png", f"--output={tmp_path}/bits",
                             f"--model={old}", "--qstep=20"])
    assert exported.can_code(str(tmp_path / "rel-new"))

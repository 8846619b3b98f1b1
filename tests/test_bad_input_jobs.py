"""Every Beam job once on a folder of 200+ bad files mixed with good ones.

The account must hold exactly: every input is an output or a dead letter,
once. Images are tiny (20x24) so the jobs spend their time on the bad
files' paths, not on inference.
"""
import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipelines import compress, decompress, evaluate, jobs, make_dataset
from tests import fuzz_targets
from tests.sandwich_exports import export_sandwich

BAD_COUNT = 210
GOOD = ["a.png", "sub/b.png", "odd[1].png", "star*?.png", "é 日本.png", "c.jpg", "d16.tif"]
RUNNER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
TILING = ["--tile=32", "--halo=0"]


def _model():
    return export_sandwich("high_res", model_id="hr-untrained")


def _run(job, argv):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = job.run(argv)
    return result, printed.getvalue()


def _lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good tiny images (some with glob and Unicode names) and 210 bad files."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "sub").mkdir()
    rng = np.random.default_rng(1)
    for name in GOOD:
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        if name.endswith(".tif"):
            tifffile.imwrite(root / name, pixels.astype(np.uint16) << 8, photometric="rgb")
        else:
            Image.fromarray(pixels).save(root / name)
    for i, data in enumerate(fuzz_targets.bad_images(BAD_COUNT)):
        (root / f"bad_{i:03d}.png").write_bytes(data)
    return root


def _check_account(counts, printed, output, inputs, written, dead, outputs="written"):
    """Counts, printed line and files agree, and each input is in exactly one place."""
    assert (counts["inputs"], counts["written"] + counts["skipped"],
            counts["dead_letters"]) == (inputs, written, dead)
    assert f"inputs: {inputs} = {written} {outputs} " in printed
    assert f"+ {dead} dead letters" in printed
    letters = _lines(os.path.join(output, jobs.DEAD_LETTER_FILE))
    assert len(letters) == dead and all(letter["reason"] for letter in letters)
    return [letter["path"] for letter in letters]


@pytest.fixture(scope="module")
def compressed(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("bits")
    counts, printed = _run(compress, [f"--input={corpus}/**", f"--output={output}",
                                      f"--model={_model()}", "--qstep=16", *TILING, *RUNNER])
    return output, counts, printed


def test_compress_accounts_for_every_file(corpus, compressed):
    output, counts, printed = compressed
    dead = _check_account(counts, printed, output, len(GOOD) + BAD_COUNT, len(GOOD), BAD_COUNT)
    written = [record["source"] for record in _lines(output / jobs.MANIFEST_FILE)]
    assert sorted(written + dead) == sorted(str(p) for p in corpus.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*.jpg")) == sorted(
        name + ".jpg" for name in GOOD)


def test_decompress_accounts_for_every_file(compressed, tmp_path):
    bits_out, _, _ = compressed
    bits = tmp_path / "bits"
    shutil.copytree(bits_out, bits)
    good = (bits / "a.png.jpg").read_bytes()
    bad = fuzz_targets.bad_bottlenecks(BAD_COUNT, good)
    for i, data in enumerate(bad):
        (bits / f"bad_{i:03d}.jpg").write_bytes(data)
    # Restores to a.png as a.png.jpg does: one of the two is a dead letter.
    (bits / "a.jpg").write_bytes(good)
    restored = tmp_path / "restored"
    counts, printed = _run(decompress, [f"--input={bits}/**.jpg", f"--output={restored}",
                                        f"--model={_model()}", *TILING, *RUNNER])
    inputs = len(GOOD) + BAD_COUNT + 1
    dead = _check_account(counts, printed, restored, inputs, len(GOOD), BAD_COUNT + 1)
    written = [record["bottleneck"] for record in _lines(restored / jobs.MANIFEST_FILE)]
    assert sorted(written + dead) == sorted(str(p) for p in bits.rglob("*.jpg"))
    assert counts["dead_letters_by_step"]["output_collision"] == 1
    assert str(bits / "a.png.jpg") in dead  # "a.jpg" sorts first and keeps a.png
    assert len(list(restored.rglob("*.png"))) == len(GOOD)


def test_evaluate_prints_and_checks_the_account(corpus, tmp_path):
    output = tmp_path / "eval"
    _, printed = _run(evaluate, [
        "--models", _model(), f"--input={corpus}/**", f"--output={output}",
        "--qsteps", "8", "16", "32", "--baseline_qsteps", "8", "16", "32", "64",
        # The good images are 20x24: too small for MS-SSIM, which would make them dead letters.
        "--metrics", "psnr", "--report_photos", "0", *TILING, *RUNNER])
    assert f"inputs: {len(GOOD) + BAD_COUNT} = {len(GOOD)} measured " in printed
    assert f"+ {BAD_COUNT} dead letters" in printed
    assert len(_lines(output / jobs.DEAD_LETTER_FILE)) == BAD_COUNT


def test_make_dataset_accounts_for_every_file(corpus, tmp_path):
    output = tmp_path / "dataset"
    spec, printed = _run(make_dataset, [
        f"--input={corpus}/**", f"--output={output}", "--scenario=high_res", "--factor=2",
        "--patch_size=16", "--patches_per_image=1", "--eval_fraction=0", *RUNNER])
    assert spec.sources["matched"] == len(GOOD) + BAD_COUNT
    assert (spec.sources["used"], spec.sources["dead_letters"]) == (len(GOOD), BAD_COUNT)
    assert len(_lines(output / jobs.DEAD_LETTER_FILE)) == BAD_COUNT

"""The compression job end to end: real photographs and bad files in, bottlenecks out.

The model is an untrained `high_res` sandwich exported by the trainer, which
is its baseline exactly: every bottleneck must be the baseline's JPEG byte for
byte (a known answer that also checks the tiling, since tiles of 96 pixels
cut every photograph). The job runs for real (FnApiRunner), in one process to
spare the shared CPU; the `gs://` test and the benchmark run it on worker
processes.
"""
import contextlib
import dataclasses
import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from codec import Codec, bottleneck_format, exported
from pipelines import compress, decompress, jobs, sample_data
from sandwich import jpeg, scenarios
from sandwich.image_io import decode_image
from sandwich.scenarios import codec_input
from tests import photos
from tests.sandwich_exports import export_sandwich
from tests.test_image_io import _png_header_only

MODEL_ID = "hr-untrained"
QSTEP = 16
FLAGS = ["--tile=96", "--halo=32", f"--qstep={QSTEP}", "--direct_running_mode=in_memory",
         "--direct_num_workers=1"]
GOOD = ["astronaut.png", "chelsea.png", "nested/coffee.png", "rocket.png", "odd.png",
        "speck.png", "motorcycle.jpg"]
BAD = {"truncated.png": "truncated", "empty.jpg": "empty file", "notes.png": "not a PNG",
       "bomb.png": "decompression bomb", "float.tif": "unsupported TIFF sample type",
       "broken.tif": "TIFF"}


def run_job(corpus, output):
    """Runs the job; returns its counts and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        counts = compress.run([f"--input={corpus}/**", f"--output={output}",
                               f"--model={export_sandwich('high_res', model_id=MODEL_ID)}",
                               *FLAGS])
    return counts, printed.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real photographs of every size class, and one of each kind of bad file."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "nested").mkdir()
    for name in ("astronaut.png", "chelsea.png", "rocket.png"):
        shutil.copy(os.path.join(sample_data.SAMPLES_DIR, name), root / name)
    shutil.copy(os.path.join(sample_data.SAMPLES_DIR, "coffee.png"), root / "nested/coffee.png")
    coffee = photos.load("coffee.png")
    Image.fromarray(coffee[101:198, 203:334]).save(root / "odd.png")  # odd sizes: 131 x 97
    Image.fromarray(coffee[200:205, 300:307]).save(root / "speck.png")  # far below a tile
    Image.fromarray(photos.load("motorcycle_left.png")[::3, ::3]).save(
        root / "motorcycle.jpg", quality=90)
    (root / "truncated.png").write_bytes((root / "rocket.png").read_bytes()[:20000])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not a picture")
    (root / "bomb.png").write_bytes(_png_header_only(60000, 60000))
    tifffile.imwrite(root / "float.tif", coffee.astype(np.float32), photometric="rgb")
    (root / "broken.tif").write_bytes(b"II*\x00" + os.urandom(200))
    return root


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("bits")
    return (output, *run_job(corpus, output))


def _manifest(output):
    lines = (output / jobs.MANIFEST_FILE).read_text().splitlines()
    return {json.loads(line)["source"]: json.loads(line) for line in lines}


def test_inputs_are_outputs_plus_dead_letters(first_run):
    output, counts, printed = first_run
    assert counts["inputs"] == len(GOOD) + len(BAD)
    assert (counts["written"], counts["skipped"], counts["dead_letters"]) == (len(GOOD), 0, len(BAD))
    assert f"inputs: {len(GOOD) + len(BAD)} = {len(GOOD)} written" in printed
    written = sorted(str(p.relative_to(output)) for p in output.rglob("*.jpg"))
    assert written == sorted(name + ".jpg" for name in GOOD)
    assert not [p for p in output.rglob("*") if p.name.startswith(".")], "temporary files left"


def test_an_unsized_local_run_of_a_few_photos_runs_in_the_runner_s_process(corpus, tmp_path):
    """One loaded model, TensorFlow on every core (`beam_options.model_job_args`)."""
    config, beam_args = compress.parse_args([
        f"--input={corpus}", f"--output={tmp_path}", f"--qstep={QSTEP}",
        f"--model={export_sandwich('high_res', model_id=MODEL_ID)}"])
    assert config.worker_processes == 1 and "--direct_num_workers=1" in beam_args


def test_a_target_job_keeps_only_its_set_s_identity_files(tmp_path):
    """`Config.made_by_identity`, whether a rerun keeps an identity file: in
    target mode, one of a scenario of the set (`rate_control.identity_key`:
    its name, bit depth, factor and JPEG mode); not another factor's or
    JPEG mode's, and not at a fixed step."""
    model = f"--model={export_sandwich('high_res', model_id=MODEL_ID)}"
    flags = [f"--input={tmp_path}", f"--output={tmp_path / 'bits'}", model]
    target, _ = compress.parse_args([*flags, "--target_bpp=0.5"])
    fixed, _ = compress.parse_args([*flags, f"--qstep={QSTEP}"])
    header = bottleneck_format.Header.identity(target.specs[0], 20.0, 64, 96, 8)
    assert target.made_by_identity(header) and not fixed.made_by_identity(header)
    for other in ({"factor": header.factor + 1}, {"jpeg_mode": "ycbcr-444"}):
        assert not target.made_by_identity(dataclasses.replace(header, **other)), other


def test_dead_letters_carry_the_reason(first_run, corpus):
    output, _, _ = first_run
    letters = [json.loads(line) for line in (output / jobs.DEAD_LETTER_FILE).open()]
    reasons = {os.path.basename(letter["path"]): letter["reason"] for letter in letters}
    assert set(reasons) == set(BAD)
    for name, expected in BAD.items():
        assert expected in reasons[name], (name, reasons[name])


def test_bottlenecks_open_with_plain_pillow(first_run, corpus):
    output, _, _ = first_run
    for name in GOOD:
        source = np.asarray(Image.open(corpus / name).convert("RGB"))
        with Image.open(output / f"{name}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (-(-source.shape[1] // 2), -(-source.shape[0] // 2))
            header = bottleneck_format.Header.from_comment(im.info["comment"])
            im.load()
        assert (header.model_id, header.height, header.width) == (MODEL_ID, *source.shape[:2])
        assert (header.bit_depth, header.source_bit_depth, header.qstep) == (8, 8, QSTEP)


def test_untrained_model_writes_the_baseline_jpeg_exactly(first_run, corpus):
    """Tiled pre-processing of an untrained sandwich is the baseline's
    downsampling, so the file is the baseline's JPEG plus our comment. (Of
    the source as decoded: rocket.png's Adobe RGB in sRGB.)"""
    output, _, _ = first_run
    scenario = scenarios.make("high_res")
    for name in GOOD:
        source = decode_image((corpus / name).read_bytes()).pixels
        baseline = codec_input(scenario.to_bottleneck(tf.cast(source[None], tf.float32)))[0]
        data = (output / f"{name}.jpg").read_bytes()
        comment = bottleneck_format.read_header(data).to_comment()
        assert data == jpeg.encode(baseline.numpy(), QSTEP, comment=comment), name


def test_manifest_describes_every_bottleneck(first_run, corpus):
    output, _, _ = first_run
    manifest = _manifest(output)
    assert set(manifest) == {str(corpus / name) for name in GOOD}
    for source, record in manifest.items():
        size = os.path.getsize(record["output"])
        height, width = np.asarray(Image.open(source)).shape[:2]
        assert record["bytes"] == size
        assert record["bpp"] == pytest.approx(8 * size / (height * width))
        assert (record["height"], record["width"], record["bit_depth"]) == (height, width, 8)
        assert (record["scenario"], record["model_id"], record["qstep"]) == (
            "high_res", MODEL_ID, QSTEP)


def test_rerun_skips_complete_outputs_and_redoes_partial_ones(first_run, corpus):
    output, _, _ = first_run
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in output.rglob("*.jpg")}
    partial = output / "rocket.png.jpg"
    partial.write_bytes(before[partial][1][:len(before[partial][1]) // 2])
    first_manifest = _manifest(output)

    counts, printed = run_job(corpus, output)

    assert (counts["skipped"], counts["written"], counts["redone"]) == (len(GOOD) - 1, 1, 1)
    assert counts["dead_letters"] == len(BAD)
    assert partial.read_bytes() == before[partial][1]
    for path, (mtime, data) in before.items():
        if path != partial:
            assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    assert _manifest(output) == first_manifest
    assert "1 written (1 of them redone)" in printed


@pytest.mark.parametrize("factors, layout", [
    ([1], (1024, 128)), ([1, 2, 4], (1024, 128)), ([3], (960, 192)), ([2, 3], (960, 192))])
def test_the_default_tiling_falls_on_every_models_grid(factors, layout):
    """1024 and 128 pixels cut x3's bottleneck off its grid: by default the
    layout moves onto multiples of 32 and of every factor instead."""
    assert exported.tile_layout(factors) == layout
    with pytest.raises(ValueError, match="multiples of the factor"):
        exported.tile_layout(factors + [3], tile=1024)


def test_an_x3_model_compresses_with_the_default_flags(corpus, tmp_path):
    """No --tile or --halo: an untrained x3 sandwich writes its baseline's JPEG."""
    model = export_sandwich("high_res", model_id="hr-x3-untrained", factor=3)
    shutil.copy(corpus / "odd.png", tmp_path / "odd.png")
    with contextlib.redirect_stdout(io.StringIO()):
        counts = compress.run([f"--input={tmp_path}/odd.png", f"--output={tmp_path}/bits",
                               f"--model={model}", f"--qstep={QSTEP}",
                               "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert counts["written"] == 1
    source = np.asarray(Image.open(tmp_path / "odd.png").convert("RGB"))
    scenario = scenarios.make("high_res", factor=3)
    baseline = codec_input(scenario.to_bottleneck(tf.cast(source[None], tf.float32)))[0]
    data = (tmp_path / "bits" / "odd.png.jpg").read_bytes()
    comment = bottleneck_format.read_header(data).to_comment()
    assert data == jpeg.encode(baseline.numpy(), QSTEP, comment=comment)


def test_a_gray_set_writes_one_component_jpegs_and_its_decoder_restores_rgb(corpus, tmp_path):
    """A gray model's files, at a target, are one-component JPEGs (Pillow
    opens them as L): a colour plain JPEG, however good, is no candidate.
    The decompress job turns them into the RGB `Codec.decompress` gives."""
    model = export_sandwich("gray", model_id="gray-perturbed", perturb=0.02)
    for name in ("odd.png", "motorcycle.jpg"):
        shutil.copy(corpus / name, tmp_path / name)
    beam = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    with contextlib.redirect_stdout(io.StringIO()):
        counts = compress.run([f"--input={tmp_path}/*.*", f"--output={tmp_path}/bits",
                               f"--model={model}", "--target_bpp=0.8", *beam])
        decompress.run([f"--input={tmp_path}/bits/*.jpg", f"--output={tmp_path}/restored",
                        f"--model={model}", *beam])
    assert counts["written"] == 2
    manifest = _manifest(tmp_path / "bits")
    codec = Codec.load(model)
    with pytest.raises(ValueError, match="multiples"):  # an odd tile would flip the carriers
        Codec.load(model, tile=96, halo=33)
    for name in ("odd.png", "motorcycle.jpg"):
        data = (tmp_path / "bits" / f"{name}.jpg").read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L"
        assert manifest[str(tmp_path / name)]["winner"] in ("model", "identity")
        assert bottleneck_format.read_header(data).jpeg_mode == "gray"
        written = name if name.endswith(".png") else f"{name}.png"  # the decoder's naming
        restored = decode_image((tmp_path / "restored" / written).read_bytes()).pixels
        assert restored.shape[-1] == 3
        np.testing.assert_array_equal(restored, codec.decompress(data))


def test_tile_seams_vanish_once_the_halo_covers_the_receptive_field():
    """A model that changes pixels (perturbed heads), tiled in 64-pixel tiles,
    against the same model on the whole image: without a halo the seams show,
    with a 128-pixel halo (the default) the result is the untiled one."""
    model_dir = export_sandwich("high_res", model_id="hr-perturbed", perturb=0.02, seed=1)
    source = photos.load("motorcycle_left.png")[:200, :264]
    whole = exported.ExportedSandwich.load(model_dir, tile=1024, halo=0)
    bottleneck = whole.preprocess(source)
    reconstruction = whole.postprocess(bottleneck, source.shape[:2], whole.spec.qstep)
    for halo, exact in ((0, False), (128, True)):
        tiled = dataclasses.replace(whole, tile=64, halo=halo)
        assert np.array_equal(bottleneck, tiled.preprocess(source)) == exact
        assert np.array_equal(
            reconstruction, tiled.postprocess(bottleneck, source.shape[:2], tiled.spec.qstep)) == exact

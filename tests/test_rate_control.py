"""Compression to a target over a model set, end to end on real photographs.

The set is two slim `high_res` exports whose processors change pixels
(perturbed heads), one at full resolution and rate-conditioned (both its
processors read the step, so one told the wrong step would show), and
one at half resolution; crops of the
held-out photographs go through `pipelines.compress --target_bpp` and
`--target_psnr` on the real runner, then through `pipelines.decompress`.
Every claim is checked against files: the bytes on disk, the PSNR of what
the decompressor writes, and plain JPEG from Pillow at every quality.
"""
import collections
import contextlib
import dataclasses
import io
import json
import os
import shutil

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import (bottleneck_format, compress, decompress, evaluate, jobs, model_handler,
                       rate_control)
from pipelines.beam_options import pipeline_options
from pipelines.dead_letters import Rejected
from pipelines.model_handler import ExportedSandwich
from sandwich import alternatives, metrics
from sandwich.specs import SpecError
from tests import photos
from tests.sandwich_exports import export_sandwich

RUNNER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
TILING = ["--tile=96", "--halo=32"]
TARGETS = {"bpp": "--target_bpp=0.5", "psnr": "--target_psnr=32"}
SPECK = "speck.png"  # 7 x 5 pixels: no file of any coder fits 0.5 bpp
JUNK = "junk.png"  # a dead letter in every mode


def _models():
    return [export_sandwich("high_res", model_id="set-x1", factor=1, perturb=0.01, seed=3,
                            qstep_range=(6, 60), condition_preprocessor=True),
            export_sandwich("high_res", model_id="set-x2", factor=2, perturb=0.02, seed=4)]


def _quiet(job, argv):
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        counts = job.run(argv)
    return counts, printed.getvalue()


def _manifest(directory):
    lines = (directory / jobs.MANIFEST_FILE).read_text().splitlines()
    return {os.path.basename(json.loads(line)["source"]): json.loads(line) for line in lines}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for name in photos.HELD_OUT:
        Image.fromarray(photos.load(name)[40:200, 60:284]).save(root / (name.split(".")[0] + ".png"))
    Image.fromarray(photos.load("coffee.png")[200:205, 300:307]).save(root / SPECK)
    (root / JUNK).write_text("not a picture")
    return root


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    """A directory of export dirs, as `--model` takes a set."""
    root = tmp_path_factory.mktemp("models")
    for model in _models():
        shutil.copytree(model, root / os.path.basename(model))
    return root


@pytest.fixture(scope="module", params=sorted(TARGETS))
def compressed(request, sources, model_set, tmp_path_factory):
    bits = tmp_path_factory.mktemp(f"bits-{request.param}")
    counts, printed = _quiet(compress, [f"--input={sources}", f"--output={bits}",
                                        f"--model={model_set}", TARGETS[request.param],
                                        *TILING, *RUNNER])
    return request.param, bits, counts, printed


def _reconstruction(path, qstep=None):
    """The decoded file as `decompress` would restore it, by the model it
    names, its post-processor told the file's step (or `qstep`)."""
    header, decoded = bottleneck_format.decode(path.read_bytes())
    if header.is_fallback:
        return header, decoded
    model = {os.path.basename(m): m for m in _models()}[header.model_id]
    loaded = ExportedSandwich.load(model, tile=96, halo=32)
    return header, loaded.postprocess(decoded, (header.height, header.width),
                                      qstep or header.qstep)


def test_every_image_gets_one_file_and_the_summary_counts_them(compressed, sources):
    kind, bits, counts, printed = compressed
    images = len(list(sources.iterdir())) - 1
    assert (counts["inputs"], counts["written"], counts["dead_letters"]) == (images + 1, images, 1)
    [letter] = [json.loads(line) for line in (bits / jobs.DEAD_LETTER_FILE).open()]
    assert letter["path"] == str(sources / JUNK) and letter["step"] == "decode"
    manifest = _manifest(bits)
    assert len(manifest) == images
    for model, count in collections.Counter(r["model_id"] for r in manifest.values()).items():
        assert f"  {model}: {count} images" in printed
    mean = np.mean([r["bpp"] for r in manifest.values()])
    assert f"{images} bottlenecks, mean {mean:.3f} bpp" in printed


@pytest.mark.parametrize("compressed", ["bpp"], indirect=True)
def test_a_bpp_target_is_met_within_3_percent_or_the_job_says_why(compressed):
    _, bits, _, printed = compressed
    manifest = _manifest(bits)
    for name, record in manifest.items():
        assert record["bytes"] == os.path.getsize(record["output"])
        assert record["bpp"] == pytest.approx(8 * record["bytes"] / (record["height"] * record["width"]))
        if not 0.97 * 0.5 <= record["bpp"] <= 0.5:
            assert record["missed"] and f"{record['source']}: {record['missed']}" in printed, name
    assert "no model of the set nor plain JPEG codes it in 0.5 bpp" in manifest[SPECK]["missed"]
    met = [r for r in manifest.values() if not r["missed"]]
    assert len(met) >= len(photos.HELD_OUT) - 1, manifest


@pytest.mark.parametrize("compressed", ["psnr"], indirect=True)
def test_a_psnr_target_is_reached_in_every_file_that_does_not_say_why(compressed):
    _, bits, _, _ = compressed
    for record in _manifest(bits).values():
        assert record["psnr"] >= 32 or record["missed"]


def test_the_recorded_psnr_is_that_of_the_decoded_file(compressed, sources):
    """...post-processed at the file's own step: the rate-conditioned model
    told another step makes another picture."""
    _, bits, _, _ = compressed
    for name, record in _manifest(bits).items():
        header, reconstruction = _reconstruction(bits / f"{name}.jpg")
        source = np.asarray(Image.open(sources / name).convert("RGB"))
        psnr = float(metrics.psnr(reconstruction[None], source[None])[0])
        assert record["psnr"] == header.psnr == pytest.approx(psnr, abs=0.005)
        if header.model_id == "set-x1":  # rate-conditioned over 6..60
            _, misled = _reconstruction(bits / f"{name}.jpg", 6 if header.qstep > 20 else 60)
            assert not np.array_equal(misled, reconstruction)
        assert (record["qstep"], record["quality"]) == (
            (None, int(header.qstep)) if header.is_fallback else (header.qstep, None))


@pytest.mark.parametrize("compressed", ["psnr"], indirect=True)
def test_a_file_of_the_conditioned_model_holds_its_preprocessor_at_the_file_s_step(
        compressed, sources):
    """set-x1's pre-processor reads the step: each probe of the search is
    pre-processed anew, and the file written is the pick's own bottleneck."""
    _, bits, _, _ = compressed
    model = ExportedSandwich.load(_models()[0], tile=96, halo=32)
    assert model.spec.preprocessor_reads_qstep
    checked = 0
    for name in _manifest(bits):
        data = (bits / f"{name}.jpg").read_bytes()
        header = bottleneck_format.read_header(data)
        if header.model_id != "set-x1":
            continue
        source = np.asarray(Image.open(sources / name).convert("RGB"))
        bottleneck = model.preprocess(source, header.qstep)
        assert bottleneck_format.encode(bottleneck, header,
                                        model.spec.tables_at(header.qstep)) == data
        other = model.preprocess(source, 6 if header.qstep > 20 else 60)
        assert not np.array_equal(other, bottleneck)
        checked += 1
    assert checked, "no image chose the conditioned model"


def test_no_output_is_worse_than_plain_jpeg_at_its_size(compressed, sources):
    """Plain JPEG at every quality, as the job would write it in the output's
    place (Pillow's file with a fallback header, whose COM segment changes
    nothing else in the file), that fits in the output's bytes."""
    _, bits, _, _ = compressed
    for name, record in _manifest(bits).items():
        data = (bits / f"{name}.jpg").read_bytes()
        header = bottleneck_format.read_header(data)
        source = np.asarray(Image.open(sources / name).convert("RGB"))
        plain = evaluate.measure_alternative("jpeg", source, 8, rate_control.QUALITIES)
        fitting = []
        for quality, (plain_bits, psnr) in zip(rate_control.QUALITIES, plain):
            fallback = dataclasses.replace(bottleneck_format.Header.fallback(
                quality, header.height, header.width, 8, header.source_stamp, header.target),
                psnr=bottleneck_format.MAX_PSNR)
            if plain_bits + 8 * (len(fallback.to_comment()) + 4) <= 8 * len(data):
                fitting.append(psnr)
        assert max(fitting, default=0.0) <= record["psnr"] + 0.005, (name, record)


def test_decompress_restores_every_choice_and_refuses_a_model_outside_its_set(
        compressed, sources, model_set, tmp_path):
    _, bits, _, _ = compressed
    manifest = _manifest(bits)
    counts, _ = _quiet(decompress, [f"--input={bits}", f"--output={tmp_path / 'all'}",
                                    f"--model={model_set}", *TILING, *RUNNER])
    assert (counts["written"], counts["dead_letters"]) == (len(manifest), 0)
    for name, record in manifest.items():
        restored = np.asarray(Image.open(tmp_path / "all" / name))
        source = np.asarray(Image.open(sources / name).convert("RGB"))
        assert float(metrics.psnr(restored[None], source[None])[0]) == pytest.approx(
            record["psnr"], abs=0.005)
    used = sorted({r["model_id"] for r in manifest.values()} - {bottleneck_format.FALLBACK})
    kept = [m for m in _models() if os.path.basename(m) != used[0]]
    counts, _ = _quiet(decompress, [f"--input={bits}", f"--output={tmp_path / 'part'}",
                                    f"--model={','.join(kept)}", *TILING, *RUNNER])
    foreign = [r for r in manifest.values() if r["model_id"] == used[0]]
    assert counts["dead_letters"] == len(foreign) > 0
    letters = [json.loads(line) for line in (tmp_path / "part" / jobs.DEAD_LETTER_FILE).open()]
    assert all(f"made by model {used[0]!r}, not by a model of the set" in letter["reason"]
               for letter in letters)


def test_a_rerun_writes_nothing_new_and_another_target_redoes_all(compressed, sources, model_set,
                                                                  tmp_path):
    kind, bits, _, _ = compressed
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in bits.glob("*.jpg")}
    manifest = _manifest(bits)
    counts, printed = _quiet(compress, [f"--input={sources}", f"--output={bits}",
                                        f"--model={model_set}", TARGETS[kind], *TILING, *RUNNER])
    assert (counts["written"], counts["skipped"]) == (0, len(before))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in bits.glob("*.jpg")} == before
    assert _manifest(bits) == manifest
    other = "--target_bpp=0.4" if kind == "psnr" else "--target_psnr=30"
    shutil.copytree(bits, tmp_path / "bits")  # The other tests read the first run's files.
    counts, _ = _quiet(compress, [f"--input={sources}", f"--output={tmp_path / 'bits'}",
                                  f"--model={model_set}", other, *TILING, *RUNNER])
    assert (counts["written"], counts["redone"]) == (len(before), len(before))


def test_a_fallback_file_round_trips_byte_for_byte(sources, tmp_path):
    """A model that garbles the picture (heads of large random weights)
    loses to plain JPEG on every photograph: each file is Pillow's plain
    JPEG plus our header, and decompression writes its decoded pixels as
    they are."""
    garbling = export_sandwich("high_res", model_id="garbling", factor=1, perturb=0.5, seed=5)
    bits, restored = tmp_path / "bits", tmp_path / "restored"
    _quiet(compress, [f"--input={sources}/*o*.png", f"--output={bits}", f"--model={garbling}",
                      "--target_bpp=1.0", *TILING, *RUNNER])
    manifest = _manifest(bits)
    assert manifest and {r["model_id"] for r in manifest.values()} == {bottleneck_format.FALLBACK}
    counts, _ = _quiet(decompress, [f"--input={bits}", f"--output={restored}",
                                    f"--model={garbling}", *TILING, *RUNNER])
    assert counts["written"] == len(manifest)
    for name, record in manifest.items():
        data = (bits / f"{name}.jpg").read_bytes()
        source = np.asarray(Image.open(sources / name).convert("RGB"))
        comment = bottleneck_format.read_header(data).to_comment()
        assert data == alternatives.plain_jpeg(source, record["quality"], comment)
        assert np.asarray(Image.open(restored / name)).tobytes() == \
            alternatives.pillow_decode(data).tobytes()


def test_a_model_set_needs_a_target_and_a_target_excludes_qstep(model_set):
    base = ["--input=x", "--output=y", f"--model={model_set}"]
    with pytest.raises(SystemExit):
        compress.parse_args(base)
    with pytest.raises(SystemExit):
        compress.parse_args([*base, "--target_bpp=0.5", "--qstep=10"])
    config, _ = compress.parse_args([*base, "--target_psnr=35"])
    assert config.target == rate_control.Target("psnr", 35.0) and config.qstep is None
    assert [spec.model_id for spec in config.specs] == ["set-x1", "set-x2"]
    deeper = export_sandwich("high_bit_depth", model_id="hbd10-untrained", bit_depth=10)
    with pytest.raises(SpecError, match=r"different bit depths \[8, 10\]"):
        compress.parse_args([*base[:2], f"--model={model_set},{deeper}", "--target_bpp=1"])


def test_bisection_finds_the_first_index_where_a_monotone_predicate_holds():
    for n in (1, 2, 7, 255):
        for boundary in range(n + 1):
            probes = []

            def predicate(i, probes=probes, boundary=boundary):
                probes.append(i)
                return i >= boundary

            assert rate_control._first(n, predicate) == boundary
            assert len(probes) <= n.bit_length()


def test_the_choice_step_on_its_own():
    """`TargetHandler` under RunInference on a TestPipeline: each source
    comes out with a file within the rate, a photograph and noise
    alike, and a source the encoder refuses (an empty image) comes out as
    the reason, not as a failed bundle."""
    rng = np.random.default_rng(0)
    inputs = [jobs.ModelInput("photo", photos.load("chelsea.png")[:96, :128], 8),
              jobs.ModelInput("noise", rng.integers(0, 256, (64, 80, 3), np.uint8), 8),
              jobs.ModelInput("empty", np.zeros((0, 16, 3), np.uint8), 8)]
    target = rate_control.Target("bpp", 2.0)

    def outcome(result):
        coded = result.inference
        if isinstance(coded, Rejected):
            return result.example.path, "rejected"
        return result.example.path, target.met(coded) and len(coded.data) == coded.bits // 8

    with test_pipeline.TestPipeline(options=pipeline_options(RUNNER)) as pipeline:
        results = (pipeline
                   | beam.Create(inputs)
                   | RunInference(rate_control.TargetHandler(_models(), target, fallback=True,
                                                             tile=96, halo=32))
                   | beam.Map(outcome))
        assert_that(results, equal_to([("photo", True), ("noise", True), ("empty", "rejected")]))


def test_a_model_set_is_a_list_or_a_directory_of_exports_with_distinct_ids(model_set, tmp_path):
    x1, x2 = (str(model_set / name) for name in ("set-x1", "set-x2"))
    assert model_handler.export_dirs(f"{x1}, {x2}/") == (x1, x2)
    assert model_handler.export_dirs(str(model_set)) == (x1, x2)
    assert model_handler.export_dirs(f"{x2},{model_set}") == (x2, x1, x2)
    with pytest.raises(SpecError, match="taken by another export of the set"):
        model_handler.read_specs(model_handler.export_dirs(f"{x2},{model_set}"))
    with pytest.raises(SpecError, match="neither an export dir nor a directory of them"):
        model_handler.export_dirs(str(tmp_path))
    impostor = tmp_path / "impostor"
    shutil.copytree(x1, impostor)
    spec = json.loads((impostor / "model_spec.json").read_text())
    (impostor / "model_spec.json").write_text(
        json.dumps({**spec, "model_id": bottleneck_format.FALLBACK}))
    with pytest.raises(SpecError, match="taken by plain-JPEG fallbacks"):
        model_handler.read_specs([x1, str(impostor)])

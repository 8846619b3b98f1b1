"""The deployed codec's one-image API (`codec.Codec`) against the Beam jobs.

A perturbed `high_res` export (its processors change pixels, so a wrong
model, step or tiling would show), real photographs and the real JPEG
encoder: `compress` at a step writes the compression job's file byte for
byte, `decompress` the decompression job's PNG pixel for pixel; with a
target, each kind of file (a model's, an identity's, plain JPEG's)
decodes to what its header says; the shipped-model names resolve against
the package's `codec/models/`; and `codec` imports neither Beam nor the
trainer.
"""
import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from apache_beam.io.filesystems import FileSystems
from PIL import Image

import codec
from codec import Codec, api, bottleneck_format, exported, rate_control, shipped
from codec.bottleneck_format import BottleneckError
from pipelines import batch_jobs, compress, decompress, jobs
from sandwich import metrics
from sandwich.specs import MODEL_SPEC_FILE, ModelSpec, SpecError
from tests import photos
from tests.sandwich_exports import export_sandwich

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_ID = "api-hr"
QSTEP = 12  # not the model's trained 20: the step must travel to the processors
TILE, HALO = 64, 32  # tiles that cut every crop, the same in the jobs and the API
TILING = [f"--tile={TILE}", f"--halo={HALO}"]
RUNNER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
# Small crops of held-out photographs; the second of odd sides.
CROPS = {"moto.png": ("motorcycle_left.png", slice(100, 196), slice(200, 328)),
         "ihc.png": ("ihc.png", slice(40, 137), slice(60, 191))}


def _model() -> str:
    return export_sandwich("high_res", model_id=MODEL_ID, perturb=0.02, seed=1)


def _quiet(job, argv):
    with contextlib.redirect_stdout(io.StringIO()):
        return job.run(argv)


def _psnr(reconstruction, source) -> float:
    return float(metrics.psnr(reconstruction[None], source[None], 8)[0])


@pytest.fixture(scope="module")
def model():
    return Codec.load(_model(), tile=TILE, halo=HALO)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for name, (photo, rows, cols) in CROPS.items():
        Image.fromarray(photos.load(photo)[rows, cols]).save(root / name)
    return root


@pytest.fixture(scope="module")
def jobs_run(sources, tmp_path_factory):
    """The compression job at `QSTEP`, then the decompression job on its files."""
    bits, restored = tmp_path_factory.mktemp("bits"), tmp_path_factory.mktemp("restored")
    counts = _quiet(compress, [f"--input={sources}", f"--output={bits}", f"--model={_model()}",
                               f"--qstep={QSTEP}", *TILING, *RUNNER])
    assert (counts["written"], counts["dead_letters"]) == (len(CROPS), 0)
    counts = _quiet(decompress, [f"--input={bits}", f"--output={restored}",
                                 f"--model={_model()}", *TILING, *RUNNER])
    assert (counts["written"], counts["dead_letters"]) == (len(CROPS), 0)
    return bits, restored


def test_compress_at_a_step_writes_the_job_s_file_and_decompress_its_png(model, sources,
                                                                         jobs_run):
    bits, restored = jobs_run
    for name in CROPS:
        path = str(sources / name)
        written = (bits / (name + jobs.BOTTLENECK_SUFFIX)).read_bytes()
        # The job's header keeps a digest of the source file's size and mtime.
        stamp = batch_jobs.source_stamp(FileSystems.get_filesystem(path).metadata(path))
        source = dataclasses.replace(model.source(path), stamp=stamp)
        assert model.compress(source, qstep=QSTEP) == written, name
        # From the path alone: the same file but for the stamp.
        data = model.compress(path, qstep=QSTEP)
        header, bottleneck = bottleneck_format.decode(data)
        job_header, job_bottleneck = bottleneck_format.decode(written)
        assert header == dataclasses.replace(job_header, source_stamp="")
        assert (header.model_id, header.qstep) == (MODEL_ID, QSTEP)
        assert np.array_equal(bottleneck, job_bottleneck)

        with Image.open(restored / decompress.png_name(name + jobs.BOTTLENECK_SUFFIX)) as png:
            assert png.mode == "RGB"
            expected = np.asarray(png)
        pixels = model.decompress(written)
        assert pixels.dtype == np.uint8 and pixels.shape == source.pixels.shape
        assert np.array_equal(pixels, expected), name
        assert np.array_equal(model.decompress(data), expected), name
        # The model changes pixels: its file is not its scenario's baseline.
        identity = dataclasses.replace(header, model_id=bottleneck_format.IDENTITY)
        assert not np.array_equal(
            pixels, bottleneck_format.identity_reconstruction(identity, bottleneck))


@pytest.mark.parametrize("bpp", [0.6, 1.5])
def test_a_rate_target_is_kept_and_its_file_decompresses(model, sources, bpp):
    source = np.asarray(Image.open(sources / "moto.png").convert("RGB"))
    height, width, _ = source.shape
    coded = model.encode(str(sources / "moto.png"), target_bpp=bpp)
    data = model.compress(str(sources / "moto.png"), target_bpp=bpp)
    assert data == coded.data  # the same search, the same file
    assert 8 * len(data) <= bpp * height * width
    header = bottleneck_format.read_header(data)
    assert header.target == f"bpp<={bpp:g}" and (header.height, header.width) == (height, width)
    pixels = model.decompress(data)
    assert pixels.shape == source.shape and pixels.dtype == np.uint8
    # The PSNR the header records is that of the file as decompressed.
    assert _psnr(pixels, source) == pytest.approx(header.psnr, abs=0.0051)
    assert set(coded.margins) == set(bottleneck_format.KINDS) - {coded.kind}


def test_a_psnr_target_is_reached_in_the_decompressed_file(model, sources):
    source = np.asarray(Image.open(sources / "ihc.png").convert("RGB"))
    data = model.compress(source, target_psnr=30)
    header = bottleneck_format.read_header(data)
    assert header.target == "psnr>=30"
    assert _psnr(model.decompress(data), source) >= 30 - 0.0051


def test_every_kind_of_file_decompresses_to_what_its_header_says(model, sources):
    """Each candidate of a rate target (the model's, the identity's, plain
    JPEG's): a plain-JPEG fallback is what Pillow decodes, an identity file
    its scenario's fixed steps, a model's its post-processor; each at the
    PSNR its search measured."""
    image = model.source(str(sources / "ihc.png"))
    target = rate_control.Target(rate_control.BPP, 1.0)
    coded = {c.kind: c for c in rate_control.candidates(list(model.models.values()), image,
                                                         target, fallback=True)}
    assert set(coded) == set(bottleneck_format.KINDS)
    decoded = {kind: model.decompress(c.data) for kind, c in coded.items()}
    for kind, c in coded.items():
        assert 8 * len(c.data) <= 1.0 * image.pixels.shape[0] * image.pixels.shape[1], kind
        assert decoded[kind].shape == image.pixels.shape, kind
        assert _psnr(decoded[kind], image.pixels) == pytest.approx(c.psnr, abs=0.0051), kind

    fallback = coded[bottleneck_format.FALLBACK].data
    with Image.open(io.BytesIO(fallback)) as plain:
        assert np.array_equal(decoded[bottleneck_format.FALLBACK],
                              np.asarray(plain.convert("RGB")))
    header, bottleneck = bottleneck_format.decode(coded[bottleneck_format.IDENTITY].data)
    assert header.is_identity
    assert np.array_equal(decoded[bottleneck_format.IDENTITY],
                          bottleneck_format.identity_reconstruction(header, bottleneck))
    header, bottleneck = bottleneck_format.decode(coded[bottleneck_format.MODEL].data)
    (loaded,) = model.models.values()
    assert header.model_id == MODEL_ID
    assert np.array_equal(decoded[bottleneck_format.MODEL], loaded.postprocess(
        bottleneck, (header.height, header.width), header.qstep))
    assert not np.array_equal(decoded[bottleneck_format.MODEL],
                              decoded[bottleneck_format.IDENTITY])


def test_a_path_bytes_and_pixels_compress_alike(model, sources):
    path = sources / "ihc.png"
    with Image.open(path) as png:
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.dtype == np.uint8
    by_path = model.compress(str(path), qstep=QSTEP)
    assert model.compress(path, qstep=QSTEP) == by_path  # a pathlib.Path too
    assert model.compress(path.read_bytes(), qstep=QSTEP) == by_path
    assert model.compress(pixels, qstep=QSTEP) == by_path
    assert model.compress(pixels, qstep=QSTEP + 8) != by_path


def test_bad_arguments_are_value_errors(model, sources):
    image = str(sources / "moto.png")
    with pytest.raises(ValueError, match="give one of"):
        model.compress(image)
    for two in ({"target_bpp": 1.0, "qstep": 10}, {"target_bpp": 1.0, "target_psnr": 30},
                {"target_psnr": 30, "qstep": 10}):
        with pytest.raises(ValueError, match="give one of"):
            model.compress(image, **two)
    for qstep in (0, -1, 300):
        with pytest.raises(ValueError, match=r"qstep must be in \(0, 255\]"):
            model.compress(image, qstep=qstep)
    for target in ({"target_bpp": 0}, {"target_bpp": -0.5}, {"target_psnr": 0}):
        with pytest.raises(ValueError, match="positive"):
            model.compress(image, **target)
    for target in ({"qstep": QSTEP}, {"target_bpp": 1.0}):
        with pytest.raises(ValueError, match=rf"'nope'.*\['{MODEL_ID}'\]"):
            model.compress(image, model_id="nope", **target)
    for pixels in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                   np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"\[h, w, 3\] uint8 or uint16"):
            model.compress(pixels, qstep=QSTEP)


def test_files_the_set_cannot_decode_are_bottleneck_errors(model, sources):
    good = model.compress(str(sources / "moto.png"), qstep=QSTEP)
    header, bottleneck = bottleneck_format.decode(good)
    foreign = bottleneck_format.encode(
        bottleneck, dataclasses.replace(header, model_id="someone-else"))
    with pytest.raises(BottleneckError, match=rf"'someone-else'.*\['{MODEL_ID}'\]"):
        model.decompress(foreign)
    with pytest.raises(BottleneckError, match="not a JPEG"):
        model.decompress(b"not a jpeg")
    with pytest.raises(BottleneckError, match="empty file"):
        model.decompress(b"")
    with pytest.raises(BottleneckError, match="truncated"):
        model.decompress(good[:-2])
    plain = io.BytesIO()
    Image.fromarray(bottleneck).save(plain, "JPEG")
    with pytest.raises(BottleneckError):
        model.decompress(plain.getvalue())
    with pytest.raises(BottleneckError, match="decompression bomb"):
        model.decompress(good, max_pixels=100)


def test_a_set_loads_each_model_when_it_first_runs(model, sources, tmp_path):
    """A model's SavedModels load when it first runs: a set one of whose
    exports has lost its SavedModels still decodes the other's files,
    exactly, and fails only on a file of the broken one; `eager=True`
    loads every model at once and so refuses the set."""
    broken = tmp_path / "broken"
    shutil.copytree(export_sandwich("high_res", model_id="broken", perturb=0.02, seed=2), broken)
    for processor in (exported.PREPROCESSOR, exported.POSTPROCESSOR):
        shutil.rmtree(broken / processor)
    both = f"{_model()},{broken}"
    lazy = Codec.load(both, tile=TILE, halo=HALO)
    data = model.compress(str(sources / "moto.png"), qstep=QSTEP)
    np.testing.assert_array_equal(lazy.decompress(data), model.decompress(data))
    np.testing.assert_array_equal(lazy.compress(str(sources / "moto.png"), qstep=QSTEP,
                                                model_id=MODEL_ID), data)
    with pytest.raises(SpecError, match="broken has no preprocessor"):
        lazy.compress(str(sources / "moto.png"), qstep=QSTEP, model_id="broken")
    with pytest.raises(SpecError, match="broken has no preprocessor"):
        Codec.load(both, tile=TILE, halo=HALO, eager=True)
    with pytest.raises(OSError, match="broken"):
        Codec.load(both, processors=(exported.POSTPROCESSOR,), tile=TILE, halo=HALO, eager=True)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty `codec/models/` in place of the package's."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setattr(shipped, "MODELS_DIR", str(root))
    shipped._specs.cache_clear()
    yield root
    shipped._specs.cache_clear()


def test_a_package_without_shipped_models_says_to_make_them(models_dir):
    for missing in (False, True):  # an empty models dir, or none at all
        if missing:
            models_dir.rmdir()
            shipped._specs.cache_clear()
        assert shipped.model_ids() == []
        for name in (shipped.DEFAULT_SET, shipped.EVERY_MODEL):
            with pytest.raises(SpecError, match="run `make models`"):
                exported.export_dirs(name)
        with pytest.raises(SpecError, match="run `make models`"):
            codec.load()
    # A shipped model's id names nothing then: the message lists the names.
    with pytest.raises(SpecError, match="nor a shipped model or set"):
        exported.export_dirs("hr-x1-r1")


def _ship(models_dir, model_id: str, **changes) -> str:
    """A copy of the test export in `models_dir`, its spec's id (and `changes`) rewritten."""
    target = models_dir / model_id
    shutil.copytree(_model(), target)
    spec = ModelSpec.from_json((target / MODEL_SPEC_FILE).read_text())
    (target / MODEL_SPEC_FILE).write_text(
        dataclasses.replace(spec, model_id=model_id, **changes).to_json())
    return str(target)


def test_the_shipped_names_resolve_to_the_package_s_models(models_dir, sources, tmp_path):
    first, second = _ship(models_dir, MODEL_ID), _ship(models_dir, "api-hr-b")
    # A 10-bit model: shipped, but not in the default set for 8-bit photos.
    deep = _ship(models_dir, "api-deep", scenario="high_bit_depth", bit_depth=10, factor=1)
    shipped._specs.cache_clear()
    assert shipped.model_ids() == ["api-deep", "api-hr", "api-hr-b"]
    assert exported.export_dirs("shipped") == (first, second)
    assert exported.export_dirs("shipped-all") == (deep, first, second)
    assert exported.export_dirs("api-hr-b") == (second,)
    assert exported.export_dirs(f"api-hr-b, {first}") == (second, first)
    # A release a newer one replaced still decodes its files, but codes no new ones.
    _ship(models_dir, "api-hr-old", release={"superseded_by": "api-hr-b"})
    shipped._specs.cache_clear()
    assert shipped.superseded_by("api-hr-old") == "api-hr-b"
    assert exported.export_dirs("shipped") == (first, second)
    assert str(models_dir / "api-hr-old") in exported.export_dirs("shipped-all")
    shutil.rmtree(models_dir / "api-hr-old")
    # A factor-1 model whose release measured its bottleneck, as viewers show
    # it, beyond comparison with plain JPEG (or 30% worse) codes only when
    # asked for PSNR; one 5% worse is in the default set.
    for model_id, viewed in (("api-hr-c", None), ("api-hr-d", 30.0), ("api-hr-e", 5.0)):
        _ship(models_dir, model_id, release={"held_out_bd": {
            "as_given": {"view": {"jpeg": {"bd_rate_butteraugli": 1.0}}},
            "jpeg_sourced": {"view": {"jpeg": {"bd_rate_butteraugli": viewed}}}}})
    shipped._specs.cache_clear()
    assert exported.export_dirs("shipped") == (first, second, str(models_dir / "api-hr-e"))
    assert exported.export_dirs("shipped-psnr") == (
        first, second, *(str(models_dir / m) for m in ("api-hr-c", "api-hr-d", "api-hr-e")))
    for model_id in ("api-hr-c", "api-hr-d", "api-hr-e"):
        shutil.rmtree(models_dir / model_id)
    shipped._specs.cache_clear()
    # The jobs' defaults: compress the set for 8-bit photos, decompress with every model.
    config, _ = compress.parse_args([f"--input={sources}", f"--output={tmp_path / 'bits'}",
                                     "--target_bpp=1", *RUNNER])
    assert config.models == (first, second)
    config, _ = decompress.parse_args([f"--input={sources}", f"--output={tmp_path / 'out'}",
                                       *RUNNER])
    assert config.models == (deep, first, second)

    both = codec.load(tile=TILE, halo=HALO)
    assert sorted(both.models) == [MODEL_ID, "api-hr-b"] and both.bit_depth == 8
    image = str(sources / "moto.png")
    with pytest.raises(ValueError, match=r"model_id=.*\['api-hr', 'api-hr-b'\]"):
        both.compress(image, qstep=QSTEP)
    data = both.compress(image, qstep=QSTEP, model_id="api-hr-b")
    assert bottleneck_format.read_header(data).model_id == "api-hr-b"
    # The copies hold the same weights: the same pixels, whichever decodes.
    reference = Codec.load(_model(), tile=TILE, halo=HALO)
    expected = reference.decompress(reference.compress(image, qstep=QSTEP))
    assert np.array_equal(both.decompress(data), expected)
    alone = Codec.load("api-hr-b", tile=TILE, halo=HALO)
    assert list(alone.models) == ["api-hr-b"]
    assert np.array_equal(alone.decompress(data), expected)
    with pytest.raises(BottleneckError, match=f"'{MODEL_ID}'"):
        alone.decompress(both.compress(image, qstep=QSTEP, model_id=MODEL_ID))
    # Every shipped model decodes (what `decompress` loads by default), but
    # codes nothing: its models take sources of two bit depths.
    every = Codec.load("shipped-all", processors=(exported.POSTPROCESSOR,), tile=TILE,
                       halo=HALO)
    assert sorted(every.models) == ["api-deep", MODEL_ID, "api-hr-b"]
    assert np.array_equal(every.decompress(data), expected)
    with pytest.raises(SpecError, match="different bit depths"):
        every.compress(image, qstep=QSTEP, model_id=MODEL_ID)


def test_codec_imports_neither_beam_nor_the_trainer():
    code = ("import sys, json; import codec, codec.api, codec.rate_control, codec.exported, "
            "codec.bottleneck_format, codec.tiling, codec.shipped; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "codec.api" in modules
    assert not [m for m in modules if m.startswith(("apache_beam", "trainer", "pipelines"))]


def test_the_package_exports_the_api():
    assert codec.Codec is api.Codec and codec.Source is api.Source and codec.load is api.load
    assert codec.__all__ == ["Codec", "Source", "load"]

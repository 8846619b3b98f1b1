"""The models that ship in the package: a user compresses without training first.

A bucket job with no `--model`, and the one-image API with no argument, run
the shipped set on photos it never saw (coffee and motorcycle_left are held
out of `make models`); the files decode with no `--model` either, and none
is worse than a plain JPEG of its size. Each shipped model's spec says where
it came from and what it measured.
"""
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import codec
from codec import bottleneck_format, exported, shipped
from codec.api import read_source
from pipelines import compress, decompress, sample_data
from sandwich import alternatives, metrics
from sandwich.samples import block_sum
from tests import photos

# What the package may weigh: ten models (four kept only to decode the files
# they wrote, with their post-processors alone), the x2 and x4 ones of wide
# networks (2.4 MB of float32 weights a processor), 21 MB compressed in a
# wheel.
MAX_SHIPPED_MB = 32
TARGET_BPP = 0.6
BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def test_the_package_ships_a_set_for_8_bit_photos_and_one_for_deeper_ones():
    specs = {model_id: exported.read_spec(d)
             for model_id, d in zip(shipped.model_ids(), shipped.export_dirs(shipped.EVERY_MODEL))}
    # The default set: the 8-bit models no newer release replaced, each of
    # those kept (to decode its files) naming a shipped successor, or one
    # that names a current one in turn.
    current = {model_id: s for model_id, s in specs.items() if not shipped.superseded_by(model_id)}
    for model_id in set(specs) - set(current):
        for _ in specs:
            model_id = shipped.superseded_by(model_id) or model_id
        assert model_id in current
    factors = sorted(s.factor for s in current.values() if s.bit_depth == 8)
    assert factors[0] == 1 and {2, 4} <= set(factors)
    assert any(s.bit_depth > 8 for s in specs.values())
    assert {s.objective for s in current.values()} == {"psnr", "perceptual"}
    assert len(shipped.export_dirs(shipped.PSNR_SET)) == len(factors)
    # The default set leaves out the factor-1 models whose file a browser
    # shows garbled (trained for PSNR alone), and keeps a factor-1 one.
    default = [exported.read_spec(d) for d in shipped.export_dirs(shipped.DEFAULT_SET)]
    assert {s.factor for s in default} == set(factors)
    for s in current.values():
        if s.bit_depth == 8 and s.factor == 1:
            viewed = [rows["view"]["jpeg"]["bd_rate_butteraugli"]
                      for rows in s.release["held_out_bd"].values()]
            shown_right = all(v is not None and v <= 20 for v in viewed)
            assert (s in default) == shown_right, (s.model_id, viewed)
            assert shown_right == (s.objective == "perceptual"), (s.model_id, viewed)
    size = sum(os.path.getsize(os.path.join(d, name)) for d, _, names in
               os.walk(shipped.MODELS_DIR) for name in names)
    assert size < MAX_SHIPPED_MB * 1e6


@pytest.mark.parametrize("model_id", shipped.model_ids())
def test_each_shipped_model_says_where_it_came_from(model_id):
    spec = exported.read_spec(shipped.export_dirs(model_id)[0])
    release = spec.release
    assert spec.model_id == model_id and re.fullmatch(r".+-r\d+", model_id)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", release["commit"])
    assert "benchmarks/quality.py" in release["command"]
    assert release["trained_on"] and all(
        source["photos"] > 0 and source["terms"] != "not recorded"
        for source in release["trained_on"].values())
    assert "coffee.png" in release["held_out"]
    if spec.bit_depth == 8:
        against_jpeg = release["held_out_bd"]["as_given"]["model"]["jpeg"]
        assert isinstance(against_jpeg["bd_rate"], float)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """Two photos the shipped models never saw, compressed and decompressed
    by the jobs with no model named."""
    root = tmp_path_factory.mktemp("bucket")
    photos_dir = root / "photos"
    photos_dir.mkdir()
    Image.open(os.path.join(sample_data.SAMPLES_DIR, "coffee.png")).save(photos_dir / "coffee.png")
    Image.fromarray(photos.load("motorcycle_left.png")[:320, :400]).save(
        photos_dir / "motorcycle.png")
    with contextlib.redirect_stdout(io.StringIO()):
        compress.run([f"--input={photos_dir}/*.png", f"--output={root}/bits",
                      f"--target_bpp={TARGET_BPP}", *BEAM])
        decompress.run([f"--input={root}/bits/*.jpg", f"--output={root}/restored", *BEAM])
    with open(root / "bits" / "manifest.jsonl") as f:
        records = {os.path.basename(r["source"]): r for r in map(json.loads, f)}
    return root, records


def _largest_plain_jpeg(source: np.ndarray, max_bytes: int) -> tuple[int, float]:
    """(bytes, PSNR) of the largest plain JPEG (Pillow, as the fallback) within `max_bytes`."""
    best = None
    for quality in range(1, 101):
        data = alternatives.plain_jpeg(source, quality)
        if len(data) > max_bytes:
            break
        best = len(data), float(metrics.psnr(alternatives.pillow_decode(data)[None],
                                             source[None], 8)[0])
    return best


@pytest.mark.parametrize("name", ["coffee.png", "motorcycle.png"])
def test_a_bucket_compresses_and_decompresses_with_no_model_named(bucket, name):
    root, records = bucket
    record = records[name]
    source = np.asarray(Image.open(root / "photos" / name).convert("RGB"))
    data = (root / "bits" / (name + ".jpg")).read_bytes()
    assert record["bpp"] <= TARGET_BPP and not record["missed"]
    assert 8 * len(data) <= TARGET_BPP * source.shape[0] * source.shape[1]
    restored = np.asarray(Image.open(root / "restored" / name))
    psnr = float(metrics.psnr(restored[None], source[None], 8)[0])
    assert psnr == pytest.approx(record["psnr"], abs=0.01)
    # Never worse than a plain JPEG of its size, less the header's comment
    # segment (marker, length, JSON), which every file of the job carries.
    comment = 4 + len(bottleneck_format.read_header(data).to_comment())
    _, plain_psnr = _largest_plain_jpeg(source, len(data) - comment)
    assert psnr >= plain_psnr
    # A file the shipped models wrote is a JPEG every viewer opens.
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_the_one_image_api_reads_the_jobs_files_as_the_job_does(bucket):
    root, records = bucket
    model = codec.load()
    for name, record in records.items():
        data = (root / "bits" / (name + ".jpg")).read_bytes()
        restored = np.asarray(Image.open(root / "restored" / name))
        np.testing.assert_array_equal(model.decompress(data), restored)
        # The API's own file for the photo: the same choice as the job's, given
        # the stamp the job's header keeps (its bytes count against the rate).
        source = read_source((root / "photos" / name).read_bytes(), 8,
                             stamp=bottleneck_format.read_header(data).source_stamp)
        header = model.encode(source, target_bpp=TARGET_BPP).header
        assert (header.model_id, header.qstep, header.psnr) == (
            record["model_id"], record["qstep"] or record["quality"], record["psnr"])


def test_the_shipped_high_bit_depth_model_keeps_more_than_8_bits():
    model = codec.load("hbd-x1-r1")
    source = block_sum(np.asarray(Image.open(
        os.path.join(sample_data.SAMPLES_DIR, "coffee.png")).convert("RGB"))[:256, :384], 2)
    spec = next(iter(model.specs.values()))
    restored = model.decompress(model.compress(source, qstep=spec.qstep))
    assert restored.dtype == np.uint16 and restored.max() < 2 ** spec.bit_depth
    assert float(metrics.psnr(restored[None], source[None], spec.bit_depth)[0]) > 30

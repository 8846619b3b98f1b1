"""Compress then decompress, end to end, for high-bit-depth photographs.

Sources are 10-bit photographs (2x2 block sums of 8-bit ones, as the dataset
job synthesises them) and one 12-bit TIFF, through a 10-bit `high_bit_depth`
sandwich (untrained, so the baseline is a known answer) in tiles. The
decompressed 16-bit PNGs must show, image by image, the bpp the manifest
records and the PSNR the evaluator computes; bottlenecks of another model,
damaged ones and plain JPEGs are refused with a reason each.
"""
import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
import tifffile
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from codec import bottleneck_format, exported
from pipelines import batch_jobs, compress, decompress, evaluate, jobs
from sandwich.samples import block_sum
from sandwich import metrics, scenarios
from sandwich.image_io import decode_image, encode_png16, png_chunks
from tests import photos
from tests.sandwich_exports import export_sandwich

MODEL_ID = "hbd10-untrained"
QSTEP = 6
TILING = ["--tile=64", "--halo=32"]
RUNNER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
SOURCES = {"coffee.png": "coffee.png", "nested/chelsea.png": "chelsea.png",
           "rocket.png": "rocket.jpg"}
REFUSED = {"foreign.jpg": "not by a model of the set",
           "planes.jpg": "jpeg_mode 'planes' differs from the model's 'ycbcr-420'",
           "bad_identity.jpg": "an identity header names no scenario: high_bit_depth works at "
                               "full resolution (factor 1), got 2",
           "truncated.jpg": "truncated",
           "plain.jpg": "not a sandwich bottleneck", "empty.jpg": "empty file"}


def _model():
    return export_sandwich("high_bit_depth", model_id=MODEL_ID, bit_depth=10)


def _metadata(path):
    """The FileMetadata a job's MatchFiles gives of `path`."""
    return FileSystems.get_filesystem(str(path)).metadata(str(path))


def _quiet(job, argv):
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        counts = job.run(argv)
    return counts, printed.getvalue()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Ten-bit photographs (and a 12-bit TIFF), and an 8-bit one the model cannot take."""
    root = tmp_path_factory.mktemp("sources")
    (root / "nested").mkdir()
    for name, photo in SOURCES.items():
        (root / name).write_bytes(encode_png16(block_sum(photos.load(photo), 2), 10))
    astronaut = block_sum(photos.load("astronaut.png")[:250, :330], 2).astype(np.uint16)
    tifffile.imwrite(root / "deep.tif", astronaut << 2, photometric="rgb")  # 12 bits
    Image.fromarray(photos.load("chelsea.png")).save(root / "eight_bit.png")
    return root


@pytest.fixture(scope="module")
def round_trip(sources, tmp_path_factory):
    """Compresses the sources, adds files the decompressor must refuse, decompresses."""
    bits, restored = tmp_path_factory.mktemp("bits"), tmp_path_factory.mktemp("restored")
    # Directories as --input: every file under them, and for decompress every
    # .jpg under it, not the manifest and dead letters compress wrote beside them.
    compressed = _quiet(compress, [f"--input={sources}", f"--output={bits}",
                                   f"--model={_model()}", f"--qstep={QSTEP}", *TILING, *RUNNER])
    good = (bits / "coffee.png.jpg").read_bytes()
    foreign = dataclasses.replace(bottleneck_format.read_header(good), model_id="someone-else")
    (bits / "foreign.jpg").write_bytes(
        bottleneck_format.encode(np.asarray(Image.open(io.BytesIO(good))), foreign))
    # The same model's header, but coded as RGB planes: its post-processor
    # was trained on YCbCr 4:2:0 and must not decode it.
    planes = dataclasses.replace(bottleneck_format.read_header(good), jpeg_mode="planes")
    (bits / "planes.jpg").write_bytes(
        bottleneck_format.encode(np.asarray(Image.open(io.BytesIO(good))), planes))
    # An identity header (no model decodes it) that claims a factor its
    # scenario cannot have; the JPEG is sized for it, so only the claim is wrong.
    half = np.asarray(Image.open(io.BytesIO(good)))[::2, ::2]
    bad_identity = dataclasses.replace(bottleneck_format.read_header(good), model_id="identity",
                                       factor=2)
    (bits / "bad_identity.jpg").write_bytes(bottleneck_format.encode(half, bad_identity))
    (bits / "truncated.jpg").write_bytes(good[:len(good) // 2])
    Image.fromarray(np.asarray(Image.open(io.BytesIO(good)))).save(bits / "plain.jpg")
    (bits / "empty.jpg").write_bytes(b"")
    decompressed = _quiet(decompress, [f"--input={bits}/", f"--output={restored}",
                                       f"--model={_model()}", "--png_compression=9", *TILING,
                                       *RUNNER])
    return bits, restored, compressed, decompressed


def _source(sources, name):
    """The source as the model codes it: its pixels at the model's 10 bits."""
    image = decode_image((sources / name).read_bytes())
    return image.pixels >> (image.bit_depth - 10), image.bit_depth


def test_every_file_is_accounted_for(round_trip):
    _, restored, (compressed, _), (decompressed, printed) = round_trip
    assert (compressed["inputs"], compressed["written"], compressed["dead_letters"]) == (5, 4, 1)
    assert decompressed["inputs"] == 4 + len(REFUSED)
    assert (decompressed["written"], decompressed["dead_letters"]) == (4, len(REFUSED))
    assert f"dead letters (read_bottleneck {len(REFUSED)})" in printed
    names = sorted(str(p.relative_to(restored)) for p in restored.rglob("*.png"))
    assert names == sorted([*SOURCES, "deep.tif.png"])


def test_input_directory_means_the_files_under_it(round_trip, sources):
    bits, restored, _, _ = round_trip
    flags = [f"--output={restored}", f"--model={_model()}"]
    for given in (str(bits), f"{bits}/"):
        assert decompress.parse_args([f"--input={given}", *flags])[0].input == f"{bits}/**.jpg"
    assert compress.parse_args([f"--input={sources}", *flags])[0].input == f"{sources}/**"
    # A glob or a single file is taken as given.
    for given in (f"{bits}/*.jpg", str(bits / "coffee.png.jpg")):
        assert decompress.parse_args([f"--input={given}", *flags])[0].input == given


def test_refusals_name_the_reason(round_trip, sources):
    bits, restored, _, _ = round_trip
    letters = {json.loads(line)["path"]: json.loads(line)["reason"]
               for line in (restored / jobs.DEAD_LETTER_FILE).open()}
    assert set(letters) == {str(bits / name) for name in REFUSED}
    for name, reason in REFUSED.items():
        assert reason in letters[str(bits / name)]
    assert "'someone-else'" in letters[str(bits / "foreign.jpg")]
    [shallow] = [json.loads(line) for line in (bits / jobs.DEAD_LETTER_FILE).open()]
    assert shallow["path"] == str(sources / "eight_bit.png")
    assert "8 bits per sample" in shallow["reason"]


def test_reconstructions_are_16_bit_pngs_at_the_source_size(round_trip, sources):
    _, restored, _, _ = round_trip
    for name in [*SOURCES, "deep.tif"]:
        source, _ = _source(sources, name)
        png = (restored / decompress.png_name(name + jobs.BOTTLENECK_SUFFIX)).read_bytes()
        image = decode_image(png)
        assert png[24] == 16, "a 16-bit PNG"  # IHDR bit depth
        assert image.bit_depth == 10 and image.pixels.shape == source.shape
        assert _zlib_level_class(png) == 3, "written at the --png_compression asked for"


def _zlib_level_class(png: bytes) -> int:
    """The FLEVEL bits of the PNG's zlib stream: 0 for levels 0-1, 1 for 2-5,
    2 for 6, 3 for 7-9 (RFC 1950)."""
    return dict(png_chunks(png))[b"IDAT"][1] >> 6


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_every_png_compression_level_keeps_the_pixels(bit_depth):
    pixels = photos.load("coffee.png")[:96, :128].astype(np.uint16) << (bit_depth - 8)
    sizes = {}
    for level, level_class in ((0, 0), (1, 0), (6, 2), (9, 3)):
        png = decompress.encode_png(pixels if bit_depth > 8 else pixels.astype(np.uint8),
                                    bit_depth, {"model_id": "m"}, compression=level)
        image = decode_image(png)
        np.testing.assert_array_equal(image.pixels, pixels)
        assert image.bit_depth == bit_depth and _zlib_level_class(png) == level_class
        sizes[level] = len(png)
    assert sizes[0] > sizes[1] > sizes[9]


def test_bpp_and_psnr_agree_with_manifest_and_evaluator(round_trip, sources):
    """Image by image: the decompressed PNG's PSNR is the evaluator's, the
    file's bpp is the manifest's and the evaluator's; and, the model being
    untrained, both are the baseline's (plus the header's bytes)."""
    bits, restored, _, _ = round_trip
    manifest = {json.loads(line)["source"]: json.loads(line)
                for line in (bits / jobs.MANIFEST_FILE).open()}
    model = exported.ExportedSandwich.load(_model(), tile=64, halo=32)
    scenario = scenarios.make("high_bit_depth", bit_depth=10)
    for name in [*SOURCES, "deep.tif"]:
        source, source_bits = _source(sources, name)
        record = manifest[str(sources / name)]
        bottleneck = bits / (name + jobs.BOTTLENECK_SUFFIX)
        png = restored / decompress.png_name(name + jobs.BOTTLENECK_SUFFIX)
        psnr = metrics.psnr(decode_image(png.read_bytes()).pixels[None], source[None], 10)[0]
        pixels = source.shape[0] * source.shape[1]
        assert record["source_bit_depth"] == source_bits
        assert record["bpp"] == 8 * bottleneck.stat().st_size / pixels

        stamp = batch_jobs.source_stamp(_metadata(sources / name))
        [(eval_bits, eval_psnr)] = evaluate.measure_sandwich(model, source, source_bits, [QSTEP],
                                                             stamp)
        assert eval_bits == 8 * bottleneck.stat().st_size
        assert eval_psnr == pytest.approx(psnr, abs=1e-9)

        base_bits, base_psnr = evaluate.measure_baseline(scenario, source, QSTEP)
        comment = bottleneck_format.read_header(bottleneck.read_bytes()).to_comment()
        assert eval_bits == base_bits + 8 * (4 + len(comment))  # COM marker, length, text
        assert psnr == pytest.approx(base_psnr, abs=1e-9)


def test_a_rerun_keeps_complete_pngs_and_redoes_truncated_ones(round_trip, tmp_path):
    """What `SkipCompleted` decides from a PNG's first and last bytes alone."""
    bits, restored, _, _ = round_trip
    config, _ = decompress.parse_args([f"--input={bits}/**.jpg", f"--output={restored}",
                                       f"--model={_model()}"])
    complete = restored / "coffee.png"
    existing = batch_jobs.existing_output(str(complete))
    record = decompress.CompletedPng(config)(_metadata(bits / "coffee.png.jpg"), existing)
    image = decode_image(complete.read_bytes())
    assert (record.height, record.width, record.bit_depth) == (*image.pixels.shape[:2], 10)
    assert existing.size == complete.stat().st_size
    truncated = tmp_path / "coffee.png"
    truncated.write_bytes(complete.read_bytes()[:-100])
    assert decompress.CompletedPng(config)(
        _metadata(bits / "coffee.png.jpg"), batch_jobs.existing_output(str(truncated))) is None
    assert batch_jobs.existing_output(str(tmp_path / "missing.png")) is None


def test_a_png_that_cannot_be_written_is_a_dead_letter(round_trip, tmp_path):
    """The writer runs on threads of its own; its failures still come back
    as dead letters, and the account still adds up."""
    bits = round_trip[0]
    (tmp_path / "coffee.png" / "in-the-way").mkdir(parents=True)
    counts, printed = _quiet(decompress, [f"--input={bits}/*.png.jpg", f"--output={tmp_path}",
                                          f"--model={_model()}", *TILING, *RUNNER])
    assert (counts["inputs"], counts["written"], counts["dead_letters"]) == (2, 1, 1)
    assert "dead letters (write 1)" in printed
    [letter] = [json.loads(line) for line in (tmp_path / jobs.DEAD_LETTER_FILE).open()]
    assert letter["path"] == str(bits / "coffee.png.jpg") and letter["step"] == "write"
    assert decode_image((tmp_path / "rocket.png").read_bytes()).bit_depth == 10


@pytest.mark.parametrize("changes, reason", [
    ({"scenario": "plain-jpeg"}, "unknown scenario 'plain-jpeg'"),
    ({"scenario": "high_bit_depth", "factor": 2}, "high_bit_depth works at full resolution"),
    ({"scenario": "high_bit_depth", "bit_depth": 8, "source_bit_depth": 8},
     "high_bit_depth needs a source bit depth above 8"),
    ({"source_bit_depth": 8}, "source_bit_depth 8 is below the model's 10"),
])
def test_an_identity_header_must_name_a_scenario_that_exists(changes, reason):
    """An identity file is decoded by the scenario its header names, with no
    model to check it against: the header itself must describe a scenario
    that exists, or the file is refused with the reason."""
    spec = exported.read_spec(_model())
    header = bottleneck_format.Header.identity(spec, 6.0, 20, 24, 10)
    header.check_model({})  # no model of the set needed
    with pytest.raises(bottleneck_format.BottleneckError, match=reason):
        dataclasses.replace(header, **changes).check_model({spec.model_id: spec})


def test_an_untrained_model_s_files_are_its_identity_s_and_decode_to_its_pixels(
        sources, tmp_path):
    """To a target, the untrained 10-bit model makes its identity's pixels,
    so the identity wins every image: on a tie (it needs no model), or
    outright where its shorter id leaves room for a finer step, or its
    wider range of steps reaches a better one. Decompress restores each
    file to the pixels of the model's own path (the scenario's scale back:
    x 4 plus half a step), at the PSNR the manifest records."""
    bits, restored = tmp_path / "bits", tmp_path / "restored"
    _quiet(compress, [f"--input={sources}/*.png", f"--output={bits}", f"--model={_model()}",
                      "--target_bpp=1.5", *TILING, *RUNNER])
    manifest = {json.loads(line)["source"]: json.loads(line)
                for line in (bits / jobs.MANIFEST_FILE).open()}
    assert {r["winner"] for r in manifest.values()} == {"identity"}
    counts, _ = _quiet(decompress, [f"--input={bits}", f"--output={restored}",
                                    f"--model={_model()}", *TILING, *RUNNER])
    assert counts["written"] == len(manifest) == 2  # coffee.png, rocket.png; not the 8-bit one
    model = exported.ExportedSandwich.load(_model(), tile=64, halo=32)
    for path, record in manifest.items():
        name = path[len(str(sources)) + 1:]
        source, _ = _source(sources, name)
        header, decoded = bottleneck_format.decode((bits / (name + jobs.BOTTLENECK_SUFFIX)).read_bytes())
        assert (header.model_id, header.bit_depth) == ("identity", 10)
        assert set(record["margins"]) == {"model"} and record["margins"]["model"] >= 0  # no plain JPEG
        png = decode_image((restored / decompress.png_name(name + jobs.BOTTLENECK_SUFFIX)).read_bytes())
        assert png.bit_depth == 10
        np.testing.assert_array_equal(
            png.pixels, model.postprocess(decoded, source.shape[:2], header.qstep))
        assert float(metrics.psnr(png.pixels[None], source[None], 10)[0]) == pytest.approx(
            record["psnr"], abs=0.005)


@pytest.mark.parametrize("scenario", [
    scenarios.make("high_res", factor=1), scenarios.make("high_res", factor=2),
    scenarios.make("high_res", factor=3), scenarios.make("high_bit_depth", bit_depth=10)],
    ids=lambda s: f"{s.name}-x{s.factor}-{s.bit_depth}bit")
def test_the_identity_in_tiles_is_the_scenario_on_the_whole_image(scenario):
    """The identity runs in tiles for bounded memory, with a halo that
    covers its filters: both ways, tiles of 48 pixels (odd counts and
    ragged edges at these sizes) give the scenario's whole-image result
    exactly, so compress and decompress agree whatever their tiles."""
    import tensorflow as tf

    coffee = photos.load("coffee.png")
    source = coffee[:131, :197] if scenario.bit_depth == 8 else block_sum(coffee[:262, :394], 2)
    header = bottleneck_format.Header("identity", scenario.name, scenario.bit_depth,
                                      scenario.factor, *source.shape[:2], 12.0,
                                      scenario.bit_depth, scenario.jpeg_mode.name)
    whole = scenarios.codec_input(scenario.to_bottleneck(
        tf.cast(source[None], tf.float32)))[0].numpy()
    np.testing.assert_array_equal(bottleneck_format.identity_bottleneck(header, source, tile=48),
                                  whole)
    decoded = bottleneck_format.decode(bottleneck_format.encode(whole, header))[1]
    reconstruction = scenario.to_source(scenario.from_bottleneck(
        decoded[None], source.shape[:2]))[0].numpy()
    np.testing.assert_array_equal(
        bottleneck_format.identity_reconstruction(header, decoded, tile=48), reconstruction)

"""One test per defect of issue 10: untrusted files and names, each met at its boundary.

Job-level checks (each job on 200+ bad files, the account) are in
`test_bad_input_jobs`; property-based ones in `test_fuzz`; names from
`gs://` in `test_untrusted_names_gcs`.
"""
import dataclasses
import io
import json

import numpy as np
import pytest
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from codec import api, bottleneck_format, tiling
from pipelines import batch_jobs, compress, decompress
from pipelines.dead_letters import Rejected
from pipelines.paths import relative_path
from sandwich.specs import ModelSpec
from tests.sandwich_exports import export_sandwich

SPEC = ModelSpec(model_id="m", scenario="high_res", bit_depth=8, factor=2, qstep=16.0)
HEADER = bottleneck_format.Header.of(SPEC, 16.0, 20, 24, 8)


def _comment(**changes) -> bytes:
    return json.dumps({**json.loads(HEADER.to_comment()), **changes}).encode()


def _metadata(path):
    return FileSystems.get_filesystem(str(path)).metadata(str(path))


@pytest.mark.parametrize("comment", [
    b"[" * 32_000 + b"]" * 32_000,  # RecursionError in json
    _comment(height=1e400),  # inf: OverflowError in int()
    _comment(height=10**30), _comment(height=True), _comment(height=20.5),
    _comment(width="24"), _comment(qstep=0), _comment(qstep=float("nan")),
    _comment(bit_depth=64), _comment(model_id=""), _comment(sandwich=True),
])
def test_a_malformed_or_unbounded_header_is_a_bottleneck_error(comment):
    with pytest.raises(bottleneck_format.BottleneckError) as raised:
        bottleneck_format.Header.from_comment(comment)
    assert raised.value.reason.startswith(("bottleneck header", "not a sandwich", "bottleneck format"))


def _bottleneck(header, size=(10, 12)) -> bytes:
    return bottleneck_format.encode(np.full((*size, 3), 99, np.uint8), header)


def test_a_header_claiming_more_than_its_bottleneck_covers_is_refused():
    """It used to be decoded, and the uncovered rows filled from `np.empty`."""
    claims_more = dataclasses.replace(HEADER, height=40, width=48)
    with pytest.raises(bottleneck_format.BottleneckError, match="does not cover"):
        bottleneck_format.decode(_bottleneck(claims_more))
    header, pixels = bottleneck_format.decode(_bottleneck(HEADER))
    assert header == HEADER and pixels.shape == (10, 12, 3)


def test_upscaling_to_a_size_the_bottleneck_does_not_cover_is_refused():
    coarse = np.zeros((10, 12, 3), np.uint8)
    upscale = lambda tile, size: np.ones((*size, 3), np.uint8)
    with pytest.raises(ValueError, match="is not that of"):
        tiling.upscale_tiled(upscale, coarse, (40, 48), factor=2, tile=8, halo=0)
    assert (tiling.upscale_tiled(upscale, coarse, (20, 23), factor=2, tile=8, halo=0) == 1).all()


def test_a_claimed_size_above_max_pixels_is_refused_before_decoding():
    with pytest.raises(bottleneck_format.BottleneckError, match="decompression bomb"):
        bottleneck_format.decode(_bottleneck(HEADER), max_pixels=20 * 24 - 1)
    config, _ = decompress.parse_args(["--input=x", "--output=y", "--max_pixels=1000",
                                       f"--model={export_sandwich('high_res', model_id='hr-untrained')}"])
    assert config.max_pixels == 1000


@pytest.mark.parametrize("field, value", [("bit_depth", 10), ("factor", 4),
                                          ("scenario", "high_bit_depth"), ("model_id", "other")])
def test_a_header_that_disagrees_with_the_model_is_refused(field, value):
    """A bit depth other than the model's used to crash `encode_png16`."""
    with pytest.raises(bottleneck_format.BottleneckError, match=field.split("_")[0]):
        dataclasses.replace(HEADER, **{field: value}).check_model({SPEC.model_id: SPEC})
    HEADER.check_model({SPEC.model_id: SPEC})


def test_a_source_too_wide_for_a_jpeg_bottleneck_is_rejected_with_the_reason():
    api.check_jpeg_size(1000, 131_000, 2)  # a 65500-pixel bottleneck fits
    with pytest.raises(Rejected, match="too large for JPEG"):
        api.check_jpeg_size(1000, 70_000, 1)


@pytest.fixture(scope="module")
def compress_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("stale")
    model = export_sandwich("high_res", model_id="hr-untrained")
    config, _ = compress.parse_args([f"--input={root}/in/*", f"--output={root}/out",
                                     f"--model={model}", "--qstep=16"])
    return root, config


def _write_bottleneck(path, header):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bottleneck_format.jpeg.encode(np.zeros((10, 12, 3), np.uint8), 16,
                                         comment=header.to_comment())
    path.write_bytes(data)


@pytest.mark.parametrize("qstep", [0.0, float("nan"), -1.0])
def test_an_existing_output_with_a_bad_qstep_is_redone(compress_config, qstep):
    root, config = compress_config
    source = root / "in" / "a.png"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"source")
    output = root / "out" / "a.png.jpg"
    header = bottleneck_format.Header.of(config.specs[0], 16, 20, 24, 8,
                                         batch_jobs.source_stamp(_metadata(source)))
    _write_bottleneck(output, dataclasses.replace(header, qstep=qstep))
    existing = batch_jobs.existing_output(str(output))
    assert compress.CompletedBottleneck(config)(_metadata(source), existing) is None
    _write_bottleneck(output, header)
    existing = batch_jobs.existing_output(str(output))
    assert compress.CompletedBottleneck(config)(_metadata(source), existing) is not None


def test_a_changed_source_is_compressed_again(compress_config):
    root, config = compress_config
    source = root / "in" / "b.png"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"first version")
    output = root / "out" / "b.png.jpg"
    _write_bottleneck(output, bottleneck_format.Header.of(
        config.specs[0], 16, 20, 24, 8, batch_jobs.source_stamp(_metadata(source))))
    done = compress.CompletedBottleneck(config)
    assert done(_metadata(source), batch_jobs.existing_output(str(output))) is not None
    source.write_bytes(b"second, longer version")
    assert done(_metadata(source), batch_jobs.existing_output(str(output))) is None


def test_a_png_of_another_model_or_bottleneck_is_decompressed_again(tmp_path):
    model = export_sandwich("high_res", model_id="hr-untrained")
    config, _ = decompress.parse_args([f"--input={tmp_path}/*.jpg", f"--output={tmp_path}/out",
                                       f"--model={model}"])
    bottleneck = tmp_path / "a.png.jpg"
    bottleneck.write_bytes(b"bottleneck")
    stamp = batch_jobs.source_stamp(_metadata(bottleneck))
    pixels = np.zeros((4, 5, 3), np.uint8)
    done = decompress.CompletedPng(config)

    def existing(provenance):
        png = tmp_path / "a.png"
        png.write_bytes(decompress.encode_png(pixels, 8, provenance))
        return batch_jobs.existing_output(str(png))

    record = done(_metadata(bottleneck), existing({"model_id": "hr-untrained", "bottleneck": stamp}))
    assert (record.height, record.width, record.bit_depth) == (4, 5, 8)
    assert done(_metadata(bottleneck), existing({"model_id": "other", "bottleneck": stamp})) is None
    assert done(_metadata(bottleneck), existing({"model_id": "hr-untrained",
                                                 "bottleneck": "changed"})) is None
    assert done(_metadata(bottleneck), existing(None)) is None


def test_an_output_name_with_glob_characters_finds_only_itself(tmp_path):
    """`FileSystems.match` read `x[ab].png.jpg` as a glob and found `xa.png.jpg`."""
    (tmp_path / "xa.png.jpg").write_bytes(b"\xff\xd8 another file \xff\xd9")
    assert batch_jobs.existing_output(str(tmp_path / "x[ab].png.jpg")) is None
    assert batch_jobs.existing_output(str(tmp_path / "x*.png.jpg")) is None
    (tmp_path / "x[ab].png.jpg").write_bytes(b"itself")
    assert batch_jobs.existing_output(str(tmp_path / "x[ab].png.jpg")).head == b"itself"


@pytest.mark.parametrize("name", [
    "photos/../../../../tmp/evil.png", "../evil.png", "a/./b.png", "a//b.png", "a/..",
    "a\x00.png", "a\n.png", "\u202eevil.png", "x" * 300 + ".png", ""])
def test_input_names_that_could_escape_the_output_are_rejected(name):
    with pytest.raises(Rejected, match="unsafe name"):
        relative_path("gs://bucket/in/" + name, "gs://bucket/in/")
    with pytest.raises(Rejected, match="unsafe name"):
        batch_jobs.output_path("gs://bucket/in/" + name, "gs://bucket/in/**", "/out",
                               lambda r: r + ".jpg")


def test_ordinary_names_map_below_the_output():
    for name in ["a.png", "sub/b c.png", "odd[1].png", "é 日本.png", ".hidden.png", "a..b.png"]:
        assert batch_jobs.output_path("gs://b/in/" + name, "gs://b/in/*", "/out",
                                      lambda r: r + ".jpg") == f"/out/{name}.jpg"
    with pytest.raises(Rejected, match="not below the input directory"):
        relative_path("gs://b/elsewhere/a.png", "gs://b/in/")


def test_decompress_names_that_restore_to_one_png_share_it():
    """Why the jobs keep one input per output (`batch_jobs.read_files`)."""
    assert decompress.png_name("x.jpg") == decompress.png_name("x.png.jpg") == "x.png"


def test_bottleneck_comment_stays_readable_by_plain_pillow():
    with Image.open(io.BytesIO(_bottleneck(HEADER))) as im:
        assert bottleneck_format.Header.from_comment(im.info["comment"]) == HEADER


def test_the_naming_step_makes_traversing_names_dead_letters_and_keeps_one_per_output():
    """`read_files`' steps on a real runner, fed the FileMetadata that
    matching `gs://b/photos/**` gives for objects a bucket can hold."""
    import apache_beam as beam
    from apache_beam.io.filesystem import FileMetadata
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    names = ["ok.png", "../../../../tmp/evil.png", "a/../../x.png", "x.jpg", "x.png.jpg"]
    target = lambda path: batch_jobs.output_path(path, "gs://b/photos/**", "/out",
                                                 decompress.png_name)
    with TestPipeline(runner="FnApiRunner") as pipeline:
        matched = pipeline | beam.Create([FileMetadata(f"gs://b/photos/{n}", 1, 0) for n in names])
        named, unsafe = matched | "Names" >> batch_jobs.TryFlatMap(
            batch_jobs.NameOutput("test", target), step="output_name",
            path_of=lambda metadata: metadata.path)
        unique, shared = (named | beam.GroupByKey() | beam.FlatMap(batch_jobs._one_per_output)
                          | "Keep" >> batch_jobs.TryFlatMap(
                              batch_jobs._keep_first, step="output_collision",
                              path_of=lambda pair: pair[0].path))
        assert_that(unsafe | "U" >> beam.Map(lambda d: (d.path, "unsafe name" in d.reason)),
                    equal_to([("gs://b/photos/../../../../tmp/evil.png", True),
                              ("gs://b/photos/a/../../x.png", True)]), label="unsafe")
        assert_that(shared | "S" >> beam.Map(lambda d: (d.path, "gs://b/photos/x.jpg" in d.reason)),
                    equal_to([("gs://b/photos/x.png.jpg", True)]), label="shared")
        assert_that(unique | "K" >> beam.Map(lambda m: m.path),
                    equal_to(["gs://b/photos/ok.png", "gs://b/photos/x.jpg"]), label="kept")

"""The steps the jobs share (`pipelines.jobs`, `pipelines.batch_jobs`), each
tested on its own with TestPipeline and assert_that."""
import io
import json
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import batch_jobs, jobs
from pipelines.beam_options import pipeline_options
from pipelines.dead_letters import DeadLetter
from sandwich.image_io import encode_png16

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _pipeline():
    return test_pipeline.TestPipeline(options=pipeline_options(IN_PROCESS))


def _png8(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), value, np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _summary(source):
    """What a test can compare of a `codec.Source`: name, container, depths, a value."""
    return (source.path.rsplit("/", 1)[-1], source.pixels.dtype.name,
            source.source_bit_depth, int(source.pixels[0, 0, 0]))


def test_decode_sources_fits_the_model_depth_and_dead_letters_the_rest(tmp_path):
    (tmp_path / "eight.png").write_bytes(_png8(200))
    (tmp_path / "ten.png").write_bytes(encode_png16(np.full((6, 5, 3), 1000, np.uint16), 10))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with _pipeline() as pipeline:
        inputs, dead = (pipeline
                        | fileio.MatchFiles(str(tmp_path / "*"))
                        | fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED)
                        | jobs.DecodeSources("test", bit_depth=8, max_pixels=1000))
        # The 10-bit source is rounded down to 8 bits (1000 >> 2), as the baseline does.
        assert_that(inputs | beam.Map(_summary),
                    equal_to([("eight.png", "uint8", 8, 200), ("ten.png", "uint8", 10, 250)]),
                    label="Inputs")
        assert_that(dead, equal_to([DeadLetter(str(tmp_path / "junk.png"),
                                               "not a PNG, TIFF, JPEG, WebP or AVIF file", "decode")]),
                    label="DeadLetters")


def test_decode_sources_refuses_a_shallower_source(tmp_path):
    (tmp_path / "eight.png").write_bytes(_png8(7))
    with _pipeline() as pipeline:
        inputs, dead = (pipeline
                        | fileio.MatchFiles(str(tmp_path / "*"))
                        | fileio.ReadMatches()
                        | jobs.DecodeSources("test", bit_depth=10, max_pixels=1000))
        assert_that(inputs, equal_to([]), label="Inputs")
        assert_that(dead | beam.Map(lambda letter: letter.reason),
                    equal_to(["source has 8 bits per sample, the dataset needs 10"]),
                    label="DeadLetters")


def _first_name(relative: str) -> str:
    """`c.png` and `c.tif` both -> `c.out`: two inputs, one output."""
    return relative.split(".")[0] + ".out"


def _done_if_not_empty(metadata, existing: batch_jobs.ExistingOutput):
    return f"done {existing.path.rsplit('/', 1)[-1]}" if existing.size else None


def test_read_files_splits_todo_done_and_shared_outputs(tmp_path):
    sources, output = tmp_path / "in", tmp_path / "out"
    sources.mkdir()
    output.mkdir()
    for name in ("a.png", "b.png", "c.png", "c.tif", "d.png"):
        (sources / name).write_bytes(b"x")
    (output / "b.out").write_bytes(b"complete")
    (output / "d.out").write_bytes(b"")  # partial: redone

    def target(path):
        return batch_jobs.output_path(path, str(sources / "*"), str(output), _first_name)

    with _pipeline() as pipeline:
        todo, done, dead = batch_jobs.read_files(
            pipeline, str(sources / "*"), "test", target,
            batch_jobs.SkipCompleted("test", target, _done_if_not_empty))
        assert_that(todo | beam.Map(lambda f: f.metadata.path.rsplit("/", 1)[-1]),
                    equal_to(["a.png", "c.png", "d.png"]), label="Todo")
        assert_that(done, equal_to(["done b.out"]), label="Done")
        assert_that(dead, equal_to([DeadLetter(
            str(sources / "c.tif"),
            f"its output name is already that of {sources / 'c.png'}; rename one of them",
            "output_collision")]), label="DeadLetters")


class _Line:
    def __init__(self, n):
        self.n = n

    def to_json(self):
        return json.dumps({"n": self.n})


def test_write_json_lines_writes_one_file_of_records(tmp_path):
    path = str(tmp_path / "records.jsonl")
    with _pipeline() as pipeline:
        _ = pipeline | beam.Create([1, 2, 3]) | beam.Map(_Line) | batch_jobs.WriteJsonLines(path)
    assert sorted(json.loads(line)["n"] for line in open(path)) == [1, 2, 3]


def test_a_job_run_as_a_command_exits_with_its_heap_frozen():
    """Its exit then skips collecting what the imports made; a handler
    registered before the job's runs after the job's own (last in, first out)."""
    script = ("import atexit, gc\n"
              "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
              "from pipelines import jobs\n"
              "jobs.main(lambda argv: print('ran', argv), ['--verbose'])\n"
              "print('frozen after the run:', gc.get_freeze_count() > 0)\n")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert ran.stdout.split("\n")[:3] == [
        "ran ['--verbose']", "frozen after the run: False", "frozen at exit: True"]


def test_the_model_jobs_launch_without_tensorflow():
    """Their launcher only builds the pipeline: where the workers are
    processes (or Dataflow's), importing TensorFlow there would cost each
    run about 2 s of a core for nothing."""
    code = ("import sys; from pipelines import compress, decompress; "
            "assert 'tensorflow' not in sys.modules, 'imported tensorflow'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_source_megapixels_come_from_headers_or_else_from_sizes(tmp_path):
    """A header gives the size without decoding, even of a file cut short
    after it; what Pillow cannot open is weighed by its bytes."""
    Image.fromarray(np.zeros((600, 400, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes()[:100])
    (tmp_path / "notes.png").write_bytes(b"x" * (jobs.BYTES_PER_MEGAPIXEL // 2))
    assert sorted(jobs.source_megapixels(f"{tmp_path}/*")) == [0.24, 0.24, 0.5]


def test_a_remote_file_is_weighed_by_its_size_unread(monkeypatch):
    monkeypatch.setattr(Image, "open", lambda path: pytest.fail(f"opened {path}"))
    assert jobs._megapixels("gs://bucket/a.jpg", 3 * jobs.BYTES_PER_MEGAPIXEL) == 3

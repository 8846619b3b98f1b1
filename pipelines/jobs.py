"""The shape every Beam job of the project has, and the steps they share.

A job is a module with

- a `Config` (a `JobConfig`: `--input`, `--output` and the job's own flags,
  validated), made by `parse_args(argv)` from a `job_parser`;
- `build(pipeline, config)`: the job as a sentence of named steps;
- `run(argv, save_main_session, test_pipeline)`: parses, builds, runs to
  completion with `run_pipeline`, prints the account and returns it;
- `main(argv)`: `jobs.main(run, argv)`, the console script, which sets up
  logging (`sandwich.logs`) first.

The names and steps more than one job uses live here, not in a sibling job:
the output files every job writes (`dead_letters.jsonl`, `manifest.jsonl`),
the bottleneck suffix, the flags of a job that runs an export dir, and
`DecodeSources`, which turns files into model inputs for `compress` and
`evaluate`. The lower layer, `batch_jobs`, holds the file-to-file mapping,
reruns, the atomic write, the JSON-lines writer and the account.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import SetupOptions
from PIL import Image

from codec import api, exported
from codec import precision as codec_precision
from pipelines import batch_jobs, beam_options, process_exit
from pipelines.beam_options import pipeline_options
from pipelines.dead_letters import Rejected, TryFlatMap
from pipelines.paths import input_pattern
from sandwich import logs
from sandwich.specs import SpecError

DEAD_LETTER_FILE = "dead_letters.jsonl"
MANIFEST_FILE = "manifest.jsonl"
# What `compress` appends to a source's name, and `decompress` takes away.
BOTTLENECK_SUFFIX = ".jpg"
BEAM_FLAGS = ("Other flags go to Beam's PipelineOptions: --runner, --project, --region, "
              "--temp_location, --setup_file, --direct_num_workers, ...")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What every job is given: the input glob and the output directory."""

    input: str
    output: str

    def path(self, name: str) -> str:
        """The file `name` in the output directory."""
        return FileSystems.join(self.output, name)

    @property
    def dead_letter_path(self) -> str:
        return self.path(DEAD_LETTER_FILE)

    @property
    def manifest_path(self) -> str:
        """Where a job that maps files to files lists its outputs."""
        return self.path(MANIFEST_FILE)


def count_files(pattern: str) -> int:
    """How many files `pattern` (local or gs://) matches."""
    return len(FileSystems.match([pattern])[0].metadata_list)


# Bytes of a compressed photograph per megapixel, where its header is not
# read: a JPEG holds 0.2-0.6 MB, a PNG 2-3 MB (the bundled ones), so the
# estimate errs by about 3x either way.
BYTES_PER_MEGAPIXEL = 1 << 20


def source_megapixels(pattern: str) -> list[float]:
    """The megapixels of every file `pattern` (local or gs://) matches: the
    work that sizes a local run's workers (`beam_options.local_processes`).

    A local file's come from its image header (Pillow reads the size without
    decoding: tens of microseconds a file); a remote file's, or one whose
    header Pillow cannot read, from its size in the match's metadata at
    `BYTES_PER_MEGAPIXEL`, since a request per file would cost more than
    the choice it informs.
    """
    return [_megapixels(m.path, m.size_in_bytes)
            for m in FileSystems.match([pattern])[0].metadata_list]


def _megapixels(path: str, size_in_bytes: int) -> float:
    if FileSystems.get_scheme(path) in (None, "file"):
        try:
            # Only the size is read: a huge canvas is a large estimate, a damaged
            # EXIF no concern here (the decode step reports what it cannot read).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    return image.width * image.height / 1e6
        except Exception:  # Any header Pillow cannot read: the size tells instead.
            pass
    return size_in_bytes / BYTES_PER_MEGAPIXEL


class NoInputError(ValueError):
    """The job's `--input` matches no file."""


def check_input(pattern: str) -> None:
    """Raises `NoInputError` when `pattern` matches no file: a job would run
    on nothing and succeed, which a mistyped glob should not."""
    if not FileSystems.match([pattern], limits=[1])[0].metadata_list:
        raise NoInputError(f"no input matches {pattern}")


class JobParser(argparse.ArgumentParser):
    """A job's parser: what its own flags leave over goes to Beam, and a
    flag Beam does not know either is refused here (Beam would only warn,
    drop it and run, e.g. locally for a misspelt `--runer`)."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, beam_args = super().parse_known_args(args, namespace)
        if unknown := beam_options.unknown_options(beam_args):
            self.error("neither this job nor Beam knows " + "; ".join(unknown))
        return parsed, beam_args


def job_parser(doc: str, *, input_help: str, output_help: str,
               input_type: Callable[[str], str] = input_pattern) -> argparse.ArgumentParser:
    """The parser of a job's own flags, `--input` and `--output` first; the
    first line of the module's `doc` is its description. What its
    `parse_known_args` leaves over are flags Beam knows (`JobParser`)."""
    parser = JobParser(description=doc.split("\n", 1)[0], epilog=BEAM_FLAGS,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       parents=[logs.flag()])
    parser.add_argument("--input", required=True, type=input_type, help=input_help)
    parser.add_argument("--output", required=True, help=output_help)
    return parser


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every job that runs an export dir shares."""
    parser.add_argument("--tile", type=int,
                        help="processor tile side in source pixels; bounds memory per image "
                             f"(default {exported.DEFAULT_TILE}, or the nearest multiple "
                             "of 32 and of every model's factor)")
    parser.add_argument("--halo", type=int,
                        help="context around each tile in source pixels; hides tile seams "
                             f"(default {exported.DEFAULT_HALO}, or the next multiple of "
                             "32 and of every model's factor)")


def add_precision_flag(parser: argparse.ArgumentParser) -> None:
    """`--precision` of the jobs that serve files (compress, decompress); the
    evaluator measures the exports as exported, at float32."""
    parser.add_argument("--precision", choices=codec_precision.CHOICES,
                        default=codec_precision.AUTO,
                        help="what the processors run at: auto takes bfloat16 where the "
                             "worker's CPU has AVX512_BF16 or AMX and every model's spec "
                             "records a loss of at most "
                             f"{codec_precision.MAX_LOSS_DB} dB for it, else float32 "
                             "(codec.precision)")


def run_pipeline(build: Callable[[beam.Pipeline, object], None], config, beam_args: list[str],
                 save_main_session: bool = False, test_pipeline: beam.Pipeline | None = None):
    """Builds the job on `test_pipeline`, or on a pipeline of `beam_args`, and
    runs it to completion; returns the finished `PipelineResult`.

    The jobs' classes live in importable modules (their `__main__` re-imports
    the module by its package name), so the main session is pickled only
    when asked. An input glob that matches nothing is refused first
    (`check_input`).
    """
    check_input(config.input)
    if test_pipeline is None:
        options = pipeline_options(beam_args)
        if save_main_session:
            options.view_as(SetupOptions).save_main_session = True
        pipeline = beam.Pipeline(options=options)
    else:
        pipeline = test_pipeline
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def main(run: Callable, argv=None) -> int:
    """A job's console script: logging set up from `argv`'s `--verbose`, then
    `run`; the process's exit leaves its heap to the system (`process_exit`).
    An input glob that matches nothing, or a model that does not fit the
    job (`SpecError`: no export there, a set that cannot code), exits 2 with
    its message, as a bad flag does."""
    argv = sys.argv[1:] if argv is None else argv
    logs.set_up(argv)
    process_exit.freeze_heap_at_exit()
    try:
        run(argv)
    except (NoInputError, SpecError) as e:
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        return 2
    return 0


class DecodeSource:
    """ReadableFile -> `codec.Source` at the model's bit depth, with its path
    and stamp (`codec.api.read_source`); bad files raise."""

    def __init__(self, bit_depth: int, max_pixels: int, factor: int = 1):
        self._bit_depth, self._max_pixels, self._factor = bit_depth, max_pixels, factor

    def __call__(self, readable):
        yield api.read_source(readable.read(), self._bit_depth, max_pixels=self._max_pixels,
                              factor=self._factor, path=readable.metadata.path,
                              stamp=batch_jobs.source_stamp(readable.metadata))


def path_of_file(readable) -> str:
    """The path of a `ReadableFile`, for its dead letter."""
    return readable.metadata.path


class DecodeSources(beam.PTransform):
    """ReadableFiles -> (`codec.Source`s, dead letters of the files that are no
    usable image); the sources whose transparency was dropped are counted
    (`batch_jobs.ALPHA_DROPPED`) under the job's `namespace`."""

    def __init__(self, namespace: str, bit_depth: int, max_pixels: int, factor: int = 1):
        super().__init__()
        self._namespace = namespace
        self._decode = DecodeSource(bit_depth, max_pixels, factor)

    def expand(self, files):
        # `Rejected` covers `ImageDecodeError`; `OSError` a file gone since matched.
        sources, letters = files | TryFlatMap(self._decode, step="decode", path_of=path_of_file,
                                              errors=(Rejected, OSError))
        counted = sources | "CountAlphaDropped" >> beam.Map(
            batch_jobs.CountAlphaDropped(self._namespace))
        return counted, letters

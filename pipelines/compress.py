r"""Batch compression: source images -> sandwich bottleneck JPEGs and a manifest.

    python -m pipelines.compress --input 'photos/**/*.png' --model export/ --output bits/

    sandwich-compress --input 'gs://bucket/photos/*' --model gs://bucket/export \
        --output gs://bucket/bits --qstep 24 \
        --runner DataflowRunner --project P --region R \
        --temp_location gs://bucket/tmp --setup_file ./setup.py

Each file the glob matches is decoded (PNG/TIFF of 8 to 16 bits, JPEG; see
`sandwich.image_io`), fitted to the model's bit depth, run through the
pre-processor (Beam's RunInference, one model per worker process, in tiles:
see `model_handler`) and the real JPEG encoder, and written to
`<output>/<relative path>.jpg`: a standard JPEG any viewer opens, whose
comment segment says which model made it and the source's size and bit
depth (`bottleneck_format`), so `pipelines.decompress` needs nothing else.

The output directory also holds `manifest.jsonl` (one line per bottleneck:
source, size, bit depths, scenario, qstep, model id, bytes, bpp) and
`dead_letters.jsonl` (every input that could not be used, with the reason).
A rerun skips bottlenecks that are complete and made by this model at this
qstep from this very source (its size and mtime, digested in the header),
and redoes partial or stale ones. A source whose bottleneck would be wider
than a JPEG can be (65500 pixels) is a dead letter, as is an input whose
name could place its output outside `--output`. The job ends by printing
the account, inputs = outputs + dead letters.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from pipelines import batch_jobs, bottleneck_format, model_handler
from pipelines.beam_options import pipeline_options
from pipelines.dead_letters import Rejected, TryFlatMap, WriteDeadLetters
from pipelines.patches import fit_bit_depth, input_pattern
from sandwich import logs, metrics, tiling
from sandwich.image_io import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from sandwich.specs import ModelSpec

NAMESPACE = "compress"
MANIFEST_FILE = "manifest.jsonl"
DEAD_LETTER_FILE = "dead_letters.jsonl"
SUFFIX = ".jpg"


@dataclasses.dataclass(frozen=True)
class Config:
    """The job's own flags, validated, and the model's spec: all workers need."""

    input: str
    output: str
    model: str
    spec: ModelSpec
    qstep: float
    max_pixels: int
    tile: int
    halo: int

    @property
    def manifest_path(self) -> str:
        return FileSystems.join(self.output, MANIFEST_FILE)

    @property
    def dead_letter_path(self) -> str:
        return FileSystems.join(self.output, DEAD_LETTER_FILE)

    def output_path(self, source_path: str) -> str:
        return batch_jobs.output_path(source_path, self.input, self.output,
                                      lambda relative: relative + SUFFIX)


@dataclasses.dataclass(frozen=True)
class Source:
    """A decoded source, its pixels fitted to the model's bit depth."""

    path: str
    pixels: np.ndarray
    source_bit_depth: int
    stamp: str = ""


@dataclasses.dataclass(frozen=True)
class ManifestRecord:
    """One line of the manifest: a bottleneck and the source it encodes."""

    source: str
    output: str
    height: int
    width: int
    bit_depth: int
    source_bit_depth: int
    scenario: str
    factor: int
    qstep: float
    model_id: str
    bytes: int
    bpp: float

    @classmethod
    def of(cls, source: str, output: str, header: bottleneck_format.Header, size: int):
        return cls(source, output, header.height, header.width, header.bit_depth,
                   header.source_bit_depth, header.scenario, header.factor, header.qstep,
                   header.model_id, size,
                   float(metrics.bits_per_pixel(8 * size, header.height, header.width)))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class CompletedBottleneck:
    """(source, existing output) -> the record of a finished bottleneck of this
    model at this qstep, or None (partial, foreign or stale: redo it)."""

    def __init__(self, config: Config):
        self._config = config

    def __call__(self, source, existing: batch_jobs.ExistingOutput):
        if not bottleneck_format.is_complete(existing.head, existing.tail):
            return None
        try:  # The header bounds qstep, so a damaged one is redone, not a crash.
            header = bottleneck_format.read_header(existing.head)
        except bottleneck_format.BottleneckError:
            return None
        if (header.model_id != self._config.spec.model_id
                or header.jpeg_mode != self._config.spec.jpeg_mode
                or header.source_stamp != batch_jobs.source_stamp(source)
                or header.qstep != self._config.qstep):
            return None
        return ManifestRecord.of(source.path, existing.path, header, existing.size)


class DecodeSource:
    """ReadableFile -> Source at the model's bit depth; bad files raise."""

    def __init__(self, bit_depth: int, max_pixels: int, factor: int = 1):
        self._bit_depth, self._max_pixels, self._factor = bit_depth, max_pixels, factor

    def __call__(self, readable):
        image = decode_image(readable.read(), max_pixels=self._max_pixels)
        check_jpeg_size(*image.pixels.shape[:2], self._factor)
        # Deeper sources are rounded down as the baseline does; shallower ones
        # are refused, since padding bits would claim a precision never there.
        pixels = fit_bit_depth(image.pixels, image.bit_depth, self._bit_depth)
        yield Source(readable.metadata.path, pixels, image.bit_depth,
                     batch_jobs.source_stamp(readable.metadata))


def check_jpeg_size(height: int, width: int, factor: int) -> None:
    """Refuses a source whose bottleneck (1/factor of its sides) no JPEG can
    hold; a long side is tiled through the processors, but the codec has a limit."""
    side = -(-max(height, width) // factor)
    if side > bottleneck_format.MAX_JPEG_SIDE:
        raise Rejected(f"too large for JPEG: {width}x{height} at factor {factor} needs a "
                       f"{side}-pixel side, above the format's {bottleneck_format.MAX_JPEG_SIDE}")


def _path_of_file(readable) -> str:
    return readable.metadata.path


class DecodeSources(beam.PTransform):
    """ReadableFiles -> (Sources, dead letters of the files that are no usable image)."""

    def __init__(self, bit_depth: int, max_pixels: int, factor: int = 1):
        super().__init__()
        self._decode = DecodeSource(bit_depth, max_pixels, factor)

    def expand(self, files):
        return files | TryFlatMap(self._decode, step="decode", path_of=_path_of_file,
                                  errors=(ImageDecodeError, Rejected, OSError))


class WriteBottleneck:
    """PredictionResult(Source, bottleneck) -> JPEG written atomically -> ManifestRecord.

    The encoder's refusals are `Rejected` and a failed write an `OSError`,
    so one bad output is a dead letter, not a dead job.
    """

    def __init__(self, config: Config):
        self._config = config
        self._written = Metrics.counter(NAMESPACE, batch_jobs.WRITTEN)

    def __call__(self, result):
        source = result.example
        height, width = source.pixels.shape[:2]
        header = bottleneck_format.Header.of(self._config.spec, self._config.qstep, height, width,
                                             source.source_bit_depth, source.stamp)
        try:
            data = bottleneck_format.encode(result.inference, header,
                                            self._config.spec.tables_at(self._config.qstep))
        except ValueError as e:  # Pillow's size limits, among others
            raise Rejected(f"JPEG encoder: {e}") from e
        output = self._config.output_path(source.path)
        batch_jobs.write_atomically(output, data)
        self._written.inc()
        yield ManifestRecord.of(source.path, output, header, len(data))


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done, unnamed = batch_jobs.read_files(
        pipeline, config.input, NAMESPACE, config.output_path,
        batch_jobs.SkipCompleted(NAMESPACE, config.output_path, CompletedBottleneck(config)))
    sources, undecodable = files | "Decode" >> DecodeSources(
        config.spec.bit_depth, config.max_pixels, config.spec.factor)
    written, unwritten = (sources
                          | "Preprocess" >> RunInference(model_handler.PreprocessHandler(
                              config.model, tile=config.tile, halo=config.halo))
                          | "EncodeAndWrite" >> TryFlatMap(
                              WriteBottleneck(config), step="write",
                              path_of=lambda result: result.example.path,
                              errors=(Rejected, OSError)))
    _ = ((written, done)
         | "AllBottlenecks" >> beam.Flatten()
         | "WriteManifest" >> batch_jobs.WriteJsonLines(config.manifest_path))
    _ = ((unnamed, undecodable, unwritten)
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> WriteDeadLetters(config.dead_letter_path))


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every job that runs an export dir shares."""
    parser.add_argument("--tile", type=int, default=model_handler.DEFAULT_TILE,
                        help="processor tile side in source pixels; bounds memory per image")
    parser.add_argument("--halo", type=int, default=model_handler.DEFAULT_HALO,
                        help="context around each tile in source pixels; hides tile seams")


def parse_args(argv=None) -> tuple[Config, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     parents=[logs.flag()])
    parser.add_argument("--input", required=True, type=input_pattern,
                        help="glob of source images, local or gs://; a directory: all files under it")
    parser.add_argument("--model", required=True, help="export dir (trainer.export)")
    parser.add_argument("--output", required=True, help="bottleneck directory, local or gs://")
    parser.add_argument("--qstep", type=float, default=None,
                        help="flat JPEG quantisation step; the model's trained one if not given")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are dead-lettered as decompression bombs")
    add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    spec = model_handler.read_spec(args.model)
    qstep = spec.qstep if args.qstep is None else args.qstep
    if not qstep > 0:
        parser.error("--qstep must be positive")
    config = Config(args.input, args.output.rstrip("/"), args.model.rstrip("/"), spec,
                    float(qstep), args.max_pixels, args.tile, args.halo)
    tiling.check_layout(config.tile, config.halo, spec.factor)
    return config, beam_args


def run(argv=None) -> dict:
    """Runs the job to completion, prints the account and returns the counts."""
    config, beam_args = parse_args(argv)
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    counts = batch_jobs.counters(result, NAMESPACE)
    print(batch_jobs.account(counts, config.dead_letter_path))
    print(f"manifest: {config.manifest_path}")
    return counts


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logs.set_up(argv)
    run(argv)
    return 0


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.compress`, not from their own __main__.
    from pipelines import compress

    sys.exit(compress.main())

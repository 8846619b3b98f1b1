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

import dataclasses
import json
import sys

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from pipelines import batch_jobs, beam_options, bottleneck_format, jobs, model_handler
from pipelines.dead_letters import Rejected, TryFlatMap
from sandwich import metrics, tiling
from sandwich.image_io import DEFAULT_MAX_PIXELS
from sandwich.specs import ModelSpec

NAMESPACE = "compress"


@dataclasses.dataclass(frozen=True)
class Config(jobs.JobConfig):
    """The job's own flags, validated, and the model's spec: all workers need."""

    model: str
    spec: ModelSpec
    qstep: float
    max_pixels: int
    tile: int
    halo: int
    # Of the job on one machine, which share its cores (beam_options).
    worker_processes: int = 0

    def output_path(self, source_path: str) -> str:
        return batch_jobs.output_path(source_path, self.input, self.output,
                                      lambda relative: relative + jobs.BOTTLENECK_SUFFIX)


@dataclasses.dataclass(frozen=True)
class BottleneckRecord:
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
        return BottleneckRecord.of(source.path, existing.path, header, existing.size)


class WriteBottleneck:
    """PredictionResult(ModelInput, bottleneck) -> JPEG written atomically -> BottleneckRecord.

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
        yield BottleneckRecord.of(source.path, output, header, len(data))


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done, unnamed = batch_jobs.read_files(
        pipeline, config.input, NAMESPACE, config.output_path,
        batch_jobs.SkipCompleted(NAMESPACE, config.output_path, CompletedBottleneck(config)))
    sources, undecodable = files | "Decode" >> jobs.DecodeSources(
        config.spec.bit_depth, config.max_pixels, config.spec.factor)
    written, unwritten = (sources
                          | "Preprocess" >> RunInference(model_handler.PreprocessHandler(
                              config.model, tile=config.tile, halo=config.halo,
                              worker_processes=config.worker_processes))
                          | "EncodeAndWrite" >> TryFlatMap(
                              WriteBottleneck(config), step="write",
                              path_of=lambda result: result.example.path,
                              errors=(Rejected, OSError)))
    _ = ((written, done)
         | "AllBottlenecks" >> beam.Flatten()
         | "WriteManifest" >> batch_jobs.WriteJsonLines(config.manifest_path))
    _ = ((unnamed, undecodable, unwritten)
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> batch_jobs.WriteJsonLines(config.dead_letter_path))


def parse_args(argv=None) -> tuple[Config, list[str]]:
    parser = jobs.job_parser(
        __doc__, output_help="bottleneck directory, local or gs://",
        input_help="glob of source images, local or gs://; a directory: all files under it")
    parser.add_argument("--model", required=True, help="export dir (trainer.export)")
    parser.add_argument("--qstep", type=float, default=None,
                        help="flat JPEG quantisation step; the model's trained one if not given")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are dead-lettered as decompression bombs")
    jobs.add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    spec = model_handler.read_spec(args.model)
    qstep = spec.qstep if args.qstep is None else args.qstep
    if not qstep > 0:
        parser.error("--qstep must be positive")
    config = Config(args.input, args.output.rstrip("/"), args.model.rstrip("/"), spec,
                    float(qstep), args.max_pixels, args.tile, args.halo,
                    beam_options.worker_processes(beam_args))
    tiling.check_layout(config.tile, config.halo, spec.factor)
    return config, beam_args


def run(argv=None, save_main_session=False, test_pipeline=None) -> dict:
    """Runs the job to completion, prints the account and returns the counts."""
    config, beam_args = parse_args(argv)
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    counts = batch_jobs.counters(result, NAMESPACE)
    print(batch_jobs.account(counts, config.dead_letter_path))
    print(f"manifest: {config.manifest_path}")
    return counts


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.compress`, not from their own __main__.
    from pipelines import compress

    sys.exit(compress.main())

r"""Batch compression: source images -> sandwich bottleneck JPEGs and a manifest.

    python -m pipelines.compress --input 'photos/**/*.png' --model export/ --output bits/

    sandwich-compress --input 'gs://bucket/photos/*' --model gs://bucket/export \
        --output gs://bucket/bits --qstep 24 \
        --runner DataflowRunner --project P --region R \
        --temp_location gs://bucket/tmp --setup_file ./setup.py

    python -m pipelines.compress --input photos/ --model runs/models/ --target_bpp 0.5 --output bits/

Each file the glob matches is decoded (PNG/TIFF of 8 to 16 bits, JPEG; see
`sandwich.image_io`), fitted to the model's bit depth, run through the
pre-processor (Beam's RunInference, one model per worker process, in tiles:
see `model_handler`) and the real JPEG encoder, and written to
`<output>/<relative path>.jpg`: a standard JPEG any viewer opens, whose
comment segment says which model made it and the source's size and bit
depth (`bottleneck_format`), so `pipelines.decompress` needs nothing else.

Two modes:
- `--qstep` (default: the model's trained step): one model, that step, for
  every image; nothing is measured;
- `--target_bpp B` or `--target_psnr P`: a model set (`--model` names
  several exports, or a directory of them) and, per image, the model, the
  step or a plain-JPEG fallback that serves the target best, measured with
  the real encoder, the real decoder and the post-processor
  (`rate_control`). The job ends with a summary: images per model and
  fallback, mean bpp, mean PSNR, targets missed and why.

The output directory also holds `manifest.jsonl` (one line per bottleneck:
source, size, bit depths, scenario, qstep, model id, bytes, bpp) and
`dead_letters.jsonl` (every input that could not be used, with the reason);
in target mode each line also has the target, the measured PSNR, the
fallback's quality and why a target was missed.
A rerun skips bottlenecks that are complete and made by this model at this
qstep (or by a model of the set, or as a fallback, for this target) from
this very source (its size and mtime, digested in the header), and redoes
partial or stale ones. So a model added to a set serves only the images not
yet done; delete the outputs (or change the target) to choose again. A source whose bottleneck would be wider
than a JPEG can be (65500 pixels) is a dead letter, as is an input whose
name could place its output outside `--output`. The job ends by printing
the account, inputs = outputs + dead letters.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import sys

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import RunInference

from pipelines import batch_jobs, beam_options, bottleneck_format, jobs, model_handler, rate_control
from pipelines.dead_letters import Rejected
from sandwich import metrics
from sandwich.image_io import DEFAULT_MAX_PIXELS
from sandwich.specs import ModelSpec

NAMESPACE = "compress"
SHOWN_MISSES = 10  # A bucket's misses are in the manifest; the summary shows a few.


@dataclasses.dataclass(frozen=True)
class Config(jobs.JobConfig):
    """The job's own flags, validated, and the models' specs: all workers need.

    Exactly one of `qstep` (one model) and `target` is set.
    """

    models: tuple[str, ...]
    specs: tuple[ModelSpec, ...]
    qstep: float | None
    target: rate_control.Target | None
    max_pixels: int
    tile: int
    halo: int
    # Of the job on one machine, which share its cores (beam_options).
    worker_processes: int = 0

    @property
    def fallback(self) -> bool:
        """Whether plain JPEG is a candidate: it keeps only 8 bits."""
        return self.specs[0].bit_depth == 8

    def output_path(self, source_path: str) -> str:
        return batch_jobs.output_path(source_path, self.input, self.output,
                                      lambda relative: relative + jobs.BOTTLENECK_SUFFIX)


@dataclasses.dataclass(frozen=True)
class BottleneckRecord:
    """One line of the manifest: a bottleneck and the source it encodes.

    `qstep` is None for a plain-JPEG fallback, whose Pillow `quality` is set
    instead; `psnr` (dB, after the real decoder and the post-processor) and
    `missed` are set in target mode only.
    """

    source: str
    output: str
    height: int
    width: int
    bit_depth: int
    source_bit_depth: int
    scenario: str
    factor: int
    qstep: float | None
    model_id: str
    bytes: int
    bpp: float
    target: str = ""
    psnr: float | None = None
    quality: int | None = None
    missed: str = ""

    @classmethod
    def of(cls, source: str, output: str, header: bottleneck_format.Header, size: int):
        bpp = float(metrics.bits_per_pixel(8 * size, header.height, header.width))
        fallback = header.is_fallback
        return cls(source, output, header.height, header.width, header.bit_depth,
                   header.source_bit_depth, header.scenario, header.factor,
                   None if fallback else header.qstep, header.model_id, size, bpp,
                   header.target, header.psnr if header.target else None,
                   int(header.qstep) if fallback else None,
                   rate_control.missed(rate_control.Target.parse(header.target), bpp, header.psnr,
                                       header.bit_depth, header.model_id)
                   if header.target else "")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class CompletedBottleneck:
    """(source, existing output) -> the record of a finished bottleneck of this
    model at this qstep, or of the set (or a fallback) for this target, or
    None (partial, foreign or stale: redo it)."""

    def __init__(self, config: Config):
        self._config = config
        self._specs = {spec.model_id: spec for spec in config.specs}

    def __call__(self, source, existing: batch_jobs.ExistingOutput):
        if not bottleneck_format.is_complete(existing.head, existing.tail):
            return None
        try:  # The header bounds qstep, so a damaged one is redone, not a crash.
            header = bottleneck_format.read_header(existing.head)
        except bottleneck_format.BottleneckError:
            return None
        config, spec = self._config, self._specs.get(header.model_id)
        made_here = (config.fallback and config.target is not None if header.is_fallback
                     else spec is not None and header.jpeg_mode == spec.jpeg_mode)
        if (not made_here
                or header.source_stamp != batch_jobs.source_stamp(source)
                or header.target != (config.target.label if config.target else "")
                or (config.qstep is not None and header.qstep != config.qstep)):
            return None
        return BottleneckRecord.of(source.path, existing.path, header, existing.size)


class WriteBottleneck:
    """PredictionResult(ModelInput, bottleneck at `qstep` | `rate_control.Coded`
    | `Rejected`) -> JPEG written atomically -> BottleneckRecord.

    The encoder's refusals are `Rejected` and a failed write an `OSError`,
    so one bad output is a dead letter, not a dead job. It counts nothing
    (`batch_jobs.WriteOutputs`).
    """

    def __init__(self, config: Config):
        self._config = config

    def _at_qstep(self, source, bottleneck: np.ndarray) -> rate_control.Coded:
        (spec,), qstep = self._config.specs, self._config.qstep
        header = bottleneck_format.Header.of(spec, qstep, *source.pixels.shape[:2],
                                             source.source_bit_depth, source.stamp)
        try:
            data = bottleneck_format.encode(bottleneck, header, spec.tables_at(qstep))
        except ValueError as e:  # Pillow's size limits, among others
            raise Rejected(f"JPEG encoder: {e}") from e
        return rate_control.Coded(header, data, psnr=0.0)

    def __call__(self, result):
        source, coded = result.example, result.inference
        if isinstance(coded, Rejected):
            raise coded
        if isinstance(coded, np.ndarray):
            coded = self._at_qstep(source, coded)
        output = self._config.output_path(source.path)
        batch_jobs.write_atomically(output, coded.data)
        yield BottleneckRecord.of(source.path, output, coded.header, len(coded.data))


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done, unnamed = batch_jobs.read_files(
        pipeline, config.input, NAMESPACE, config.output_path,
        batch_jobs.SkipCompleted(NAMESPACE, config.output_path, CompletedBottleneck(config)))
    sources, undecodable = files | "Decode" >> jobs.DecodeSources(
        config.specs[0].bit_depth, config.max_pixels, min(s.factor for s in config.specs))
    if config.target is None:
        coded = sources | "Preprocess" >> RunInference(model_handler.PreprocessHandler(
            config.models, config.qstep, tile=config.tile, halo=config.halo,
            worker_processes=config.worker_processes))
    else:
        coded = sources | "ChooseAndEncode" >> RunInference(rate_control.TargetHandler(
            config.models, config.target, fallback=config.fallback, tile=config.tile,
            halo=config.halo, worker_processes=config.worker_processes))
    # The JPEG encoder and the file writes release the GIL: they run beside
    # the pre-processor of the next images.
    written, unwritten = coded | "Write" >> batch_jobs.WriteOutputs(
        NAMESPACE, WriteBottleneck(config), errors=(Rejected, OSError),
        threads=model_handler.writer_threads(config.worker_processes))
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
    parser.add_argument("--model", required=True,
                        help="export dir (trainer.export); with a target, a model set: several, "
                             "comma-separated, or a directory of export dirs")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--qstep", type=float, default=None,
                      help="flat JPEG quantisation step; the model's trained one if no target")
    mode.add_argument("--target_bpp", type=float, default=None,
                      help="per image, the best PSNR in at most this many bits per source pixel")
    mode.add_argument("--target_psnr", type=float, default=None,
                      help="per image, the fewest bits that reach this PSNR (dB)")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are dead-lettered as decompression bombs")
    jobs.add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    beam_args = beam_options.model_job_args(beam_args, lambda: jobs.count_files(args.input))
    models = model_handler.export_dirs(args.model)
    specs = tuple(model_handler.read_specs(models).values())
    target, qstep = None, None
    for kind, value in ((rate_control.BPP, args.target_bpp), (rate_control.PSNR, args.target_psnr)):
        if value is not None:
            if not value > 0:
                parser.error(f"--target_{kind} must be positive")
            target = rate_control.Target(kind, value)
    if target is None:
        if len(models) > 1:
            parser.error(f"{len(models)} models: a model set needs --target_bpp or --target_psnr")
        qstep = float(specs[0].qstep if args.qstep is None else args.qstep)
        if not 0 < qstep <= rate_control.MAX_QSTEP:
            parser.error(f"--qstep must be in (0, {rate_control.MAX_QSTEP}]")
    model_handler.source_bit_depth(specs)
    args.tile, args.halo = model_handler.tile_layout([s.factor for s in specs], args.tile,
                                                     args.halo)
    return Config(args.input, args.output.rstrip("/"), models, specs, qstep, target,
                  args.max_pixels, args.tile, args.halo,
                  beam_options.worker_processes(beam_args)), beam_args


def summary(records) -> str:
    """Images per model (and fallback), mean bpp, mean PSNR where measured,
    and the targets missed, as the job prints them at the end; one pass over
    the records, holding only counts and sums (a bucket's manifest may have
    millions of lines)."""
    per_model, bpp, psnr, missed, shown = collections.Counter(), 0.0, 0.0, 0, []
    target = ""
    for record in records:
        per_model[record["model_id"]] += 1
        bpp += record["bpp"]
        psnr += record["psnr"] or 0.0
        target = record["target"]
        if record["missed"]:
            missed += 1
            if len(shown) < SHOWN_MISSES:
                shown.append(f"    {record['source']}: {record['missed']}")
    count = sum(per_model.values())
    if not count:
        return "no bottlenecks"
    lines = [f"{count} bottlenecks, mean {bpp / count:.3f} bpp"
             + (f", mean {psnr / count:.2f} dB" if target else "")]
    lines += [f"  {model}: {n} images" for model, n in sorted(per_model.items())]
    if missed:
        lines += [f"  {missed} missed the target {target}:", *shown]
        if missed > len(shown):
            lines.append(f"    and {missed - len(shown)} more: see `missed` in the manifest")
    return "\n".join(lines)


def run(argv=None, save_main_session=False, test_pipeline=None) -> dict:
    """Runs the job to completion, prints the account and returns the counts."""
    config, beam_args = parse_args(argv)
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    counts = batch_jobs.counters(result, NAMESPACE)
    print(batch_jobs.account(counts, config.dead_letter_path))
    with FileSystems.open(config.manifest_path) as f:
        print(summary(json.loads(line) for line in f))
    print(f"manifest: {config.manifest_path}")
    return counts


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.compress`, not from their own __main__.
    from pipelines import compress

    sys.exit(compress.main())

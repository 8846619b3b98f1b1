r"""Batch compression: source images -> sandwich bottleneck JPEGs and a manifest.

    python -m pipelines.compress --input 'photos/**/*.png' --model export/ --output bits/

    sandwich-compress --input 'gs://bucket/photos/*' --model gs://bucket/export \
        --output gs://bucket/bits --qstep 24 \
        --runner DataflowRunner --project P --region R \
        --temp_location gs://bucket/tmp --setup_file ./setup.py

    python -m pipelines.compress --input photos/ --model runs/models/ --target_bpp 0.5 --output bits/

Each file the glob matches is decoded to sRGB (PNG/TIFF of 8 to 16 bits,
JPEG, WebP, AVIF; ICC profiles converted, alpha dropped and counted: see
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
  several exports, or a directory of them) and, per image, the file that
  serves the target best among every model of the set at its best step,
  each scenario's identity (its baseline, no networks) at its best step and
  plain JPEG and jpegli at their best qualities, measured with the real
  encoder, the real decoder and the post-processor (`rate_control`; a candidate that cannot
  win is left unmeasured, and a model whose recorded gain over its
  identity says it cannot is not run). `--rank_by ms-ssim` or
  `butteraugli` ranks a rate target's files by what people see rather than
  by PSNR. The job ends with a summary: images per model, per winning kind
  (model, identity, plain JPEG, jpegli), mean bpp, mean PSNR, targets
  missed and why.

The output directory also holds `manifest.jsonl` (one line per bottleneck:
source, size, bit depths, scenario, qstep, model id, bytes, bpp, whether
the source's transparency was dropped) and
`dead_letters.jsonl` (every input that could not be used, with the reason);
in target mode each line also has the target, the measured PSNR (and the
ranked MS-SSIM or Butteraugli), the fallback's quality, why a target was
missed, the winner's kind and its margins over the best file of each other
kind (docs/formats.md).
A rerun skips bottlenecks that are complete and made by this model at this
qstep (or by a model of the set, an identity of one of its scenarios, or as a
fallback, for this target) from this very source (its size and mtime,
digested in the header), and redoes partial or stale ones; a kept file's
margins and perceptual metric, which its header does not hold, come from
the previous manifest's line for that very file (null without one). So a
model added to a set serves only the images not yet done; delete the
outputs (or change the target) to choose again. A source whose bottleneck would be wider
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

from codec import api, bottleneck_format, exported, rate_control, shipped
from codec import precision as codec_precision
from pipelines import batch_jobs, beam_options, jobs, model_handler
from pipelines.dead_letters import Rejected
from sandwich import metrics
from sandwich.image_io import DEFAULT_MAX_PIXELS
from sandwich.jpeg import tables
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
    precision: str = codec_precision.AUTO

    @property
    def fallback(self) -> bool:
        """Whether the fallbacks, plain JPEG and jpegli, are candidates
        (`exported.plain_jpeg_fits`)."""
        return exported.plain_jpeg_fits(self.specs)

    def made_by_identity(self, header: bottleneck_format.Header) -> bool:
        """Whether an identity file is one this job's target mode writes: the
        identity of a scenario of the set (`rate_control.identity_key`)."""
        return self.target is not None and rate_control.identity_key(header) in {
            rate_control.identity_key(spec) for spec in self.specs}

    def output_path(self, source_path: str) -> str:
        return batch_jobs.output_path(source_path, self.input, self.output,
                                      lambda relative: relative + jobs.BOTTLENECK_SUFFIX)


# The manifest's fields that a target-mode choice measures but the file's
# header does not hold. They, and whether the source's transparency was
# dropped, are what a rerun that keeps the file carries over from the
# previous manifest (`CARRIED`, `CarryMeasured`).
MEASURED = ("margins", "ms_ssim", "butteraugli")
CARRIED = (*MEASURED, "alpha_dropped")


@dataclasses.dataclass(frozen=True)
class BottleneckRecord:
    """One line of the manifest: a bottleneck and the source it encodes.

    `qstep` is None for a fallback (plain JPEG or jpegli), whose encoder's
    `quality` is set instead; `psnr` (dB, after the real decoder and the
    post-processor), `missed` and `winner` (`model`, `identity`,
    `plain-jpeg` or `jpegli`) are set in
    target mode only, as are the `MEASURED` fields, which the file's header
    does not hold: `margins` (`rate_control.Target.margin` over the best
    file of each other kind, by kind) and `ms_ssim` or `butteraugli` (its
    3-norm) where a rate target ranks by them. `alpha_dropped`: the
    source's transparency was dropped, its colour coded (null where a rerun
    kept a file that the previous manifest does not describe).
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
    winner: str = ""
    margins: dict[str, float | None] | None = None
    ms_ssim: float | None = None
    butteraugli: float | None = None
    alpha_dropped: bool | None = False

    @classmethod
    def of(cls, source: str, output: str, header: bottleneck_format.Header, size: int,
           coded: rate_control.Coded | None = None, alpha_dropped: bool = False):
        """The record of a file from its header and size, and from `coded`,
        the choice that made it in this run, its `MEASURED` fields."""
        bpp = float(metrics.bits_per_pixel(8 * size, header.height, header.width))
        fallback = header.is_fallback
        measured = {name: getattr(coded, name) for name in MEASURED} if coded else {}
        return cls(source, output, header.height, header.width, header.bit_depth,
                   header.source_bit_depth, header.scenario, header.factor,
                   None if fallback else header.qstep, header.model_id, size, bpp,
                   header.target, header.psnr if header.target else None,
                   int(header.qstep) if fallback else None,
                   rate_control.missed(rate_control.Target.parse(header.target), bpp, header.psnr,
                                       header.bit_depth, header.model_id)
                   if header.target else "",
                   header.kind if header.target else "", **measured,
                   alpha_dropped=alpha_dropped)

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
        if header.is_fallback:
            made_here = config.fallback and config.target is not None
        elif header.is_identity:
            made_here = config.made_by_identity(header)
        else:
            made_here = spec is not None and header.jpeg_mode == spec.jpeg_mode
        if (not made_here
                or header.source_stamp != batch_jobs.source_stamp(source)
                or header.target != (config.target.label if config.target else "")
                or (config.qstep is not None and header.qstep != config.qstep)):
            return None
        return BottleneckRecord.of(source.path, existing.path, header, existing.size)


class WriteBottleneck:
    """PredictionResult(`codec.Source`, bottleneck at `qstep` | `rate_control.Coded`
    | `Rejected`) -> JPEG written atomically -> BottleneckRecord.

    The encoder's refusals are `Rejected` and a failed write an `OSError`,
    so one bad output is a dead letter, not a dead job. It counts nothing
    (`batch_jobs.WriteOutputs`).
    """

    def __init__(self, config: Config):
        self._config = config

    def __call__(self, result):
        source, coded = result.example, result.inference
        if isinstance(coded, Rejected):
            raise coded
        if isinstance(coded, np.ndarray):
            (spec,) = self._config.specs
            coded = api.code_at(spec, self._config.qstep, coded, source)
        output = self._config.output_path(source.path)
        batch_jobs.write_atomically(output, coded.data)
        yield BottleneckRecord.of(source.path, output, coded.header, len(coded.data),
                                  coded if self._config.target else None, source.alpha_dropped)


def _previous_records(path: str):
    """(output, line) of each line of the manifest at `path` before this run
    rewrites it (nothing if there is none); a damaged line is passed over."""
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("output"), str):
                yield record["output"], record


def _carried(group):
    """A kept file's record, with the `CARRIED` fields of the previous
    manifest line that describes this very file (every other field equal),
    else with them null."""
    _, grouped = group
    for record in grouped["kept"]:
        fields = dataclasses.asdict(record)
        same = [line for line in grouped["previous"]
                if all(line.get(name) == value for name, value in fields.items()
                       if name not in CARRIED)]
        yield dataclasses.replace(record, **{name: same[0].get(name) if same else None
                                             for name in CARRIED})


class CarryMeasured(beam.PTransform):
    """Records of the files a rerun keeps -> the same, with what their
    header does not hold (`CARRIED`: what the choice measured, whether the
    alpha was dropped), from the manifest the last run wrote, joined by
    output path. The read runs before this run's manifest replaces the
    file: the write depends on it."""

    def __init__(self, manifest_path: str):
        super().__init__()
        self._path = manifest_path

    def expand(self, kept):
        previous = (kept.pipeline
                    | "ManifestPath" >> beam.Create([self._path])
                    | "ReadPrevious" >> beam.FlatMap(_previous_records))
        return ({"kept": kept | "ByOutput" >> beam.Map(lambda record: (record.output, record)),
                 "previous": previous}
                | "Join" >> beam.CoGroupByKey()
                | "Carry" >> beam.FlatMap(_carried))


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done, unnamed = batch_jobs.read_files(
        pipeline, config.input, NAMESPACE, config.output_path,
        batch_jobs.SkipCompleted(NAMESPACE, config.output_path, CompletedBottleneck(config)))
    sources, undecodable = files | "Decode" >> jobs.DecodeSources(
        NAMESPACE, config.specs[0].bit_depth, config.max_pixels, min(s.factor for s in config.specs))
    if config.target is None:
        coded = sources | "Preprocess" >> RunInference(model_handler.PreprocessHandler(
            config.models, config.qstep, tile=config.tile, halo=config.halo,
            worker_processes=config.worker_processes, precision=config.precision))
    else:
        coded = sources | "ChooseAndEncode" >> RunInference(model_handler.TargetHandler(
            config.models, config.target, fallback=config.fallback, tile=config.tile,
            halo=config.halo, worker_processes=config.worker_processes,
            precision=config.precision))
    done = done | "CarryMeasured" >> CarryMeasured(config.manifest_path)
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
    parser.add_argument("--model", default=shipped.DEFAULT_SET,
                        help="export dir (trainer.export); with a target, a model set: several, "
                             "comma-separated, or a directory of export dirs; or a shipped "
                             "model or set (codec.shipped): by default the set for 8-bit photos")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--qstep", type=float, default=None,
                      help="flat JPEG quantisation step; the model's trained one if no target")
    mode.add_argument("--target_bpp", type=float, default=None,
                      help="per image, the best PSNR in at most this many bits per source pixel")
    mode.add_argument("--target_psnr", type=float, default=None,
                      help="per image, the fewest bits that reach this PSNR (dB)")
    parser.add_argument("--rank_by", choices=rate_control.RANKINGS, default=rate_control.PSNR,
                        help="with --target_bpp, the best file within the rate is the one of "
                             "highest PSNR or MS-SSIM, or of lowest Butteraugli 3-norm")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are dead-lettered as decompression bombs")
    jobs.add_model_flags(parser)
    jobs.add_precision_flag(parser)
    args, beam_args = parser.parse_known_args(argv)
    beam_args = beam_options.model_job_args(beam_args, lambda: jobs.source_megapixels(args.input))
    models = model_handler.export_dirs(args.model)
    specs = tuple(model_handler.read_specs(models).values())
    for model_dir, spec in zip(models, specs):
        exported.check_can_code(model_dir, spec, model_handler.BEAM_FILES)
    if args.rank_by != rate_control.PSNR and args.target_bpp is None:
        parser.error("--rank_by ranks the files within a rate: it needs --target_bpp")
    if args.rank_by == rate_control.BUTTERAUGLI:
        from sandwich import perceptual

        if why := perceptual.available():  # Once here, rather than in every worker.
            parser.error(why)
    target, qstep = None, None
    for kind, value in ((rate_control.BPP, args.target_bpp), (rate_control.PSNR, args.target_psnr)):
        if value is not None:
            if not value > 0:
                parser.error(f"--target_{kind} must be positive")
            target = rate_control.Target(kind, value, args.rank_by)
    if target is None:
        if len(models) > 1:
            parser.error(f"{len(models)} models ({', '.join(s.model_id for s in specs)}): a "
                         "model set needs --target_bpp or --target_psnr, or --model naming one")
        qstep = float(specs[0].qstep if args.qstep is None else args.qstep)
        try:
            tables.check_codable_step(qstep)
        except ValueError as e:
            parser.error(f"--{e}")
    exported.source_bit_depth(specs)
    exported.bottleneck_channels(specs)
    args.tile, args.halo = exported.tile_layout([exported.layout_grid(s) for s in specs], args.tile,
                                                     args.halo)
    return Config(args.input, args.output.rstrip("/"), models, specs, qstep, target,
                  args.max_pixels, args.tile, args.halo,
                  beam_options.worker_processes(beam_args), args.precision), beam_args


def summary(records) -> str:
    """Images per model (and fallback, and identity), per winning kind in
    target mode, mean bpp, mean PSNR where measured, and the targets missed,
    as the job prints them at the end; one pass over the records, holding
    only counts and sums (a bucket's manifest may have millions of lines)."""
    per_model, bpp, psnr, missed, shown = collections.Counter(), 0.0, 0.0, 0, []
    per_kind = collections.Counter()
    target = ""
    for record in records:
        per_model[record["model_id"]] += 1
        if record.get("winner"):
            per_kind[record["winner"]] += 1
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
    if per_kind:
        lines.append("  winners: " + ", ".join(
            f"{kind} {per_kind[kind]}" for kind in bottleneck_format.KINDS))
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

r"""Rate-distortion with the real codec: sandwich models against their
baselines and against what users would pick instead.

    python -m pipelines.evaluate --models export/x1-g10 export/x2-g50 \
        --input 'heldout/*.png' --output results/ [--alternatives jpeg jpegli avif jxl]

For every held-out image, each exported model (e.g. one per gamma and
factor; models of different scenarios are measured together when their
sources have one bit depth) runs the deployed path at each of its qsteps
(pre-processor, the bottleneck file exactly as `pipelines.compress` writes
it, header included, the real decoder, post-processor); each scenario's
baseline runs at each JPEG step; and each alternative codec
(`sandwich.alternatives`: plain JPEG, jpegli, AVIF, JPEG XL) at each quality,
on the source itself (8-bit) or at its 8-bit ceiling (deeper sources: the
source rounded down to 8 bits, coded, scaled back). Bits per pixel count
the whole file per *source* pixel; PSNR is taken at the source's peak. An RD
point is the mean of the images' bpp and PSNR, as CompressAI reports them.

Written to `--output`:
- `<method>.json` per model, baseline and alternative, and `sandwich` (the
  upper envelope of all models' curves): `{"name", "description", "results":
  {"bpp": [...], "psnr-rgb": [...], "psnr": [...], "qstep": [...]}}`, what
  CompressAI's plot tool (`python -m compressai.utils.plot -f *.json`) reads;
  `qstep` is the JPEG step, or the quality for an alternative;
- `summary.json`: those objects, and BD-rate (%, negative = fewer bits) and
  BD-PSNR (dB) of every model and of the front against every baseline and
  alternative (`bd[reference][method]`); for deeper sources, the 16-bit
  PNG's bpp (`lossless_png_bpp`);
- `per_image.jsonl`: every image's bits and PSNR at every point;
- `rd.png`: the RD plot.

The measurements run as a Beam job (each worker loads every model once), so
a large evaluation set scales out like the compression jobs.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import sys

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import batch_jobs, beam_options, bottleneck_format, jobs, model_handler
from sandwich import alternatives, metrics, scenarios
from sandwich.image_io import DEFAULT_MAX_PIXELS, encode_png16
from sandwich.jpeg.tables import DEFAULT_MODE

NAMESPACE = "evaluate"
SANDWICH = "sandwich"
LOSSLESS = "png16"  # The 16-bit PNG of a deeper source: its lossless size.
PER_IMAGE_FILE = "per_image.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "rd.png"
# Around the trained step: halving it roughly doubles the rate.
SANDWICH_POINTS = 5  # qsteps per model: over its range, or half to twice its step
DEFAULT_BASELINE_QSTEPS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96)


def baseline_name(scenario: scenarios.Scenario) -> str:
    """`baseline-x2`: a scenario's baseline, by factor (and mode, if not the default)."""
    mode = "" if scenario.jpeg_mode == DEFAULT_MODE else (
        f"-{scenario.jpeg_mode.name}")
    return f"baseline-x{scenario.factor}{mode}"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One image coded by one method at one step (or quality); `bits` is the
    whole file (for a sandwich model, the bottleneck with its header), so
    `bpp` is what the deployed file costs per source pixel."""

    method: str
    qstep: float
    image: str
    bits: int
    pixels: int
    psnr: float

    @property
    def bpp(self) -> float:
        return self.bits / self.pixels

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "bpp": self.bpp}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "Measurement":
        data = json.loads(line)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def measure_sandwich(model: model_handler.ExportedSandwich, pixels: np.ndarray,
                     source_bit_depth: int, qsteps,
                     source_stamp: str = "") -> list[tuple[int, float]]:
    """[(file bits, PSNR)] per qstep of the deployed path: the very file
    `compress` writes (given the source's stamp) and the very reconstruction
    `decompress` makes of it.

    The pre-processor runs once, unless it reads the step.
    """
    height, width = pixels.shape[:2]
    bottleneck_at = model.bottleneck_at(pixels)
    out = []
    for qstep in qsteps:
        header = bottleneck_format.Header.of(model.spec, qstep, height, width, source_bit_depth,
                                             source_stamp)
        data = bottleneck_format.encode(bottleneck_at(qstep), header, model.spec.tables_at(qstep))
        _, decoded = bottleneck_format.decode(data)
        reconstruction = model.postprocess(decoded, (height, width), qstep)
        out.append((8 * len(data), float(metrics.psnr(reconstruction[None], pixels[None],
                                                      model.spec.bit_depth)[0])))
    return out


def measure_baseline(scenario: scenarios.Scenario, pixels: np.ndarray,
                     qstep: float) -> tuple[int, float]:
    """(file bits, PSNR) of the scenario's baseline through the real codec."""
    reconstruction, bits = scenario.baseline(pixels[None], qstep)
    return int(bits[0]), float(metrics.psnr(reconstruction, pixels[None], scenario.bit_depth)[0])


def measure_alternative(name: str, pixels: np.ndarray, bit_depth: int,
                        qualities) -> list[tuple[int, float]]:
    """[(file bits, PSNR)] per quality of an alternative codec; a deeper
    source is coded at its 8-bit ceiling (rounded down to 8 bits, scaled
    back to mid-step), computed once for all qualities."""
    ceiling = scenarios.Scenario("high_bit_depth", bit_depth, 1) if bit_depth > 8 else None
    rgb = pixels if ceiling is None else scenarios.codec_input(
        ceiling.to_bottleneck(tf.cast(pixels[None], tf.float32)))[0].numpy()
    out = []
    for quality in qualities:
        data, decoded = alternatives.code(name, rgb, quality)
        if ceiling is not None:
            decoded = ceiling.to_source(ceiling.from_bottleneck(decoded[None], pixels.shape[:2]))[0]
        out.append((8 * len(data), float(metrics.psnr(np.asarray(decoded)[None], pixels[None],
                                                      bit_depth)[0])))
    return out


@dataclasses.dataclass(frozen=True)
class Config(jobs.JobConfig):
    """The job's own flags, validated, and the scenarios of its models."""

    models: tuple[str, ...]
    qsteps: tuple[float, ...] | None
    baseline_qsteps: tuple[float, ...]
    scenarios: tuple[scenarios.Scenario, ...]
    alternatives: tuple[str, ...]
    qualities: tuple[int, ...]
    max_pixels: int
    tile: int
    halo: int
    # Of the job on one machine, which share its cores (beam_options).
    worker_processes: int = 0

    @property
    def bit_depth(self) -> int:
        return self.scenarios[0].bit_depth


class Measure(beam.DoFn):
    """ModelInput -> a Measurement per (model, qstep), per baseline step and per
    alternative quality."""

    def __init__(self, config: Config):
        self._config = config
        self._measured = Metrics.counter(NAMESPACE, batch_jobs.WRITTEN)

    def setup(self):
        c = self._config
        self._models = [model_handler.ExportedSandwich.load(
            path, tile=c.tile, halo=c.halo, worker_processes=c.worker_processes)
            for path in c.models]

    def process(self, source):
        c = self._config
        pixels = source.pixels.shape[0] * source.pixels.shape[1]
        for model in self._models:
            qsteps = c.qsteps or model.spec.qsteps(SANDWICH_POINTS)
            points = measure_sandwich(model, source.pixels, source.source_bit_depth, qsteps,
                                      source.stamp)
            for qstep, (bits, psnr) in zip(qsteps, points):
                yield Measurement(model.spec.model_id, float(qstep), source.path, bits, pixels, psnr)
        for scenario in c.scenarios:
            for qstep in c.baseline_qsteps:
                bits, psnr = measure_baseline(scenario, source.pixels, qstep)
                yield Measurement(baseline_name(scenario), float(qstep), source.path, bits,
                                  pixels, psnr)
        for name in c.alternatives:
            points = measure_alternative(name, source.pixels, c.bit_depth, c.qualities)
            for quality, (bits, psnr) in zip(c.qualities, points):
                yield Measurement(name, float(quality), source.path, bits, pixels, psnr)
        if c.bit_depth > 8:
            lossless = 8 * len(encode_png16(source.pixels, c.bit_depth))
            yield Measurement(LOSSLESS, 0.0, source.path, lossless, pixels, float("inf"))
        self._measured.inc()


def _count_input(metadata):
    Metrics.counter(NAMESPACE, batch_jobs.INPUTS).inc()
    return metadata


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    sources, dead_letters = (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(config.input)
        | "CountInputs" >> beam.Map(_count_input)
        | "ReadMatches" >> fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED)
        | "Decode" >> jobs.DecodeSources(config.bit_depth, config.max_pixels,
                                         min(s.factor for s in config.scenarios)))
    _ = (sources
         | "Measure" >> beam.ParDo(Measure(config))
         | "WritePerImage" >> batch_jobs.WriteJsonLines(config.path(PER_IMAGE_FILE)))
    _ = dead_letters | "WriteDeadLetters" >> batch_jobs.WriteJsonLines(config.dead_letter_path)


def curves(measurements) -> dict[str, dict[str, list[float]]]:
    """Per method, the RD points by qstep: mean bpp and mean PSNR over images.

    Every point must cover the same images, or the means would compare
    different pictures.
    """
    by_point = collections.defaultdict(list)
    for m in measurements:
        by_point[m.method, m.qstep].append(m)
    images = {frozenset(m.image for m in group) for group in by_point.values()}
    if len(images) != 1:
        raise ValueError("RD points cover different sets of images")
    out = {}
    for (method, qstep), group in sorted(by_point.items()):
        curve = out.setdefault(method, {"qstep": [], "bpp": [], "psnr": []})
        curve["qstep"].append(qstep)
        curve["bpp"].append(float(np.mean([m.bpp for m in group])))
        curve["psnr"].append(float(np.mean([m.psnr for m in group])))
        curve["psnr-rgb"] = curve["psnr"]  # The key CompressAI's plot tool reads.
    return out


def _bd(anchor: dict, test: dict) -> dict:
    """BD-rate and BD-PSNR of `test` against `anchor`, or why they are undefined."""
    front_a, front_t = (metrics.pareto_front(c["bpp"], c["psnr"]) for c in (anchor, test))
    result = {}
    for name, fn in (("bd_rate", metrics.bd_rate), ("bd_psnr", metrics.bd_psnr)):
        try:
            result[name] = fn(*front_a, *front_t)
        except ValueError as e:
            result[name], result[f"{name}_undefined"] = None, str(e)
    return result


def summarise(measurements, model_scenarios: dict[str, scenarios.Scenario]) -> dict:
    """The RD curves (CompressAI's shape), the sandwich front, and BD metrics.

    `model_scenarios` maps each model id to its scenario. The sandwich front
    is the upper envelope of every model's curve (`metrics.upper_envelope`),
    since a deployment (`compress --target_bpp`) picks the best model and
    qstep for each rate, any step of a model's range; it is compared with every
    baseline and alternative, each model with its own baseline and with the
    alternatives.
    """
    measurements = list(measurements)
    lossless = [m for m in measurements if m.method == LOSSLESS]
    by_method = curves([m for m in measurements if m.method != LOSSLESS])
    models = sorted(model_scenarios)
    if not models or any(m not in by_method for m in models):
        raise ValueError("no sandwich measurements to summarise")
    own_baseline = {m: baseline_name(s) for m, s in model_scenarios.items()}
    baselines = sorted(set(own_baseline.values()))
    others = [a for a in alternatives.ALTERNATIVES if a in by_method]
    front_bpp, front_psnr = metrics.upper_envelope(
        [(by_method[m]["bpp"], by_method[m]["psnr"]) for m in models])
    front = {"bpp": front_bpp, "psnr": front_psnr, "psnr-rgb": front_psnr}
    images = len({m.image for m in measurements})
    scenario_set = sorted({s for s in model_scenarios.values()}, key=baseline_name)
    bit_depth = scenario_set[0].bit_depth
    where = f"{images} images, {bit_depth}-bit"
    methods = [{"name": b, "description": f"scenario baseline, real JPEG; {where}",
                "results": by_method[b]} for b in baselines]
    methods += [{"name": a, "description": f"{alternatives.DESCRIPTIONS[a]}"
                 f"{'' if bit_depth == 8 else ', at the 8-bit ceiling'}; {where}",
                 "results": by_method[a]} for a in others]
    methods += [{"name": m, "description": f"sandwich model {m} ({model_scenarios[m].name} "
                 f"x{model_scenarios[m].factor}, {model_scenarios[m].jpeg_mode.name}), "
                 f"real JPEG; {where}", "results": by_method[m]} for m in models]
    methods.append({"name": SANDWICH, "description": f"upper envelope of {models}; {where}",
                    "results": front})
    bd = {reference: {} for reference in baselines + others}
    for m in models:
        for reference in [own_baseline[m], *others]:
            bd[reference][m] = _bd(by_method[reference], by_method[m])
    for reference in bd:
        bd[reference][SANDWICH] = _bd(by_method[reference], front)
    for a in others:
        if a != "jpeg" and "jpeg" in bd:
            bd["jpeg"][a] = _bd(by_method["jpeg"], by_method[a])
    summary = {
        "scenarios": [dataclasses.asdict(s) for s in scenario_set],
        "bit_depth": bit_depth,
        "images": images,
        "methods": methods,
        "own_baseline": own_baseline,
        "bd": bd,
    }
    if lossless:
        summary["lossless_png_bpp"] = float(np.mean([m.bpp for m in lossless]))
    return summary


def format_bd(bd: dict) -> str:
    """'+1.23 dB / -20.1%', 'undefined' for a metric the curves do not define."""
    quality = "undefined" if bd.get("bd_psnr") is None else f"{bd['bd_psnr']:+.2f} dB"
    rate = "undefined" if bd.get("bd_rate") is None else f"{bd['bd_rate']:+.1f}%"
    return f"{quality} / {rate}"


def table(summary: dict) -> str:
    """The summary as a person reads it: every RD point (mean over images)
    of every method, then BD-PSNR and BD-rate against each reference."""
    lines = [f"{'method':<28} {'bpp':>7} {'PSNR dB':>8}"]
    for method in summary["methods"]:
        results = method["results"]
        for bpp, psnr in zip(results["bpp"], results["psnr"]):
            lines.append(f"{method['name'][-28:]:<28} {bpp:7.3f} {psnr:8.2f}")
    if "lossless_png_bpp" in summary:
        lines.append(f"{'16-bit PNG (lossless)':<28} {summary['lossless_png_bpp']:7.3f} "
                     f"{'inf':>8}")
    lines.append("BD-PSNR / BD-rate against each reference (over the rates both cover):")
    for reference, compared in summary["bd"].items():
        for name, bd in compared.items():
            lines.append(f"  {name[-28:]:<28} vs {reference:<16} {format_bd(bd)}")
    return "\n".join(lines)


def plot(summary: dict, path: str) -> None:
    """The RD plot: baselines, alternatives, every model's points, the front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    colours = {"jpeg": "tab:blue", "jpegli": "tab:green", "avif": "tab:purple",
               "jxl": "tab:brown"}
    for method in summary["methods"]:
        name, results = method["name"], method["results"]
        if name == SANDWICH:
            label, style = name, dict(color="tab:red", linewidth=2.5)
            jpeg = summary["bd"].get("jpeg", {}).get(SANDWICH, {})
            if jpeg.get("bd_psnr") is not None:
                label += f" (BD-PSNR {jpeg['bd_psnr']:+.2f} dB vs plain JPEG)"
        elif name.startswith("baseline"):
            label, style = name, dict(color="black", marker="s", markersize=4,
                                      linestyle="-" if name.startswith("baseline-x1") else "--")
        elif name in colours:
            label, style = name, dict(color=colours[name], marker="^", markersize=4,
                                      linestyle=":" if name in ("avif", "jxl") else "-")
        else:
            label, style = name, dict(linestyle="--", marker="o", markersize=4, alpha=0.6)
        axes.plot(results["bpp"], results["psnr"], label=label, **style)
    top = max(max(m["results"]["bpp"]) for m in summary["methods"] if m["name"] == SANDWICH)
    axes.set_xlim(0, 1.6 * top)
    axes.set(xlabel="bits per source pixel", ylabel=f"PSNR (dB, {summary['bit_depth']}-bit peak)",
             title=f"sandwich vs baselines and other codecs, real files "
                   f"({summary['images']} images)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    batch_jobs.write_atomically(path, buffer.getvalue())


def write_results(summary: dict, config: Config) -> None:
    for method in summary["methods"]:
        batch_jobs.write_atomically(config.path(f"{method['name']}.json"),
                                    json.dumps(method, indent=2).encode())
    batch_jobs.write_atomically(config.path(SUMMARY_FILE), json.dumps(summary, indent=2).encode())
    plot(summary, config.path(PLOT_FILE))


def _model_specs(model_dirs) -> dict:
    """Model id -> spec; ids distinct, all taking sources of one bit depth."""
    specs = model_handler.read_specs(model_dirs)
    model_handler.source_bit_depth(specs.values())
    return specs


def baseline_steps(specs) -> tuple[float, ...]:
    """The baselines' steps when none are given: `DEFAULT_BASELINE_QSTEPS`,
    reaching out to the finest and the coarsest step of every model measured,
    so that each model point has its baseline's curve at its rate to be
    checked against (x4's range runs to 128, past the grid's 96)."""
    low = min([DEFAULT_BASELINE_QSTEPS[0], *(s.qstep_bounds[0] for s in specs)])
    high = max([DEFAULT_BASELINE_QSTEPS[-1], *(s.qstep_bounds[1] for s in specs)])
    return tuple(sorted({low, *DEFAULT_BASELINE_QSTEPS, high}))


def parse_args(argv=None) -> tuple[Config, dict, list[str]]:
    parser = jobs.job_parser(
        __doc__, output_help="results directory, local or gs://",
        input_help="glob of held-out images, local or gs://; a directory: all files under it")
    parser.add_argument("--models", nargs="+", required=True,
                        help="export dirs, or directories of them, of one source bit depth "
                             "(e.g. per gamma and factor)")
    parser.add_argument("--qsteps", type=float, nargs="+", default=None,
                        help="sandwich JPEG steps; if not given, each model's "
                             f"{SANDWICH_POINTS} log-spaced over its qstep range, or from half "
                             "to twice its trained step")
    parser.add_argument("--baseline_qsteps", type=float, nargs="+", default=None,
                        help="baseline JPEG steps; if not given, "
                             f"{', '.join(f'{q:g}' for q in DEFAULT_BASELINE_QSTEPS)}, "
                             "and the models' finest and coarsest steps beyond those")
    parser.add_argument("--alternatives", nargs="*", default=list(alternatives.DEFAULT_ALTERNATIVES),
                        choices=alternatives.ALTERNATIVES,
                        help="other codecs to measure (avif and jxl are slower)")
    parser.add_argument("--qualities", type=int, nargs="+",
                        default=list(alternatives.DEFAULT_QUALITIES),
                        help="quality settings of the alternatives")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS)
    jobs.add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    if (args.baseline_qsteps is not None and len(args.baseline_qsteps) < 2
            or args.qsteps is not None and len(args.qsteps) < 2):
        parser.error("an RD curve needs at least two steps")
    if args.alternatives and len(args.qualities) < 2:
        parser.error("an RD curve needs at least two qualities")
    try:
        chosen = alternatives.check(args.alternatives)
    except ValueError as e:
        parser.error(str(e))
    models = tuple(d for m in args.models for d in model_handler.export_dirs(m))
    specs = _model_specs(models)
    model_scenarios = {model_id: scenarios.from_spec(spec) for model_id, spec in specs.items()}
    distinct = tuple(sorted(set(model_scenarios.values()), key=baseline_name))
    args.tile, args.halo = model_handler.tile_layout([s.factor for s in distinct], args.tile,
                                                     args.halo)
    return Config(args.input, args.output.rstrip("/"), models,
                  tuple(args.qsteps) if args.qsteps else None,
                  tuple(args.baseline_qsteps or baseline_steps(specs.values())),
                  distinct, chosen, tuple(args.qualities), args.max_pixels, args.tile,
                  args.halo, beam_options.worker_processes(beam_args)), model_scenarios, beam_args


def run(argv=None, save_main_session=False, test_pipeline=None) -> dict:
    """Runs the measurements as a Beam job, then writes and returns the summary."""
    config, model_scenarios, beam_args = parse_args(argv)
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    # Checked before the summary: an image lost on the way would bias the means.
    account = batch_jobs.account(batch_jobs.counters(result, NAMESPACE),
                                 config.dead_letter_path, outputs="measured")
    with FileSystems.open(config.path(PER_IMAGE_FILE)) as f:
        measurements = [Measurement.from_json(line) for line in f.read().decode().splitlines()]
    summary = summarise(measurements, model_scenarios)
    write_results(summary, config)
    print(table(summary))
    print(account)
    print(f"{summary['images']} images measured; unusable files -> "
          f"{config.dead_letter_path}; results: {config.output} ({SUMMARY_FILE}, {PLOT_FILE})")
    return summary


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.evaluate`, not from their own __main__.
    from pipelines import evaluate

    sys.exit(evaluate.main())

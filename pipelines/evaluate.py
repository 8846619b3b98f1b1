r"""Rate-distortion evaluation with the real codec: sandwich models against their baseline.

    python -m pipelines.evaluate --models export/g10 export/g50 export/g200 \
        --input 'heldout/*.png' --output results/

For every held-out image, each exported model (e.g. one per training gamma)
runs the deployed path at each of its qsteps (pre-processor, the bottleneck
file exactly as `pipelines.compress` writes it, header included, the real
decoder, post-processor), and the scenario's baseline runs at each JPEG step.
Bits per pixel count the whole file per *source* pixel; PSNR is taken at the
source's peak. An RD point is the mean of the images' bpp and PSNR, as
CompressAI reports them.

Written to `--output`:
- `<method>.json` per model, for the baseline and for `sandwich` (the Pareto
  front over all models' points): `{"name", "description", "results":
  {"bpp": [...], "psnr": [...], "qstep": [...]}}`, the shape CompressAI's
  `compressai.utils.plot` reads;
- `summary.json`: those objects, BD-rate (%, negative = fewer bits) and
  BD-PSNR (dB) of every model and of the front against the baseline;
- `per_image.jsonl`: every image's bits and PSNR at every point;
- `rd.png`: the RD plot.

The measurements run as a Beam job (each worker loads every model once), so
a large evaluation set scales out like the compression jobs.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import sys

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import batch_jobs, bottleneck_format, model_handler
from pipelines.beam_options import pipeline_options
from pipelines.compress import DEAD_LETTER_FILE, DecodeSources, add_model_flags
from pipelines.dead_letters import WriteDeadLetters
from sandwich import metrics, scenarios, tiling
from sandwich.image_io import DEFAULT_MAX_PIXELS
from sandwich.specs import SpecError

NAMESPACE = "evaluate"
SANDWICH = "sandwich"
BASELINE = "baseline"
PER_IMAGE_FILE = "per_image.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "rd.png"
# Around the trained step: halving it roughly doubles the rate.
DEFAULT_QSTEP_SCALES = (0.5, 0.71, 1.0, 1.41, 2.0)
DEFAULT_BASELINE_QSTEPS = (4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One image coded by one method at one step."""

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
                     source_bit_depth: int, qstep: float,
                     source_stamp: str = "") -> tuple[int, float]:
    """(file bits, PSNR) of the deployed path: the very file `compress` writes
    (given the source's stamp) and the very reconstruction `decompress` makes of it."""
    height, width = pixels.shape[:2]
    header = bottleneck_format.Header.of(model.spec, qstep, height, width, source_bit_depth,
                                         source_stamp)
    data = bottleneck_format.encode(model.preprocess(pixels), header)
    _, decoded = bottleneck_format.decode(data)
    reconstruction = model.postprocess(decoded, (height, width))
    return 8 * len(data), float(metrics.psnr(reconstruction[None], pixels[None],
                                             model.spec.bit_depth)[0])


def measure_baseline(scenario: scenarios.Scenario, pixels: np.ndarray,
                     qstep: float) -> tuple[int, float]:
    """(file bits, PSNR) of the scenario's baseline through the real codec."""
    reconstruction, bits = scenario.baseline(pixels[None], qstep)
    return int(bits[0]), float(metrics.psnr(reconstruction, pixels[None], scenario.bit_depth)[0])


@dataclasses.dataclass(frozen=True)
class Config:
    input: str
    output: str
    models: tuple[str, ...]
    qsteps: tuple[float, ...] | None
    baseline_qsteps: tuple[float, ...]
    scenario: scenarios.Scenario
    max_pixels: int
    tile: int
    halo: int

    def path(self, name: str) -> str:
        return FileSystems.join(self.output, name)


class Measure(beam.DoFn):
    """Source -> a Measurement per (model, qstep) and per baseline step."""

    def __init__(self, config: Config):
        self._config = config
        self._measured = Metrics.counter(NAMESPACE, batch_jobs.WRITTEN)

    def setup(self):
        c = self._config
        self._models = [model_handler.ExportedSandwich.load(path, tile=c.tile, halo=c.halo)
                        for path in c.models]

    def process(self, source):
        c = self._config
        pixels = source.pixels.shape[0] * source.pixels.shape[1]
        for model in self._models:
            for qstep in c.qsteps or [model.spec.qstep * s for s in DEFAULT_QSTEP_SCALES]:
                bits, psnr = measure_sandwich(model, source.pixels, source.source_bit_depth, qstep,
                                              source.stamp)
                yield Measurement(model.spec.model_id, float(qstep), source.path, bits, pixels, psnr)
        for qstep in c.baseline_qsteps:
            bits, psnr = measure_baseline(c.scenario, source.pixels, qstep)
            yield Measurement(BASELINE, float(qstep), source.path, bits, pixels, psnr)
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
        | "Decode" >> DecodeSources(config.scenario.bit_depth, config.max_pixels,
                                    config.scenario.factor))
    _ = (sources
         | "Measure" >> beam.ParDo(Measure(config))
         | "WritePerImage" >> batch_jobs.WriteJsonLines(config.path(PER_IMAGE_FILE)))
    _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(config.path(DEAD_LETTER_FILE))


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


def summarise(measurements, scenario: scenarios.Scenario) -> dict:
    """The RD curves (CompressAI's shape), the sandwich front, and BD metrics.

    The sandwich front is the Pareto front over every model's points, since
    a deployment picks the best model and qstep for each rate.
    """
    by_method = curves(measurements)
    baseline = by_method.pop(BASELINE)
    models = sorted(by_method)
    if not models:
        raise ValueError("no sandwich measurements to summarise")
    all_bpp = [b for m in models for b in by_method[m]["bpp"]]
    all_psnr = [p for m in models for p in by_method[m]["psnr"]]
    front_bpp, front_psnr = metrics.pareto_front(all_bpp, all_psnr)
    front = {"bpp": front_bpp, "psnr": front_psnr}
    images = len({m.image for m in measurements})
    where = f"{images} images, {scenario.name} ({scenario.bit_depth}-bit, factor {scenario.factor})"
    methods = [{"name": BASELINE, "description": f"scenario baseline, real JPEG; {where}",
                "results": baseline}]
    methods += [{"name": m, "description": f"sandwich model {m}, real JPEG; {where}",
                 "results": by_method[m]} for m in models]
    methods.append({"name": SANDWICH, "description": f"Pareto front of {models}; {where}",
                    "results": front})
    return {
        "scenario": dataclasses.asdict(scenario),
        "images": images,
        "methods": methods,
        "bd_vs_baseline": {m["name"]: _bd(baseline, m["results"]) for m in methods[1:]},
    }


def table(summary: dict) -> str:
    """The summary as a person reads it: every RD point (mean over images)
    of every method, then BD-rate and BD-PSNR against the baseline."""
    lines = [f"{'method':<28} {'bpp':>7} {'PSNR dB':>8}"]
    for method in summary["methods"]:
        results = method["results"]
        for bpp, psnr in zip(results["bpp"], results["psnr"]):
            lines.append(f"{method['name'][-28:]:<28} {bpp:7.3f} {psnr:8.2f}")
    for name, bd in summary["bd_vs_baseline"].items():
        rate = "undefined" if bd.get("bd_rate") is None else f"{bd['bd_rate']:+.1f}%"
        quality = "undefined" if bd.get("bd_psnr") is None else f"{bd['bd_psnr']:+.2f} dB"
        lines.append(f"{name[-28:]}: BD-rate {rate}, BD-PSNR {quality} vs baseline")
    return "\n".join(lines)


def plot(summary: dict, path: str) -> None:
    """The RD plot: baseline, every model's points, the sandwich front."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for method in summary["methods"]:
        name, results = method["name"], method["results"]
        bd = summary["bd_vs_baseline"].get(name, {})
        label = name if bd.get("bd_rate") is None else (
            f"{name} (BD-rate {bd['bd_rate']:+.1f}%, BD-PSNR {bd['bd_psnr']:+.2f} dB)")
        style = {BASELINE: dict(color="black", marker="s"),
                 SANDWICH: dict(color="tab:red", linewidth=2.5)}.get(
            name, dict(linestyle="--", marker="o", alpha=0.6))
        axes.plot(results["bpp"], results["psnr"], label=label, **style)
    s = summary["scenario"]
    axes.set(xlabel="bits per source pixel", ylabel=f"PSNR (dB, {s['bit_depth']}-bit peak)",
             title=f"{s['name']}: sandwich vs baseline, real JPEG ({summary['images']} images)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
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


def _common_scenario(model_dirs) -> scenarios.Scenario:
    found = {scenarios.from_spec(model_handler.read_spec(d)) for d in model_dirs}
    if len(found) != 1:
        raise SpecError(f"the models are for different scenarios: {sorted(map(str, found))}; "
                        "evaluate them separately")
    return found.pop()


def parse_args(argv=None) -> tuple[Config, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True,
                        help="export dirs of one scenario (e.g. one per training gamma)")
    parser.add_argument("--input", required=True, help="glob of held-out images, local or gs://")
    parser.add_argument("--output", required=True, help="results directory, local or gs://")
    parser.add_argument("--qsteps", type=float, nargs="+", default=None,
                        help="sandwich JPEG steps; if not given, each model's trained "
                             f"step times {DEFAULT_QSTEP_SCALES}")
    parser.add_argument("--baseline_qsteps", type=float, nargs="+",
                        default=list(DEFAULT_BASELINE_QSTEPS), help="baseline JPEG steps")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS)
    add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    if len(args.baseline_qsteps) < 2 or (args.qsteps is not None and len(args.qsteps) < 2):
        parser.error("an RD curve needs at least two steps")
    models = tuple(m.rstrip("/") for m in args.models)
    scenario = _common_scenario(models)
    tiling.check_layout(args.tile, args.halo, scenario.factor)
    return Config(args.input, args.output.rstrip("/"), models,
                  tuple(args.qsteps) if args.qsteps else None, tuple(args.baseline_qsteps),
                  scenario, args.max_pixels, args.tile, args.halo), beam_args


def run(argv=None) -> dict:
    """Runs the measurements as a Beam job, then writes and returns the summary."""
    config, beam_args = parse_args(argv)
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    # Checked before the summary: an image lost on the way would bias the means.
    account = batch_jobs.account(batch_jobs.counters(result, NAMESPACE),
                                 config.path(DEAD_LETTER_FILE), outputs="measured")
    with FileSystems.open(config.path(PER_IMAGE_FILE)) as f:
        measurements = [Measurement.from_json(line) for line in f.read().decode().splitlines()]
    summary = summarise(measurements, config.scenario)
    write_results(summary, config)
    print(table(summary))
    print(account)
    print(f"{summary['images']} images measured; unusable files -> "
          f"{config.path(DEAD_LETTER_FILE)}; results: {config.output} ({SUMMARY_FILE}, {PLOT_FILE})")
    return summary


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    run(argv if argv is not None else sys.argv[1:])
    return 0


if __name__ == "__main__":
    from pipelines import evaluate

    sys.exit(evaluate.main())

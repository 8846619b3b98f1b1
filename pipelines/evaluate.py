r"""Rate-distortion with the real codec: sandwich models against their
baselines and against what users would pick instead, in PSNR and in what
people see.

    python -m pipelines.evaluate --models export/x1-g10 export/x2-g50 \
        --input 'heldout/*.png' --output results/ [--alternatives jpeg jpegli avif jxl] \
        [--metrics psnr ms-ssim butteraugli]

For every held-out image, each exported model (e.g. one per gamma and
factor; models of different scenarios are measured together when their
sources have one bit depth) runs the deployed path at each of its qsteps
(pre-processor, the bottleneck file exactly as `pipelines.compress` writes
it, header included, the real decoder, post-processor); each scenario's
baseline runs at each JPEG step; and each alternative codec
(`sandwich.alternatives`: plain JPEG, jpegli, AVIF, JPEG XL) at each quality,
on the source itself (8-bit) or at its 8-bit ceiling (deeper sources: the
source rounded down to 8 bits, coded, scaled back). Bits per pixel count
the whole file per *source* pixel. An RD point is the mean of the images'
bpp and of each metric, as CompressAI reports them.

A factor-1 8-bit model's bottleneck is itself a picture that any browser
shows without the post-processor; the `<model_id>-view` rows measure it so:
the very file of the model's row (same bits), decoded by Pillow and compared
with the source. This is what a reader without the post-processor sees
against a plain JPEG of the same size. A factor-2 or 4 model has no view
row, since a viewer shows a picture smaller than the source, nor does a
deeper model: a viewer shows its bottleneck's 8-bit values, so the row
would mostly measure the rounding to 8 bits (the alternatives' 8-bit
ceiling shows that already).

The metrics (`--metrics`; `sandwich.metrics`, `sandwich.perceptual`), all
on RGB at the source's peak (2^d - 1 for a d-bit source):
- PSNR, always: the training objective, the one every earlier figure uses;
- MS-SSIM: TensorFlow's `ssim_multiscale` (5 scales, the definition
  CompressAI evaluates with and the papers report), reported linear and in
  dB (`-10 log10(1 - MS-SSIM)` of the mean). It needs both sides of an
  image at least 161 pixels; a smaller image becomes a dead letter that
  says so, not a value on another scale;
- Butteraugli: libjxl's `butteraugli_main` at its default 80-nit intensity
  target, the largest local distance and the 3-norm; lower is better.
A post-processor trained on squared error can buy PSNR with blur; these
show whether it looks better too.

Written to `--output`:
- `<method>.json` per model, view row, baseline and alternative, and the
  sandwich fronts: `{"name", "description", "results": {"bpp": [...],
  "psnr-rgb": [...], "psnr": [...], "ms-ssim": [...], "ms-ssim-db": [...],
  "butteraugli": [...], "butteraugli-3norm": [...], "qstep": [...]}}`
  (the perceptual keys where measured; "butteraugli" is the mean largest
  distance), what CompressAI's plot tool (`python -m compressai.utils.plot
  -f *.json`) reads; `qstep` is the JPEG step, or the quality for an
  alternative;
- the fronts: `sandwich`, the upper envelope of all models' curves in PSNR,
  and `sandwich-ms-ssim`, `sandwich-butteraugli`, each the envelope of the
  models' curves in that metric (what a deployment picking by that metric
  reaches); each point is a measured (model, qstep), with `model` and every
  metric listed;
- `summary.json`: those objects, the metrics measured (`metrics`), and
  `bd[reference][method]`: every model against its own baseline and every
  alternative, `sandwich` against every baseline and alternative, each view
  row against plain JPEG and jpegli, each alternative against plain JPEG:
  `bd_rate` (%, negative = fewer bits) and `bd_psnr` (dB) at equal PSNR,
  `bd_rate_ms_ssim` at equal MS-SSIM in dB, `bd_rate_butteraugli` at equal
  Butteraugli 3-norm (on `-10 log10` of it, higher is better), each with
  `<key>_undefined` saying why where it is null; the `sandwich` row takes
  each metric on that metric's front; for deeper sources, the 16-bit PNG's
  bpp (`lossless_png_bpp`);
- `per_image.jsonl`: every image's bits and metrics at every point
  (`Measurement`);
- `rd.png` (PSNR), `rd_ms-ssim.png` (MS-SSIM in dB), `rd_butteraugli.png`
  (3-norm): the RD plots.

The measurements run as a Beam job (each worker loads every model once), so
a large evaluation set scales out like the compression jobs.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import sys
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics import Metrics

from codec import exported, shipped
from pipelines import batch_jobs, beam_options, jobs, model_handler, report
from pipelines.dead_letters import TryFlatMap
from pipelines.eval_results import (CEILING, LEVELS, LOSSLESS, METRICS, PER_IMAGE_FILE,
                                    PLOT_FILES, SANDWICH, SUMMARY_FILE, VIEW, Measurement,
                                    read_measurements)
from pipelines.method_files import EightBitCeiling, alternative_files, sandwich_files
from sandwich import alternatives, metrics, perceptual
from sandwich.errors import Rejected
from sandwich.image_io import DEFAULT_MAX_PIXELS, encode_png16
from sandwich.jpeg.tables import DEFAULT_MODE

# `sandwich.scenarios` and TensorFlow are imported where they run, so that
# `sandwich-eval --help` and a flag's error answer without loading TensorFlow.
if TYPE_CHECKING:
    from sandwich import scenarios

NAMESPACE = "evaluate"
# The sandwich front on each metric: the models' upper envelope in it.
FRONTS = {"psnr": SANDWICH, "ms-ssim": f"{SANDWICH}-ms-ssim",
          "butteraugli": f"{SANDWICH}-butteraugli"}
# Per metric: Measurement field -> the key of its mean in a method's results
# (CompressAI's names; "butteraugli" is the largest distance, as libjxl prints first).
RESULT_KEYS = {"psnr": {"psnr": "psnr"}, "ms-ssim": {"ms_ssim": "ms-ssim"},
               "butteraugli": {"butteraugli": "butteraugli",
                               "butteraugli_3norm": "butteraugli-3norm"}}
# Per metric: the suffix of its BD-rate key (`bd_rate` is PSNR's).
BD_SUFFIX = {"psnr": "", "ms-ssim": "_ms_ssim", "butteraugli": "_butteraugli"}
LABELS = {"psnr": "PSNR", "ms-ssim": "MS-SSIM (dB)",
          "butteraugli": "Butteraugli 3-norm (-10 log10)"}
# Around the trained step: halving it roughly doubles the rate.
SANDWICH_POINTS = 5  # qsteps per model: over its range, or half to twice its step
DEFAULT_BASELINE_QSTEPS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96)
# The alternatives' qualities for deeper sources: up to 100, the nearest any
# 8-bit JPEG comes to the 8-bit ceiling.
DEEPER_QUALITIES = (*alternatives.DEFAULT_QUALITIES, 98, 100)


def baseline_name(scenario: scenarios.Scenario) -> str:
    """`baseline-x2`: a scenario's baseline, by factor (and mode and table
    shape, where not the defaults: `baseline-x1-standard` codes with JPEG's
    Annex K tables, the baseline of a model trained with them)."""
    mode = "" if scenario.jpeg_mode == DEFAULT_MODE else (
        f"-{scenario.jpeg_mode.name}")
    shape = "" if scenario.table_shape == "flat" else f"-{scenario.table_shape}"
    return f"baseline-x{scenario.factor}{mode}{shape}"


def view_name(model_id: str) -> str:
    return f"{model_id}{VIEW}"


def has_view(factor: int, bit_depth: int) -> bool:
    """Whether a model's bottleneck is a picture of the source as a viewer
    shows it: full size (factor 1) and the source's own 8-bit values."""
    return factor == 1 and bit_depth == 8


def quality(reconstruction, source: np.ndarray, bit_depth: int,
            chosen=("psnr",)) -> dict[str, float]:
    """The quality fields of a `Measurement` of `reconstruction` against
    `source` (`[h, w, 3]`, same dtype), at the peak of `bit_depth`, for the
    metrics `chosen`."""
    reconstruction = np.asarray(reconstruction)
    fields = {"psnr": float(metrics.psnr(reconstruction[None], source[None], bit_depth)[0])}
    if "ms-ssim" in chosen:
        fields["ms_ssim"] = perceptual.ms_ssim(source, reconstruction, bit_depth)
    if "butteraugli" in chosen:
        fields["butteraugli"], fields["butteraugli_3norm"] = perceptual.butteraugli(
            source, reconstruction, bit_depth)
    return fields


def measure_sandwich(model: exported.ExportedSandwich, pixels: np.ndarray,
                     source_bit_depth: int, qsteps,
                     source_stamp: str = "") -> list[tuple[int, float]]:
    """[(file bits, PSNR)] per qstep of the deployed path (`sandwich_files`)."""
    return [(8 * len(data), quality(reconstruction, pixels, model.spec.bit_depth)["psnr"])
            for data, reconstruction in sandwich_files(model, pixels, source_bit_depth, qsteps,
                                                       source_stamp)]


def measure_baseline(scenario: scenarios.Scenario, pixels: np.ndarray,
                     qstep: float) -> tuple[int, float]:
    """(file bits, PSNR) of the scenario's baseline through the real codec."""
    reconstruction, bits = scenario.baseline(pixels[None], qstep)
    return int(bits[0]), quality(reconstruction[0], pixels, scenario.bit_depth)["psnr"]


def measure_alternative(name: str, pixels: np.ndarray, bit_depth: int,
                        qualities) -> list[tuple[int, float]]:
    """[(file bits, PSNR)] per quality of an alternative codec (`alternative_files`)."""
    return [(8 * len(data), quality(decoded, pixels, bit_depth)["psnr"])
            for data, decoded in alternative_files(name, pixels, bit_depth, qualities)]


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
    metrics: tuple[str, ...] = ("psnr",)
    # Photos the report shows side by side (coded again on the driver).
    report_photos: int = 8

    @property
    def bit_depth(self) -> int:
        return self.scenarios[0].bit_depth


# The shortest image side each metric measures (`sandwich.perceptual`).
MIN_SIDES = {"ms-ssim": perceptual.MS_SSIM_MIN_SIDE, "butteraugli": perceptual.BUTTERAUGLI_MIN_SIDE}


class CheckSize:
    """`codec.Source` -> itself, or `Rejected` if a metric chosen cannot measure
    an image of its size (a dead letter that says so, rather than a failed
    job or a value on another scale)."""

    def __init__(self, chosen):
        self._sides = {metric: side for metric, side in MIN_SIDES.items() if metric in chosen}

    def __call__(self, source):
        height, width = source.pixels.shape[:2]
        short = {m: side for m, side in self._sides.items() if min(height, width) < side}
        if short:
            raise Rejected(f"{width}x{height} is too small for " + ", ".join(
                f"{m} (both sides at least {side} pixels)" for m, side in short.items())
                + "; leave it out of --metrics to measure this image")
        yield source


def _path_of_source(source) -> str:
    return source.path


class Measure(beam.DoFn):
    """`codec.Source` -> a Measurement per (model, qstep), per (view, qstep), per
    baseline step and per alternative quality."""

    def __init__(self, config: Config):
        self._config = config
        self._measured = Metrics.counter(NAMESPACE, batch_jobs.WRITTEN)

    def setup(self):
        c = self._config
        self._models = [model_handler.load(
            path, tile=c.tile, halo=c.halo, worker_processes=c.worker_processes)
            for path in c.models]

    def process(self, source):
        c = self._config
        pixels = source.pixels.shape[0] * source.pixels.shape[1]

        def measured(method, qstep, bits, reconstruction):
            return Measurement(method, float(qstep), source.path, bits, pixels,
                               **quality(reconstruction, source.pixels, c.bit_depth, c.metrics))

        for model in self._models:
            qsteps = c.qsteps or model.spec.qsteps(SANDWICH_POINTS)
            view = has_view(model.spec.factor, model.spec.bit_depth)
            for qstep, (data, reconstruction) in zip(qsteps, sandwich_files(
                    model, source.pixels, source.source_bit_depth, qsteps, source.stamp)):
                yield measured(model.spec.model_id, qstep, 8 * len(data), reconstruction)
                if view:
                    yield measured(view_name(model.spec.model_id), qstep, 8 * len(data),
                                   alternatives.pillow_decode(data))
        for scenario in c.scenarios:
            for qstep in c.baseline_qsteps:
                reconstruction, bits = scenario.baseline(source.pixels[None], qstep)
                yield measured(baseline_name(scenario), qstep, int(bits[0]), reconstruction[0])
        for name in c.alternatives:
            for level, (data, decoded) in zip(c.qualities, alternative_files(
                    name, source.pixels, c.bit_depth, c.qualities)):
                yield measured(name, level, 8 * len(data), decoded)
        if c.bit_depth > 8:
            lossless = 8 * len(encode_png16(source.pixels, c.bit_depth))
            yield Measurement(LOSSLESS, 0.0, source.path, lossless, pixels, float("inf"))
            ceiling = EightBitCeiling(c.bit_depth)
            rounded = ceiling.back(ceiling.rgb(source.pixels), source.pixels.shape)
            yield Measurement(CEILING, 0.0, source.path, 0, pixels, float(
                metrics.psnr(rounded[None], source.pixels[None], c.bit_depth)[0]))
        self._measured.inc()


def _count_input(metadata):
    Metrics.counter(NAMESPACE, batch_jobs.INPUTS).inc()
    return metadata


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    sources, unreadable = (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(config.input)
        | "CountInputs" >> beam.Map(_count_input)
        | "ReadMatches" >> fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED)
        | "Decode" >> jobs.DecodeSources(NAMESPACE, config.bit_depth, config.max_pixels,
                                         min(s.factor for s in config.scenarios)))
    sources, too_small = sources | "CheckSize" >> TryFlatMap(
        CheckSize(config.metrics), step="check_size", path_of=_path_of_source)
    _ = (sources
         | "Measure" >> beam.ParDo(Measure(config))
         | "WritePerImage" >> batch_jobs.WriteJsonLines(config.path(PER_IMAGE_FILE)))
    _ = ((unreadable, too_small) | "DeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> batch_jobs.WriteJsonLines(config.dead_letter_path))


def measured_metrics(measurements) -> tuple[str, ...]:
    """The metrics every measurement (but the levels: lossless size, 8-bit
    ceiling) carries, in `METRICS` order."""
    coded = [m for m in measurements if m.method not in LEVELS]
    return tuple(metric for metric in METRICS
                 if all(getattr(m, field) is not None
                        for field in RESULT_KEYS[metric] for m in coded))


def curves(measurements) -> dict[str, dict[str, list[float]]]:
    """Per method, the RD points by qstep: mean bpp and the mean of every
    metric measured over images (MS-SSIM's dB form is that of the mean, as
    CompressAI's plot tool takes it).

    Every point must cover the same images, or the means would compare
    different pictures.
    """
    measurements = list(measurements)
    chosen = measured_metrics(measurements)
    by_point = collections.defaultdict(list)
    for m in measurements:
        by_point[m.method, m.qstep].append(m)
    images = {frozenset(m.image for m in group) for group in by_point.values()}
    if not images:
        raise ValueError("no image was measured: every input is a dead letter (their "
                         "reasons are in the job's dead_letters.jsonl)")
    if len(images) != 1:
        raise ValueError("RD points cover different sets of images")
    out = {}
    for (method, qstep), group in sorted(by_point.items()):
        curve = out.setdefault(method, collections.defaultdict(list))
        curve["qstep"].append(qstep)
        curve["bpp"].append(float(np.mean([m.bpp for m in group])))
        for metric in chosen:
            for field, key in RESULT_KEYS[metric].items():
                curve[key].append(float(np.mean([getattr(m, field) for m in group])))
    for method, curve in out.items():
        curve["psnr-rgb"] = curve["psnr"]  # The key CompressAI's plot tool reads.
        if "ms-ssim" in chosen:
            curve["ms-ssim-db"] = [perceptual.ms_ssim_db(v) for v in curve["ms-ssim"]]
        out[method] = dict(curve)
    return out


def quality_axis(results: dict, metric: str) -> list[float]:
    """A curve's quality in `metric` on an axis where higher is better (what
    `metrics.pareto_front`, `upper_envelope` and the BD metrics assume):
    PSNR, MS-SSIM in dB, and `-10 log10` of the Butteraugli 3-norm."""
    if metric == "butteraugli":
        return [perceptual.butteraugli_db(v) for v in results["butteraugli-3norm"]]
    return results["ms-ssim-db" if metric == "ms-ssim" else "psnr"]


def _bd(anchor: dict, test: dict, metric: str = "psnr") -> dict:
    """BD-rate at equal `metric` (and BD-PSNR for PSNR) of `test` against
    `anchor`, each on its Pareto front in that metric, or why undefined."""
    fronts = [metrics.pareto_front(c["bpp"], quality_axis(c, metric)) for c in (anchor, test)]
    result = {}
    measures = [(f"bd_rate{BD_SUFFIX[metric]}", metrics.bd_rate)]
    if metric == "psnr":
        measures.append(("bd_psnr", metrics.bd_psnr))
    for name, fn in measures:
        try:
            result[name] = fn(*fronts[0], *fronts[1])
        except ValueError as e:
            # `metrics` words its reasons for PSNR, the axis it was written for.
            result[name], result[f"{name}_undefined"] = None, str(e).replace(
                "PSNR", LABELS[metric])
    return result


def _bd_all(anchor: dict, tests: dict[str, dict]) -> dict:
    """`_bd` for every metric, `tests` giving the test curve per metric (a
    front differs per metric, a method's curve does not)."""
    return {key: value for metric, test in tests.items()
            for key, value in _bd(anchor, test, metric).items()}


def front(by_method: dict, models, metric: str) -> dict:
    """The sandwich front in `metric`: the upper envelope of the models'
    curves in it (`metrics.upper_envelope`), since a deployment
    (`compress --target_bpp`) picks the best model and qstep for each rate;
    its points, measured ones, carry every metric, and their `model`."""
    axes = {m: quality_axis(by_method[m], metric) for m in models}
    where = {}
    for m in models:
        for i, point in enumerate(zip(by_method[m]["bpp"], axes[m])):
            where.setdefault(point, (m, i))
    picked = [where[point] for point in zip(*metrics.upper_envelope(
        [(by_method[m]["bpp"], axes[m]) for m in models]))]
    keys = [k for k in by_method[models[0]] if k != "psnr-rgb"]
    out = {key: [by_method[m][key][i] for m, i in picked] for key in keys}
    out["psnr-rgb"], out["model"] = out["psnr"], [m for m, _ in picked]
    return out


def _methods(by_method: dict, model_scenarios: dict, fronts: dict, images: int) -> list[dict]:
    """The methods of the summary, each described: baselines, alternatives,
    models, their view rows, and the fronts."""
    models = sorted(model_scenarios)
    scenario_set = sorted(set(model_scenarios.values()), key=baseline_name)
    bit_depth = scenario_set[0].bit_depth
    where = f"{images} images, {bit_depth}-bit"
    methods = [{"name": b, "description": f"scenario baseline, real JPEG; {where}",
                "results": by_method[b]}
               for b in sorted({baseline_name(s) for s in scenario_set})]
    methods += [{"name": a, "description": f"{alternatives.DESCRIPTIONS[a]}"
                 f"{'' if bit_depth == 8 else ', at the 8-bit ceiling'}; {where}",
                 "results": by_method[a]}
                for a in alternatives.ALTERNATIVES if a in by_method]
    for m in models:
        s = model_scenarios[m]
        methods.append({"name": m, "description": f"sandwich model {m} ({s.name} x{s.factor}, "
                        f"{s.jpeg_mode.name}), real JPEG; {where}", "results": by_method[m]})
    methods += [{"name": view_name(m), "description": f"bottleneck of {m} as a viewer shows "
                 f"it: the same file, decoded by Pillow, no post-processor; {where}",
                 "results": by_method[view_name(m)]}
                for m in models if view_name(m) in by_method]
    methods += [{"name": FRONTS[metric], "description": f"upper envelope of {models} in "
                 f"{metric}; {where}", "results": results} for metric, results in fronts.items()]
    return methods


def _bd_table(by_method: dict, model_scenarios: dict, fronts: dict, chosen) -> dict:
    """`bd[reference][method]`: every model against its own baseline and the
    alternatives, the sandwich (each metric on its own front) against every
    baseline and alternative, each view row against plain JPEG and jpegli,
    and each alternative against plain JPEG."""
    def each(curve):
        return {metric: curve for metric in chosen}

    own_baseline = {m: baseline_name(s) for m, s in model_scenarios.items()}
    others = [a for a in alternatives.ALTERNATIVES if a in by_method]
    bd = {reference: {} for reference in sorted(set(own_baseline.values())) + others}
    for m in sorted(model_scenarios):
        for reference in [own_baseline[m], *others]:
            bd[reference][m] = _bd_all(by_method[reference], each(by_method[m]))
    for reference in bd:
        bd[reference][SANDWICH] = _bd_all(by_method[reference], fronts)
    for m in sorted(model_scenarios):
        if view_name(m) in by_method:
            for reference in ("jpeg", "jpegli"):
                if reference in by_method:
                    bd[reference][view_name(m)] = _bd_all(by_method[reference],
                                                          each(by_method[view_name(m)]))
    for a in others:
        if a != "jpeg" and "jpeg" in bd:
            bd["jpeg"][a] = _bd_all(by_method["jpeg"], each(by_method[a]))
    return bd


def summarise(measurements, model_scenarios: dict[str, scenarios.Scenario]) -> dict:
    """The RD curves (CompressAI's shape), the sandwich fronts, and BD metrics.

    `model_scenarios` maps each model id to its scenario. The sandwich front
    in each metric is the upper envelope of every model's curve in that
    metric (`front`); the PSNR one is `sandwich`, and `bd[...]["sandwich"]`
    takes each metric on its own front.
    """
    measurements = list(measurements)
    levels = {level: [m for m in measurements if m.method == level] for level in LEVELS}
    by_method = curves([m for m in measurements if m.method not in LEVELS])
    chosen = measured_metrics(measurements)
    models = sorted(model_scenarios)
    if not models or any(m not in by_method for m in models):
        raise ValueError("no sandwich measurements to summarise")
    fronts = {metric: front(by_method, models, metric) for metric in chosen}
    images = len({m.image for m in measurements})
    scenario_set = sorted(set(model_scenarios.values()), key=baseline_name)
    summary = {
        "scenarios": [dataclasses.asdict(s) for s in scenario_set],
        "bit_depth": scenario_set[0].bit_depth,
        "images": images,
        "metrics": list(chosen),
        "methods": _methods(by_method, model_scenarios, fronts, images),
        "own_baseline": {m: baseline_name(s) for m, s in model_scenarios.items()},
        "bd": _bd_table(by_method, model_scenarios, fronts, chosen),
    }
    if levels[LOSSLESS]:
        summary["lossless_png_bpp"] = float(np.mean([m.bpp for m in levels[LOSSLESS]]))
    if levels[CEILING]:
        summary["eight_bit_ceiling_psnr"] = float(np.mean([m.psnr for m in levels[CEILING]]))
    return summary


def format_bd(bd: dict) -> str:
    """'+1.23 dB / -20.1%', 'undefined' for a metric the curves do not define."""
    quality = "undefined" if bd.get("bd_psnr") is None else f"{bd['bd_psnr']:+.2f} dB"
    rate = "undefined" if bd.get("bd_rate") is None else f"{bd['bd_rate']:+.1f}%"
    return f"{quality} / {rate}"


def format_bd_rates(bd: dict, chosen) -> str:
    """PSNR's 'BD-PSNR / BD-rate', then the BD-rate at equal MS-SSIM and
    at equal Butteraugli where measured."""
    cells = [f"PSNR {format_bd(bd)}"]
    for metric in (m for m in chosen if m != "psnr"):
        rate = bd.get(f"bd_rate{BD_SUFFIX[metric]}")
        cells.append(f"{metric} {'undefined' if rate is None else f'{rate:+.1f}%'}")
    return "  ".join(cells)


def table(summary: dict) -> str:
    """The summary as a person reads it: every RD point (mean over images)
    of every method in every metric, then the BD figures against each
    reference."""
    chosen = summary.get("metrics", ["psnr"])
    columns = [("bpp", "bpp", 7, 3), ("PSNR dB", "psnr", 8, 2)]
    if "ms-ssim" in chosen:
        columns.append(("MS-SSIM", "ms-ssim", 8, 4))
    if "butteraugli" in chosen:
        columns += [("B 3-norm", "butteraugli-3norm", 8, 3), ("B max", "butteraugli", 8, 3)]
    lines = [f"{'method':<28} " + " ".join(f"{head:>{width}}" for head, _, width, _ in columns)]
    for method in summary["methods"]:
        results = method["results"]
        for i in range(len(results["bpp"])):
            lines.append(f"{method['name'][-28:]:<28} " + " ".join(
                f"{results[key][i]:{width}.{digits}f}" for _, key, width, digits in columns))
    if "lossless_png_bpp" in summary:
        lines.append(f"{'16-bit PNG (lossless)':<28} {summary['lossless_png_bpp']:7.3f} "
                     f"{'inf':>8}")
    if "eight_bit_ceiling_psnr" in summary:
        lines.append(f"{'8-bit ceiling (no codec)':<28} {'':>7} "
                     f"{summary['eight_bit_ceiling_psnr']:8.2f}")
    lines.append("BD-PSNR / BD-rate at equal PSNR, and BD-rate at equal MS-SSIM (dB) and "
                 "Butteraugli 3-norm, against each reference (over the range both cover; "
                 "the sandwich on each metric's front):")
    for reference, compared in summary["bd"].items():
        for name, bd in compared.items():
            lines.append(f"  {name[-28:]:<28} vs {reference:<16} "
                         f"{format_bd_rates(bd, chosen)}")
    return "\n".join(lines)


def _y_axis(summary: dict, metric: str) -> tuple[str, str]:
    """(results key, axis label) of a metric's RD plot."""
    return {"psnr": ("psnr", f"PSNR (dB, {summary['bit_depth']}-bit peak)"),
            "ms-ssim": ("ms-ssim-db", "MS-SSIM (dB: -10 log10(1 - MS-SSIM)), higher is better"),
            "butteraugli": ("butteraugli-3norm", "Butteraugli 3-norm (libjxl, 80 nits), "
                                                 "lower is better")}[metric]


def _style(summary: dict, name: str, metric: str, lines: dict) -> tuple[str, dict]:
    """(label, line style) of a method in a metric's plot; view rows take
    their model's colour, thin and dotted."""
    colours = {"jpeg": "tab:blue", "jpegli": "tab:green", "avif": "tab:purple",
               "jxl": "tab:brown"}
    if name == FRONTS[metric]:
        label = name
        jpeg = summary["bd"].get("jpeg", {}).get(SANDWICH, {})
        if metric == "psnr" and jpeg.get("bd_psnr") is not None:
            label += f" (BD-PSNR {jpeg['bd_psnr']:+.2f} dB vs plain JPEG)"
        elif metric != "psnr" and jpeg.get(f"bd_rate{BD_SUFFIX[metric]}") is not None:
            label += f" (BD-rate {jpeg[f'bd_rate{BD_SUFFIX[metric]}']:+.1f}% vs plain JPEG)"
        return label, dict(color="tab:red", linewidth=2.5)
    if name.startswith("baseline"):
        # Grey for a baseline with shaped tables, which sits near plain JPEG's curve.
        shaped = name.endswith(("-standard", "-jpegli"))
        return name, dict(color="grey" if shaped else "black", marker="s",
                          markersize=4, linestyle="-" if name.startswith("baseline-x1") else "--")
    if name in colours:
        return name, dict(color=colours[name], marker="^", markersize=4,
                          linestyle=":" if name in ("avif", "jxl") else "-")
    if name.endswith(VIEW) and name[:-len(VIEW)] in lines:
        return name, dict(color=lines[name[:-len(VIEW)]].get_color(), linestyle=":",
                          linewidth=1, marker=".", markersize=3)
    return name, dict(linestyle="--", marker="o", markersize=4, alpha=0.6)


def plot(summary: dict, path: str, metric: str = "psnr") -> None:
    """The RD plot in `metric`: baselines, alternatives, every model's
    points, their view rows, and the front in that metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, label = _y_axis(summary, metric)
    figure, axes = plt.subplots(figsize=(8, 5.5))
    lines = {}
    for method in summary["methods"]:
        name, results = method["name"], method["results"]
        if name in FRONTS.values() and name != FRONTS[metric]:
            continue
        legend, style = _style(summary, name, metric, lines)
        lines[name], = axes.plot(results["bpp"], results[key], label=legend, **style)
    top = max(next(m for m in summary["methods"] if m["name"] == FRONTS[metric])["results"]["bpp"])
    axes.set_xlim(0, 1.6 * top)
    axes.set(xlabel="bits per source pixel", ylabel=label,
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
    for metric in summary["metrics"]:
        plot(summary, config.path(PLOT_FILES[metric]), metric)


def _model_specs(model_dirs) -> dict:
    """Model id -> spec; ids distinct, all taking sources of one bit depth."""
    specs = model_handler.read_specs(model_dirs)
    exported.source_bit_depth(specs.values())
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
    parser.add_argument("--models", nargs="+", default=[shipped.DEFAULT_SET],
                        help="export dirs, or directories of them, of one source bit depth "
                             "(e.g. per gamma and factor), or shipped models or sets "
                             "(codec.shipped): by default the set for 8-bit photos")
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
                        help="quality settings of the alternatives (default "
                             f"{', '.join(map(str, alternatives.DEFAULT_QUALITIES))}; for "
                             "deeper sources also 98 and 100, near the 8-bit ceiling)")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS,
                        help="quality metrics; PSNR is always measured. Per point on "
                             "coffee.png (600x400, 0.24 megapixels; the time grows with the "
                             "pixels), one core: ms-ssim (TensorFlow's; both sides of an image "
                             f"at least {perceptual.MS_SSIM_MIN_SIDE} pixels, a smaller one "
                             "becomes a dead letter) 0.12 s; butteraugli (libjxl's "
                             f"butteraugli_main, Debian: {perceptual.BUTTERAUGLI_PACKAGE}) "
                             "0.23 s, 0.17 s of it the binary, about 0.9 s per megapixel. An "
                             "image has some 40 points: '--metrics psnr ms-ssim' for a fast run")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--report_photos", type=int, default=Config.report_photos,
                        help="photos (the first by name) that report.html shows side by side "
                             "at equal bytes, each coded again by every method on the "
                             "job's driver; 0: the page has the plots and tables only")
    jobs.add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    if args.report_photos < 0:
        parser.error("--report_photos must be >= 0")
    if (args.baseline_qsteps is not None and len(args.baseline_qsteps) < 2
            or args.qsteps is not None and len(args.qsteps) < 2):
        parser.error("an RD curve needs at least two steps")
    if args.alternatives and args.qualities is not None and len(args.qualities) < 2:
        parser.error("an RD curve needs at least two qualities")
    try:
        chosen = alternatives.check(args.alternatives)
    except ValueError as e:
        parser.error(str(e))
    chosen_metrics = tuple(m for m in METRICS if m == "psnr" or m in args.metrics)
    if "butteraugli" in chosen_metrics and (why := perceptual.available()):
        parser.error(why)
    from sandwich import scenarios

    models = tuple(d for m in args.models for d in model_handler.export_dirs(m))
    specs = _model_specs(models)
    model_scenarios = {model_id: scenarios.from_spec(spec) for model_id, spec in specs.items()}
    distinct = tuple(sorted(set(model_scenarios.values()), key=baseline_name))
    args.tile, args.halo = exported.tile_layout(
        [exported.layout_grid(spec) for spec in specs.values()], args.tile, args.halo)
    qualities = args.qualities or (
        DEEPER_QUALITIES if distinct[0].bit_depth > 8 else alternatives.DEFAULT_QUALITIES)
    config = Config(args.input, args.output.rstrip("/"), models,
                    tuple(args.qsteps) if args.qsteps else None,
                    tuple(args.baseline_qsteps or baseline_steps(specs.values())),
                    distinct, chosen, tuple(qualities), args.max_pixels, args.tile,
                    args.halo, beam_options.worker_processes(beam_args), chosen_metrics,
                    args.report_photos)
    return config, model_scenarios, beam_args


def run(argv=None, save_main_session=False, test_pipeline=None) -> dict:
    """Runs the measurements as a Beam job, then writes and returns the summary."""
    config, model_scenarios, beam_args = parse_args(argv)
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    # Checked before the summary: an image lost on the way would bias the means.
    account = batch_jobs.account(batch_jobs.counters(result, NAMESPACE),
                                 config.dead_letter_path, outputs="measured")
    measurements = read_measurements(config.output)
    summary = summarise(measurements, model_scenarios)
    write_results(summary, config)
    print(table(summary))
    print(account)
    print(f"{summary['images']} images measured; unusable files -> "
          f"{config.dead_letter_path}; results: {config.output} ({SUMMARY_FILE}, "
          f"{', '.join(PLOT_FILES[m] for m in summary['metrics'])})")
    page = report.write_report(config.output, summary, measurements, config.models,
                               tile=config.tile, halo=config.halo, max_pixels=config.max_pixels,
                               max_photos=config.report_photos)
    print(f"report: {page}")
    return summary


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.evaluate`, not from their own __main__.
    from pipelines import evaluate

    sys.exit(evaluate.main())

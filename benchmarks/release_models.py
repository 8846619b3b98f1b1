"""Ships the models a `quality.py` run trained: copies their exports into the package.

    python benchmarks/release_models.py --run out/models --to codec/models

`make models` runs `quality.py` on the public corpus (`corpus.py`) and then
this. Each export of the run is copied to `<to>/<model_id>/` (the id is the
run's model name, which ends in its release, `-r1`: a retrained model ships
under a new id, so old files keep decoding with the weights that wrote
them), and its `model_spec.json` gains `release`: the corpus it trained on
with each source's terms (`corpus.provenance`), the held-out photos, the
commit and the command that trained it, its training budget, and its BD
figures on the held-out photos against plain JPEG and jpegli (and its
factor-1 bottleneck as viewers show it), as the run's evaluation measured
them, and how far its gain over its identity on one held-out photo at one
rate exceeded its recorded gain (`gain_excess`, `codec.rate_control`'s
slack for it). `codec.shipped` reads the copies; nothing else is needed to
use them. `--supersede OLD=NEW` marks a shipped model replaced and drops
its pre-processor: it decodes its files, and codes nothing new.

    python benchmarks/release_models.py --run out/models --gain_excess

records that last figure alone in every shipped model the run evaluated
(models released by an earlier run, whose other records stay theirs).
"""
import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from codec import exported  # noqa: E402
from codec.rate_control import GAIN_EXCESS, GAIN_FIGURE  # noqa: E402
from pipelines.eval_results import PER_IMAGE_FILE, curves_by_image, read_measurements  # noqa: E402
from sandwich.metrics import psnr_at  # noqa: E402
from sandwich.specs import MODEL_SPEC_FILE, ModelSpec  # noqa: E402

from corpus import provenance  # noqa: E402

# The BD figures a release records, of those `pipelines.evaluate` writes.
BD_FIELDS = ("bd_psnr", "bd_rate", "bd_rate_ms_ssim", "bd_rate_butteraugli")
REFERENCES = ("jpeg", "jpegli")
# quality.py's held-out kinds: the photos as given, and their JPEG-sourced copies.
KINDS = {"": "as_given", "-jpeg": "jpeg_sourced"}


def _rounded(figures: dict) -> dict:
    return {name: None if figures.get(name) is None else round(figures[name], 2)
            for name in BD_FIELDS if name in figures}


def held_out_bd(summaries: dict, name: str, scenario: str) -> dict:
    """{kind: {reference: BD figures}} of model `name` (and of its `-view`
    rows, where the evaluation has them) in a quality run's summaries."""
    measured = {}
    for suffix, kind in KINDS.items():
        summary = summaries.get(scenario + suffix)
        if not summary:
            continue
        rows = {}
        for reference in REFERENCES:
            for method in (name, f"{name}-view"):
                figures = summary["bd"].get(reference, {}).get(method)
                if figures:
                    label = "view" if method.endswith("-view") else "model"
                    rows.setdefault(label, {})[reference] = _rounded(figures)
        measured[kind] = rows
    return measured


def gain_excess(measurements, model: str, identity: str, gain: float) -> dict[float, float]:
    """Per octave of rate (its upper end in bpp: the octave (upper / 2,
    upper]), the most by which `model`'s PSNR gain over `identity` (its
    scenario baseline), on one photo at one of its points in that octave,
    exceeds its recorded `gain` (taken as at least 0, as rate control takes
    it): dB, over `measurements` (`per_image.jsonl`'s) wherever the
    identity's curve on that photo covers the point's rate."""
    excess = {}
    for methods in curves_by_image(measurements).values():
        baseline = sorted(methods.get(identity, []))
        for bpp, psnr in methods.get(model, []):
            reached = psnr_at([b for b, _ in baseline], [p for _, p in baseline], bpp)
            if reached is not None:
                upper = 2.0 ** math.ceil(math.log2(bpp))
                over = psnr - reached - max(gain, 0.0)
                excess[upper] = max(excess.get(upper, over), over)
    return excess


def run_gain_excess(run: str, summaries: dict, spec: ModelSpec) -> list | None:
    """`gain_excess` of the model `spec` over every held-out kind the run
    `run` evaluated its scenario on, as `[[upper bpp, dB], ...]` (dB
    rounded up to 0.01), or None where it measured none."""
    bands = {}
    for suffix in KINDS:
        summary = summaries.get(spec.scenario + suffix) or {}
        identity = summary.get("own_baseline", {}).get(spec.model_id)
        results = os.path.join(run, "eval", spec.scenario + suffix)
        if (identity and GAIN_FIGURE in spec.metrics
                and os.path.exists(os.path.join(results, PER_IMAGE_FILE))):
            for upper, over in gain_excess(read_measurements(results), spec.model_id, identity,
                                           spec.metrics[GAIN_FIGURE]).items():
                bands[upper] = max(bands.get(upper, over), over)
    return [[upper, -round(-over, 2)] for upper, over in sorted(bands.items())] or None


def record_gain_excess(run: str, to: str) -> None:
    """Writes `run_gain_excess` into the release record of every model in
    `to` that the quality run `run` evaluated."""
    with open(os.path.join(run, "quality.json")) as f:
        summaries = json.load(f)["summaries"]
    evaluated = {name for summary in summaries.values() if summary
                 for name in summary.get("own_baseline", {})}
    for model_id in sorted(evaluated):
        path = os.path.join(to, model_id, MODEL_SPEC_FILE)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            spec = ModelSpec.from_json(f.read())
        excess = run_gain_excess(run, summaries, spec)
        spec = dataclasses.replace(spec, release={**spec.release, GAIN_EXCESS: excess})
        with open(path, "w") as f:
            f.write(spec.to_json())
        print(f"{model_id}: gain over its identity above its recorded one by at most "
              f"(bpp up to: dB) {excess}")


def size_of(directory: str) -> int:
    """Bytes of every file under `directory`."""
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(directory)
               for n in names)


def commit() -> str:
    """The checkout's commit, marked `-dirty` if it has uncommitted changes;
    "unknown" outside a git checkout (a copied tree), which a release must
    then be given (`--commit`): the shipped-model tests refuse it."""
    try:
        head = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    dirty = subprocess.call(["git", "diff", "--quiet", "HEAD"], cwd=REPO)
    return head + ("-dirty" if dirty else "")


def release(run: str, to: str, command: str | None = None, trained_at: str | None = None,
            only=None) -> list[str]:
    """Copies every export of the quality run in `run` (those named in
    `only`, if given: a run that reused earlier releases' exports ships only
    what it trained) into `to`; returns the model ids."""
    with open(os.path.join(run, "quality.json")) as f:
        record = json.load(f)
    corpus = provenance(record["train"])
    shipped = []
    unknown = sorted(set(only or ()) - set(record["models"]))
    if unknown:
        raise SystemExit(f"the run trained no model {unknown}; it has {sorted(record['models'])}")
    for name, model in record["models"].items():
        if only and name not in only:
            continue
        scenario = model.split("=", 1)[-1].split(":")[0]
        export = os.path.join(run, "runs", name, "export")
        with open(os.path.join(export, MODEL_SPEC_FILE)) as f:
            spec = ModelSpec.from_json(f.read())
        target = os.path.join(to, spec.model_id)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(export, target)
        spec = dataclasses.replace(spec, release={
            "model": model,
            "command": command or record.get("command", ""),
            "commit": trained_at or record.get("commit") or commit(),
            "budget_minutes": record["budget_minutes"],
            "training_minutes": record.get("training_minutes", {}).get(name),
            "trained_on": corpus,
            "held_out": [os.path.basename(p) for p in record["held_out"]],
            "held_out_bd": held_out_bd(record["summaries"], spec.model_id, scenario),
            GAIN_EXCESS: run_gain_excess(run, record["summaries"], spec),
        })
        with open(os.path.join(target, MODEL_SPEC_FILE), "w") as f:
            f.write(spec.to_json())
        shipped.append(spec.model_id)
        print(f"{spec.model_id}: {size_of(target) / 1e6:.1f} MB -> {target}")
    return shipped


def supersede(to: str, old: str, new: str) -> None:
    """Marks the shipped model `old` as replaced by `new` (both in `to`): it
    stays to decode the files it wrote, out of the default set
    (`codec.shipped`), and without its pre-processor, which would code
    nothing and only grow the package (`exported.can_code`)."""
    paths = {model_id: os.path.join(to, model_id, MODEL_SPEC_FILE) for model_id in (old, new)}
    missing = [model_id for model_id, path in paths.items() if not os.path.exists(path)]
    if missing:
        raise SystemExit(f"no shipped model {missing} in {to}")
    with open(paths[old]) as f:
        spec = ModelSpec.from_json(f.read())
    spec = dataclasses.replace(spec, release={**spec.release, "superseded_by": new})
    with open(paths[old], "w") as f:
        f.write(spec.to_json())
    shutil.rmtree(os.path.join(to, old, exported.PREPROCESSOR), ignore_errors=True)
    print(f"{old}: superseded by {new}; decodes only")


def _figure(value, unit: str) -> str:
    return "undefined" if value is None else f"{value:+.2f}{unit}"


def table(to: str) -> str:
    """The shipped models of `to` and their held-out figures, as markdown:
    per model, held-out kind and row (the model's decompressed output, and
    a factor-1 bottleneck as viewers show it), BD-PSNR and the BD-rates at
    equal MS-SSIM and Butteraugli 3-norm against plain JPEG and against
    jpegli (negative rates: fewer bytes than the reference for the same
    quality)."""
    shown = ("bd_psnr", "bd_rate_ms_ssim", "bd_rate_butteraugli")
    lines = ["| model | size | held-out photos | vs plain JPEG: BD-PSNR, MS-SSIM, Butteraugli | "
             "vs jpegli: BD-PSNR, MS-SSIM, Butteraugli |", "|---|---|---|---|---|"]
    for model_id in sorted(os.listdir(to)):
        path = os.path.join(to, model_id, MODEL_SPEC_FILE)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            spec = ModelSpec.from_json(f.read())
        size = size_of(os.path.dirname(path))
        replaced = spec.release.get("superseded_by")
        about = (f"| `{model_id}` ({spec.scenario} x{spec.factor}, {spec.bit_depth}-bit, "
                 f"{spec.objective}{f'; superseded by `{replaced}`' if replaced else ''}) | "
                 f"{size / 1e6:.1f} MB")
        for kind, rows in spec.release.get("held_out_bd", {}).items():
            for row, references in rows.items():
                cells = [", ".join(_figure(references.get(r, {}).get(name),
                                           " dB" if name == "bd_psnr" else "%")
                                   for name in shown) for r in REFERENCES]
                label = kind.replace("_", " ") + (", bottleneck as viewed" if row == "view" else "")
                lines.append(f"{about} | {label} | {cells[0]} | {cells[1]} |")
                about = "| |"
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=os.path.join(REPO, "out", "models"),
                        help="a quality.py --output directory (its quality.json and runs/)")
    parser.add_argument("--to", default=os.path.join(REPO, "codec", "models"))
    parser.add_argument("--command", default=None,
                        help="the command that trained the run, as the specs record it "
                             "(default: the one quality.py recorded)")
    parser.add_argument("--commit", default=None,
                        help="the commit that trained the run (default: the one quality.py "
                             "recorded, else this checkout's)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="ship only these models of the run (default: all)")
    parser.add_argument("--supersede", nargs="+", default=[], metavar="OLD=NEW",
                        help="mark shipped model OLD as replaced by NEW: it still decodes "
                             "its files, but leaves the default set")
    parser.add_argument("--gain_excess", action="store_true",
                        help="only record the run's gain excess in the shipped models it "
                             "evaluated (codec.rate_control's per-model slack)")
    parser.add_argument("--table", action="store_true",
                        help="only print the shipped models' figures (docs/models.md)")
    args = parser.parse_args(argv)
    if args.gain_excess:
        record_gain_excess(args.run, args.to)
    elif not args.table:
        release(args.run, args.to, args.command, args.commit, args.models)
    for pair in args.supersede:
        old, _, new = pair.partition("=")
        supersede(args.to, old, new)
    print(table(args.to))


if __name__ == "__main__":
    main()

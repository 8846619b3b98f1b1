"""Quality at a CPU budget: does the sandwich beat what users already have?

One command trains a set of sandwich models within a stated budget, on a
corpus that excludes the held-out photographs, evaluates them with the real
codec on the held-out photographs against their baselines and against plain
JPEG and jpegli (and AVIF and JPEG XL with `--context_codecs`), and writes
`quality.md` (tables, plots) and the JSON summaries:

    python benchmarks/quality.py --train 'photos/train/*.png' --held_out 'photos/test/*.png' \
        --budget_minutes 90 --output out/quality

`docs/quality.md` comes from the default photographs plus the 280 public
ones `corpus.py` gathers (one in ten held out, and 128 patches per photo
so that the dataset jobs stay short):

    python benchmarks/quality.py --budget_minutes 80 --patches_per_photo 128 \
        --add_train 'photos/public/*[1-9].png' --add_held_out 'photos/public/*0.png'

By default: the bundled astronaut, chelsea and rocket train; coffee (bundled,
never trained on) and two of scikit-image's photographs are held out. The
models are high_res at factor 1 (a full-resolution JPEG between the
processors), factor 2 and factor 4 (for the rates below plain JPEG's
lowest, 0.03-0.2 bpp), high_bit_depth on synthetic 10-bit sources (2x2
sums of the same photographs; `--deep`: real ones, `hdr_corpus.py`'s) and
gray (colour through a one-component JPEG), each with the trainer's defaults: one
rate-conditioned model per scenario covers its whole range of steps, so the
budget buys training time rather than more models (`benchmarks/ablation.py`
measures that choice against a set of single-step models). The right-hand
quarter of every training photo is held back (`--hold_back`): the trainer
measures itself on it and exports the weights that did best there, so its
choice rests on pixels it never trained on. Each trains for
an equal share of the budget (`--max_train_minutes`), which includes
everything but the evaluation, unless its flags name its own minutes
(`'hr-x1=high_res:1:--max_train_minutes 30'`): the others share the rest.
A run dir of `--output` that holds an export is reused; one that holds
checkpoints but no export goes on training from them.

Photos in real buckets were mostly JPEGs once, and re-encode very
differently from lossless originals, so half of the training photos are
replaced by a copy saved once as a JPEG (`--jpeg_sourced_train`), and the
high_res models are evaluated twice: on the held-out photos as given and on
JPEG-sourced copies of them, reported apart. Every point is measured in
PSNR, MS-SSIM and Butteraugli (`sandwich.perceptual`), and the targets of
the quality issues are checked and reported, met or not: the PSNR ones, the
perceptual ones (BD-rate at equal MS-SSIM and Butteraugli against jpegli and
plain JPEG over 0.25-1.0 bpp, each on the front built in that metric from
the models `codec.shipped`'s default set would keep: those whose file
looks right in any viewer; BD-PSNR also on every model's front), the
bottleneck as a viewer shows it, and the model points that fall below their
identity, plain JPEG or jpegli on some file (which `compress --target_bpp`
replaces).
"""
import argparse
import collections
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from codec import shipped  # noqa: E402
from pipelines import eval_results, evaluate  # noqa: E402
from sandwich import metrics, samples, specs  # noqa: E402

from corpus import SKIMAGE_DIR, jpeg_sourced, ten_bit_copies  # noqa: E402
from release_models import commit  # noqa: E402

# Twelve photos: the three bundled ones, two colour ones of scikit-image's
# and seven of its grey ones (textures, a portrait, the moon, cells), which
# teach the processors to keep texture: trained on the three bundled photos
# alone, models lost up to 2 dB on the held-out motorcycle's fine detail.
DEFAULT_TRAIN = ([os.path.join(samples.SAMPLES_DIR, f"{n}.png")
                  for n in ("astronaut", "chelsea", "rocket")]
                 + [os.path.join(SKIMAGE_DIR, n) for n in (
                     "ihc.png", "retina.jpg", "brick.png", "grass.png", "gravel.png",
                     "camera.png", "moon.png", "coins.png", "cell.png")])
DEFAULT_HELD_OUT = [os.path.join(samples.SAMPLES_DIR, "coffee.png"),
                    os.path.join(SKIMAGE_DIR, "motorcycle_left.png"),
                    os.path.join(SKIMAGE_DIR, "hubble_deep_field.jpg")]
# scenario:factor[:trainer flags]; no flags: the trainer's defaults.
DEFAULT_MODELS = ["high_res:1", "high_res:2", "high_res:4", "high_bit_depth:1", "gray:1"]
PATCH = 64  # and 512 of them per photo: 2M source pixels a photo
PIXELS_PER_PHOTO = 512 * PATCH ** 2
# Bookkeeping only: how the model trains is the trainer's defaults or the model's flags.
RUN_FLAGS = ["--summary_every", "500", "--checkpoint_every", "100000", "--refit_every", "500",
             "--image_every", "100000", "--seed", "0"]
UNBOUNDED_STEPS = ["--steps", "1000000"]  # the time budget ends the run
# The held-back strips (`--hold_back`): at least two patches wide, 64 patches
# of 64x64 cut from each (as many pixels in larger ones), and how many of those
# pixels (spread over all strips) every evaluation of the trainer codes.
SELECT_PIXELS_PER_PHOTO = 64 * PATCH ** 2
SELECT_EVAL_PIXELS = 128 * PATCH ** 2
RATE_RANGE = (0.25, 1.0)
AT_RATE = 0.4
# Held-out kinds: the photos as given, and the same photos once saved as a
# JPEG (`corpus.jpeg_sourced`), as most photos in real buckets are.
KINDS = {"": "as given (lossless originals)", "-jpeg": "JPEG-sourced copies of the same photos"}
# The perceptual targets: BD-rate at equal metric over RATE_RANGE (%, negative = fewer bits).
PERCEPTUAL_TARGETS = {"jpegli": -10.0, "jpeg": -20.0}
PSNR_TARGET = 1.5  # dB BD-PSNR over plain JPEG over RATE_RANGE
GRAY_TARGET = 6.0  # dB BD-PSNR of the gray front over its luma-only baseline
CEILING_TARGET = 1.0  # dB of the high_bit_depth front above the 8-bit ceiling
VIEW_TARGET = 10.0  # % BD-rate of a factor-1 bottleneck as viewed, against plain JPEG, Butteraugli


def _files(patterns) -> list[str]:
    found = sorted({p for pattern in patterns for p in glob.glob(pattern)})
    if not found:
        raise SystemExit(f"no files match {patterns}")
    return found


def _copy_all(paths, directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    for path in paths:
        shutil.copy(path, os.path.join(directory, os.path.basename(path)))
    return directory


def _run(argv, log: str) -> None:
    """A step of the benchmark as its own process (as a user runs it), its
    output in `log`, its last lines shown."""
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                               cwd=REPO)
    tail = [line for line in open(log).read().splitlines()
            if "cuda" not in line and "absl" not in line][-3:]
    print("\n".join(f"    {line}" for line in tail), flush=True)
    if code:
        raise SystemExit(f"{argv[:3]} failed ({code}); see {log}")


def _dataset(inputs: str, output: str, scenario: str, factor: int, logs: str,
             eval_fraction: float, patch_size: int, patches_per_image: int) -> str:
    if not os.path.exists(os.path.join(output, "dataset_spec.json")):
        extra = ["--bit_depth", "10"] if scenario == "high_bit_depth" else ["--factor", str(factor)]
        _run(["-m", "pipelines.make_dataset", "--input", f"{inputs}/*", "--output", output,
              "--scenario", scenario, "--patch_size", str(patch_size),
              "--patches_per_image", str(patches_per_image),
              "--eval_fraction", str(eval_fraction), *extra],
             os.path.join(logs, os.path.basename(output) + ".log"))
    return output


def _hold_back(paths, share: float, min_strip: int, train_dir: str,
               select_dir: str) -> tuple[list, list]:
    """Cuts each photo into its left part (training) and the right-hand
    `share` of its width (held back), as lossless PNGs; returns both lists.
    A strip is at least `min_strip` wide; a photo too narrow to spare one
    trains whole."""
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(select_dir, exist_ok=True)
    train, select = [], []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        with Image.open(path) as image:
            width, height = image.size
            strip = max(round(width * share), min_strip)
            train.append(os.path.join(train_dir, name))
            if width - strip < min_strip:
                image.save(train[-1])
                continue
            image.crop((0, 0, width - strip, height)).save(train[-1])
            select.append(os.path.join(select_dir, name))
            image.crop((width - strip, 0, width, height)).save(select[-1])
    return train, select


def _rescaled(paths, scales, min_side: int, directory: str) -> list[str]:
    """Copies of the photos downscaled by each of `scales` (Lanczos), as
    lossless PNGs in `directory`; returns their paths. A downscaled photo
    is another photograph as far as training goes: the same scene with its
    detail packed denser. Copies smaller than `min_side` are left out."""
    made = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        with Image.open(path) as image:
            for scale in scales:
                size = (round(image.width * scale), round(image.height * scale))
                if min(size) < min_side:
                    continue
                made.append(os.path.join(directory, f"{name}_x{scale:g}.png"))
                image.resize(size, Image.Resampling.LANCZOS).save(made[-1])
    return made


def parse_model(text: str) -> tuple[str, int, list[str]]:
    """'[name=]scenario:factor[:trainer flags]' -> (scenario, factor, flags)."""
    scenario, factor, *flags = split_name(text)[1].split(":", 2)
    return scenario, int(factor), flags[0].split() if flags else []


def training_minutes(models, budget: float) -> list[float]:
    """Each model's share of `budget`: the minutes its own flags name
    (`--max_train_minutes M`, for a model worth a longer run), and an equal
    share of what is left for the others."""
    named = [_flag_value(flags, "--max_train_minutes") for _, _, flags in models]
    given = sum(m for m in named if m is not None)
    rest = sum(m is None for m in named)
    if rest and given >= budget:
        raise ValueError(f"models name {given:g} of the {budget:g} budget minutes; "
                         f"{rest} others would get none")
    return [m if m is not None else (budget - given) / rest for m in named]


def _flag_value(flags: list[str], flag: str) -> float | None:
    """The value after the last `flag` (or in `flag=value`), else None."""
    value = None
    for i, word in enumerate(flags):
        if word == flag and i + 1 < len(flags):
            value = float(flags[i + 1])
        elif word.startswith(flag + "="):
            value = float(word.split("=", 1)[1])
    return value


def _minutes_text(shares: dict[str, float]) -> str:
    """'11.0', or '11.0 (hr-x1-r2 30.0)' where some models named their own."""
    common = max(set(shares.values()), key=list(shares.values()).count)
    others = [f"{name} {m:.1f}" for name, m in shares.items() if m != common]
    return f"{common:.1f}" + (f" ({', '.join(others)})" if others else "")


def split_name(text: str) -> tuple[str | None, str]:
    """'name=scenario:...' -> (name, 'scenario:...'); without a name, (None, text)."""
    head, named, rest = text.partition("=")
    return (head, rest) if named and ":" not in head else (None, text)


SHORT_NAMES = {"high_res": "hr", "high_bit_depth": "hbd", "gray": "gray"}


def model_name(scenario: str, factor: int, taken) -> str:
    """A short unique name: hr-x1, hbd-x1, gray-x1, and a suffix for repeats."""
    base = f"{SHORT_NAMES[scenario]}-x{factor}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class Workspace:
    """An output directory: the photos, the datasets per scenario, the runs.

    With `hold_back`, the right-hand strip of that share of every training
    photo's width is cut off before training; its patches are the trainer's
    evaluation set (`--eval_data`), so the weights it exports
    (`--keep_best`) are the ones that did best on pixels it never trained
    on, not on its own training patches.
    """

    def __init__(self, output: str, train_files, held_out_files, hold_back: float = 0.0,
                 patch_size: int = PATCH, rescale=(), patches_per_photo: int | None = None,
                 jpeg_sourced_share: float = 0.0, deep: str | None = None):
        self.out, self.logs = output, os.path.join(output, "logs")
        self.deep = deep
        photos = os.path.join(output, "photos")
        if jpeg_sourced_share:
            # Every k-th training photo replaced by its JPEG-sourced copy.
            every = max(1, round(1 / jpeg_sourced_share))
            chosen = train_files[every - 1::every]
            train_files = [p for p in train_files if p not in chosen] + jpeg_sourced(
                chosen, os.path.join(photos, "train_jpeg_sources"))
        os.makedirs(self.logs, exist_ok=True)
        self.held_out_files, self.patch_size = held_out_files, patch_size
        self.patches_per_photo = patches_per_photo or PIXELS_PER_PHOTO // patch_size ** 2
        if hold_back:
            # Two patches wide, so that the 10-bit copies (2x2 sums, half the size) hold one.
            self.train_files, self.select_files = _hold_back(
                train_files, hold_back, 2 * patch_size, os.path.join(photos, "train"),
                os.path.join(photos, "select"))
        else:
            self.train_files, self.select_files = train_files, []
            _copy_all(train_files, os.path.join(photos, "train"))
        self.train_files = self.train_files + _rescaled(
            self.train_files, rescale, 2 * patch_size, os.path.join(photos, "train"))
        self.held8 = _copy_all(held_out_files, os.path.join(photos, "held_out"))
        self.held_jpeg = os.path.join(photos, "held_out_jpeg")
        jpeg_sourced(held_out_files, self.held_jpeg)

    def _photos(self, name: str, files, scenario: str) -> str:
        if scenario == "high_bit_depth" and self.deep:
            return os.path.join(self.deep, name)
        directory = os.path.join(self.out, "photos", name)
        return directory if scenario != "high_bit_depth" else ten_bit_copies(
            files, directory + "10")

    def dataset(self, scenario: str, factor: int) -> tuple[str, str | None]:
        """The training dataset and the held-back strips' dataset (None
        without; for `--deep` photos, the training dataset's own eval split
        of a quarter of the photos picks the weights)."""
        name = os.path.join(self.out, "data", f"{scenario}-x{factor}")
        patch = self.patch_size ** 2
        if scenario == "high_bit_depth" and self.deep:
            return _dataset(self._photos("train", (), scenario), name, scenario, factor,
                            self.logs, 0.25, self.patch_size, self.patches_per_photo), None
        train = _dataset(self._photos("train", self.train_files, scenario), name, scenario,
                         factor, self.logs, 0, self.patch_size, self.patches_per_photo)
        if not self.select_files:
            return train, None
        return train, _dataset(self._photos("select", self.select_files, scenario),
                               name + "-select", scenario, factor, self.logs, 1, self.patch_size,
                               SELECT_PIXELS_PER_PHOTO // patch)

    def held_out(self, scenario: str) -> str:
        return self._photos("held_out", self.held_out_files, scenario)

    def export(self, name: str) -> str | None:
        """The export dir of the model `name` if this workspace has one already."""
        export = os.path.join(self.out, "runs", name, "export")
        return export if os.path.exists(os.path.join(export, "model_spec.json")) else None

    def train(self, name: str, scenario: str, factor: int, flags: list[str],
              budget: list[str]) -> str:
        """Trains one model with `flags` and the `budget` flags; returns its export dir.

        A run dir that holds checkpoints but no export (a run stopped before
        it exported, or a model copied here to train longer) goes on from
        them: the trainer counts the time they hold against `budget`."""
        data, select = self.dataset(scenario, factor)
        job = os.path.join(self.out, "runs", name)
        resumed = os.path.exists(os.path.join(job, "checkpoints", "checkpoint"))
        print(f"== {name}: training {' '.join(flags + budget)}"
              + (" from its checkpoints" if resumed else ""), flush=True)
        if not resumed:
            shutil.rmtree(job, ignore_errors=True)
        evaluation = ["--eval_data", select, "--eval_patches",
                      str(SELECT_EVAL_PIXELS // self.patch_size ** 2)] if select else []
        _run(["-m", "trainer.task", "--data", data, "--job_dir", job, "--model_id", name,
              *RUN_FLAGS, *evaluation, *flags, *budget], os.path.join(self.logs, f"{name}.log"))
        return os.path.join(job, "export")

    def evaluate(self, scenario: str, model_dirs, alternatives, tag: str = "",
                 kind: str = "", metrics=evaluate.METRICS) -> dict:
        """The evaluator's summary of `model_dirs` on the held-out photos of
        `kind` (a key of `KINDS`; JPEG-sourced photos are 8-bit only)."""
        held = self.held_jpeg if kind == "-jpeg" else self.held_out(scenario)
        print(f"== evaluating {scenario} on {held}", flush=True)
        return evaluate.run([
            "--models", *model_dirs, f"--input={held}/*",
            f"--output={os.path.join(self.out, 'eval', scenario + kind + tag)}",
            "--alternatives", *alternatives, "--metrics", *metrics,
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])


def held_out_files(args) -> None:
    """Resolves `--train` and `--held_out` (each with its `--add_*`) into
    `args`, refusing an overlap and two photos of one name (each is copied
    into the workspace under its name)."""
    args.train_files = _files(args.train + args.add_train)
    args.held_out_files = _files(args.held_out + args.add_held_out)
    names = collections.Counter(os.path.basename(p)
                                for p in args.train_files + args.held_out_files)
    if repeated := sorted(name for name, count in names.items() if count > 1):
        raise SystemExit(f"photos of one name in --train and --held_out (a held-out photo "
                         f"trained on, or one photo hiding another): {repeated}")


def add_corpus_flags(parser) -> None:
    parser.add_argument("--train", nargs="+", default=DEFAULT_TRAIN, help="training photos (globs)")
    parser.add_argument("--held_out", nargs="+", default=DEFAULT_HELD_OUT,
                        help="held-out photos (globs); none may be in --train")
    parser.add_argument("--add_train", nargs="+", default=[],
                        help="more training photos (globs), besides --train: e.g. every "
                             "photo of `corpus.py`'s public corpus but one in ten")
    parser.add_argument("--add_held_out", nargs="+", default=[],
                        help="more held-out photos (globs), besides --held_out")
    parser.add_argument("--hold_back", type=float, default=0.25,
                        help="share of each training photo's width (its right-hand strip) "
                             "kept out of training, on which the trainer measures itself and "
                             "picks the weights it exports; 0: it measures itself on "
                             "training patches")
    parser.add_argument("--jpeg_sourced_train", type=float, default=0.5,
                        help="share of the training photos replaced by a copy saved once as "
                             "a JPEG (`corpus.jpeg_sourced`), as most photos in buckets are; "
                             "the held-out photos are evaluated both as given and so saved")
    parser.add_argument("--rescale", type=float, nargs="*", default=[],
                        help="also train on the training photos downscaled by these factors "
                             "(e.g. 0.7 0.5), each copy a photo of its own")
    parser.add_argument("--patch_size", type=int, default=PATCH,
                        help="side of the training patches; a photo gives as many pixels "
                             "in patches of any size")
    parser.add_argument("--deep",
                        help="a directory of real high-bit-depth photos, train/ and held_out/ "
                             "(`hdr_corpus.py`'s): high_bit_depth models train and are measured "
                             "on them, rounded to 10 bits, instead of 2x2 sums of the photos")
    parser.add_argument("--patches_per_photo", type=int,
                        help="patches cut from each training photo (default: "
                             f"{PIXELS_PER_PHOTO // PATCH ** 2} of {PATCH}x{PATCH}, as many "
                             "pixels at other sizes); fewer for a large corpus, whose "
                             "dataset job counts against the budget")


def gray_targets(gray: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) of the gray scenario: its front's
    BD-PSNR over the luma-only baseline (over the rates both reach)."""
    baseline = next(iter(set(gray["own_baseline"].values())))
    bd = gray["bd"][baseline][evaluate.SANDWICH].get("bd_psnr")
    return [(f"gray front vs {baseline} (luma only), BD-PSNR", f">= +{GRAY_TARGET:.0f} dB",
             "undefined" if bd is None else f"{bd:+.2f} dB",
             None if bd is None else bd >= GRAY_TARGET)]


def curves_of(summary: dict) -> dict:
    """Each method's results by name."""
    return {m["name"]: m["results"] for m in summary["methods"]}


def _ceiling_row(hbd: dict, front: dict) -> tuple[str, str, str, bool]:
    """The high_bit_depth front's best PSNR against the 8-bit ceiling (which
    no 8-bit JPEG passes), and the rate where it first reaches it."""
    ceiling = hbd["eight_bit_ceiling_psnr"]
    points = sorted(zip(front["bpp"], front["psnr"]))
    best = max(psnr for _, psnr in points)
    above = [bpp for bpp, psnr in points if psnr >= ceiling]
    crossing = f", crossing it at {above[0]:.2f} bpp" if above else ""
    return (f"high_bit_depth front above the 8-bit ceiling ({ceiling:.2f} dB; 16-bit PNG "
            f"{hbd.get('lossless_png_bpp', 0):.2f} bpp)", f">= +{CEILING_TARGET:.0f} dB",
            f"{best - ceiling:+.2f} dB{crossing}", best - ceiling >= CEILING_TARGET)


def _targets(hr: dict | None, hbd: dict | None) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) for each target of the quality issue."""
    rows = _high_res_rows(hr) if hr is not None else []
    if hbd is not None and "eight_bit_ceiling_psnr" in hbd:
        rows.append(_ceiling_row(hbd, curves_of(hbd)[evaluate.SANDWICH]))
    if hbd is not None:
        bd = hbd["bd"]["jpeg"]["sandwich"].get("bd_psnr")
        rows.append(("high_bit_depth vs plain JPEG of the source rounded to 8 bits, BD-PSNR",
                     ">= +1.0 dB", "undefined" if bd is None else f"{bd:+.2f} dB",
                     None if bd is None else bd >= 1.0))
    return rows + [_below_row(hr, hbd)]


def _high_res_rows(hr: dict) -> list[tuple[str, str, str, bool | None]]:
    """The high_res front against plain JPEG, and each x2 model against its baseline."""
    curves = curves_of(hr)
    rows = []
    front, jpeg = curves["sandwich"], curves["jpeg"]
    try:
        gain = metrics.bd_psnr(*metrics.pareto_front(jpeg["bpp"], jpeg["psnr"]),
                               *metrics.pareto_front(front["bpp"], front["psnr"]),
                               rate_range=RATE_RANGE)
        rows.append(("front vs plain JPEG, BD-PSNR over 0.25-1.0 bpp", ">= +1.0 dB",
                     f"{gain:+.2f} dB", gain >= 1.0))
    except ValueError as e:
        rows.append(("front vs plain JPEG, BD-PSNR over 0.25-1.0 bpp", ">= +1.0 dB", str(e), None))
    x2 = [m for m, b in hr["own_baseline"].items() if b == "baseline-x2"]
    for model in x2:
        bd = hr["bd"]["baseline-x2"][model].get("bd_psnr")
        rows.append((f"{model} vs x2 baseline, BD-PSNR", ">= +3.0 dB",
                     "undefined" if bd is None else f"{bd:+.2f} dB", None if bd is None else bd >= 3.0))
        ours = metrics.psnr_at(curves[model]["bpp"], curves[model]["psnr"], AT_RATE)
        base = metrics.psnr_at(curves["baseline-x2"]["bpp"], curves["baseline-x2"]["psnr"], AT_RATE)
        measured = ("outside the model's rates" if ours is None or base is None
                    else f"{ours - base:+.2f} dB")
        rows.append((f"{model} vs x2 baseline at {AT_RATE} bpp", ">= +1.0 dB", measured,
                     None if ours is None or base is None else ours - base >= 1.0))
    return rows


def _below_row(hr: dict | None, hbd: dict | None) -> tuple[str, str, str, bool | None]:
    """Every model point against its own baseline at the same rate."""
    below, unchecked = [], []
    for summary in filter(None, (hr, hbd)):
        curves_s = curves_of(summary)
        for model, baseline in summary["own_baseline"].items():
            for bpp, psnr in zip(curves_s[model]["bpp"], curves_s[model]["psnr"]):
                base = metrics.psnr_at(curves_s[baseline]["bpp"], curves_s[baseline]["psnr"], bpp)
                if base is None:
                    unchecked.append(f"{model} {bpp:.3f} bpp")
                elif psnr < base - 0.01:
                    below.append(f"{model} {bpp:.2f} bpp {psnr - base:+.2f} dB")
    measured = "none" if not below else "; ".join(below)
    if unchecked:
        measured += f" (outside their baseline's rates, unchecked: {', '.join(unchecked)})"
    return ("model points below their baseline at the same rate", "none", measured,
            False if below else None if unchecked else True)


def _bd_over_rates(summary: dict, reference: str, method: str, metric: str) -> float:
    """BD-rate (%) of `method` against `reference` at equal `metric`, over
    the qualities `reference` has between `RATE_RANGE`'s ends (BD-PSNR in
    dB for PSNR, over those rates); ValueError where undefined."""
    curves = {m["name"]: m["results"] for m in summary["methods"]}
    anchor, test = curves[reference], curves[method]
    a_axis, t_axis = evaluate.quality_axis(anchor, metric), evaluate.quality_axis(test, metric)
    fronts = (*metrics.pareto_front(anchor["bpp"], a_axis),
              *metrics.pareto_front(test["bpp"], t_axis))
    if metric == "psnr":
        return metrics.bd_psnr(*fronts, rate_range=RATE_RANGE)
    ends = [metrics.psnr_at(anchor["bpp"], a_axis, r) for r in RATE_RANGE]
    ends = [e if e is not None else (min(a_axis) if i == 0 else max(a_axis))
            for i, e in enumerate(ends)]
    try:
        return metrics.bd_rate(*fronts, quality_range=tuple(ends))
    except ValueError as e:  # `metrics` words its reasons for PSNR
        raise ValueError(str(e).replace("PSNR", evaluate.LABELS[metric])) from e


def _target_row(name: str, required: str, compute, passes) -> tuple:
    try:
        value = compute()
    except ValueError as e:
        return name, required, f"undefined: {e}", None
    unit = " dB" if "PSNR" in name else "%"
    return name, required, f"{value:+.2f}{unit}", passes(value)


DEFAULT_LABEL = f"front of the default set ({shipped.DEFAULT_SET})"
# The fronts of the models the default set keeps (`default_set_fronts`), per metric.
DEFAULT_FRONTS = {metric: front.replace(evaluate.SANDWICH, "default-set", 1)
                  for metric, front in evaluate.FRONTS.items()}


def default_set_fronts(summary: dict) -> dict:
    """`summary` with the fronts of the models `codec.shipped`'s default set
    would keep added (`DEFAULT_FRONTS`): all but the factor-1 ones whose
    bottleneck, as viewers show it, this summary measures beyond comparison
    with plain JPEG or more than `shipped.VIEW_LIMIT_PERCENT` worse (BD-rate
    at equal Butteraugli), since a target compress picks among those alone."""
    curves = curves_of(summary)
    kept = []
    for model in sorted(summary["own_baseline"]):
        viewed = summary["bd"].get("jpeg", {}).get(evaluate.view_name(model))
        if viewed is None or shipped.looks_right_as_viewed(viewed.get("bd_rate_butteraugli")):
            kept.append(model)
    added = [{"name": DEFAULT_FRONTS[metric], "description": f"upper envelope of {kept}",
              "results": evaluate.front(curves, kept, metric)}
             for metric in summary.get("metrics", ["psnr"]) if kept]
    return {**summary, "methods": summary["methods"] + added, "default_set": kept}


def perceptual_targets(summary: dict, kind: str) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) of the perceptual-quality issue on
    one kind of held-out photos: the front of the default set on each metric
    (its own front per metric, `default_set_fronts`) against jpegli and
    plain JPEG, and against plain JPEG in PSNR, as is the front of every
    model (`shipped-psnr`'s); every factor-1 bottleneck as a viewer shows it."""
    label = KINDS[kind].split(" (")[0]
    summary = default_set_fronts(summary)
    names = {m["name"] for m in summary["methods"]}
    rows = [_target_row(f"{label}: {what} vs plain JPEG, BD-PSNR 0.25-1.0 bpp",
                        f">= +{PSNR_TARGET} dB",
                        lambda f=front: _bd_over_rates(summary, "jpeg", f, "psnr"),
                        lambda v: v >= PSNR_TARGET)
            for what, front in ((f"front of every model ({shipped.PSNR_SET})", evaluate.SANDWICH),
                                (DEFAULT_LABEL, DEFAULT_FRONTS["psnr"]))
            if front in names]
    for metric in ("butteraugli", "ms-ssim"):
        if DEFAULT_FRONTS[metric] not in names:
            continue
        for reference, required in PERCEPTUAL_TARGETS.items():
            rows.append(_target_row(
                f"{label}: {DEFAULT_LABEL} vs {reference}, BD-rate at equal {metric} "
                "0.25-1.0 bpp", f"<= {required:+.0f}%",
                lambda r=reference, m=metric: _bd_over_rates(summary, r, DEFAULT_FRONTS[m], m),
                lambda v, r=required: v <= r))
    for view in sorted(n for n in names if n.endswith(evaluate.VIEW)):
        rows.append(_target_row(
            f"{label}: {view} (no post-processor) vs plain JPEG, BD-rate at equal butteraugli",
            f"<= +{VIEW_TARGET:.0f}%",
            lambda v=view: _bd_over_rates(summary, "jpeg", v, "butteraugli"),
            lambda v: v <= VIEW_TARGET))
    return rows


BY_CONSTRUCTION = "met in target mode"


def below_per_file(results_dir: str, summary: dict) -> tuple[str, bool | str]:
    """Per held-out file, the model points that are below their identity
    (the scenario baseline: the same JPEG, no networks), plain JPEG or
    jpegli at their own rate, in PSNR: the points where `compress
    --target_bpp` writes one of those instead, so the deployed front is
    never below any. Returns the count and worst shortfalls, and whether
    the front the user gets is free of them: True where no point is below,
    else `BY_CONSTRUCTION` (target mode measures every one of those files
    and writes the best, `codec.rate_control`)."""
    below, total = [], 0
    for image, methods in eval_results.curves_by_image(
            eval_results.read_measurements(results_dir)).items():
        for model, baseline in summary["own_baseline"].items():
            for bpp, psnr in methods.get(model, []):
                total += 1
                for other in (baseline, "jpeg", "jpegli"):
                    points = methods.get(other)
                    if not points:
                        continue
                    best = metrics.psnr_at([p[0] for p in points], [p[1] for p in points], bpp)
                    if best is not None and psnr < best - 0.01:
                        below.append((psnr - best, os.path.basename(image), model, other, bpp))
                        break
    if not below:
        return f"none of {total} model points", True
    worst = ", ".join(f"{n} {m} at {b:.2f} bpp {d:+.2f} dB vs {o}"
                      for d, n, m, o, b in sorted(below)[:3])
    return (f"{len(below)} of {total} model points (replaced per file by the identity, "
            f"plain JPEG or jpegli in target mode); worst: {worst}"), BY_CONSTRUCTION


def _bd_table(summary: dict) -> list[str]:
    references = list(summary["bd"])
    lines = ["| method | " + " | ".join(f"vs {r}" for r in references) + " |",
             "|---|" + "---|" * len(references)]
    methods = sorted({m for compared in summary["bd"].values() for m in compared})
    for method in methods:
        cells = []
        for reference in references:
            bd = summary["bd"][reference].get(method)
            cells.append(evaluate.format_bd_rates(bd, summary.get("metrics", ["psnr"]))
                         if bd else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _points_table(summary: dict) -> list[str]:
    perceptual = "butteraugli-3norm" in summary["methods"][0]["results"]
    lines = ["| method | points (bpp / PSNR dB" + (" / MS-SSIM / Butteraugli 3-norm"
                                                  if perceptual else "") + ") |", "|---|---|"]
    for method in summary["methods"]:
        r = method["results"]
        columns = [r["bpp"], r["psnr"]] + ([r["ms-ssim"], r["butteraugli-3norm"]]
                                           if perceptual else [])
        points = ", ".join(" / ".join(f"{v:.3f}" if i != 1 else f"{v:.2f}"
                                      for i, v in enumerate(values))
                           for values in zip(*columns))
        lines.append(f"| {method['name']} | {points} |")
    return lines


def _folder(path: str) -> str:
    """A folder as the report names it: relative to the repository, or its
    last two parts (no machine's own paths in the report)."""
    relative = os.path.relpath(path, REPO)
    return relative if not relative.startswith("..") else os.path.join(
        *path.split(os.sep)[-2:])


def _shown_path(path: str) -> str:
    """A photo as the report and its JSON name it: its `_folder` and name."""
    return os.path.join(_folder(os.path.dirname(os.path.abspath(path))), os.path.basename(path))


def _photo_list(paths, shown: int = 12) -> str:
    """The photos' names, or for a large corpus their count, the first
    names and the folders they come from."""
    names = [os.path.basename(p) for p in paths]
    if len(names) <= shown:
        return ", ".join(names)
    folders = sorted({os.path.dirname(_shown_path(p)) for p in paths})
    return (f"{len(names)} photos ({', '.join(names[:shown])}, ...; from "
            f"{', '.join(folders)})")


def _factors(models) -> str:
    """'factor 3', 'factors 1 and 2', 'factors 1, 2 and 4': the high_res models'."""
    factors = [str(f) for f in sorted({f for s, f, _ in models if s == "high_res"})]
    if len(factors) == 1:
        return f"factor {factors[0]}"
    return f"factors {', '.join(factors[:-1])} and {factors[-1]}"


def write_report(path: str, args, models, hr: dict | None, hbd: dict | None, minutes: dict,
                 plots: dict, hr_jpeg: dict | None = None, below: dict | None = None,
                 gray: dict | None = None) -> None:
    rows = _targets(hr, hbd) + (gray_targets(gray) if gray is not None else [])
    for kind, summary in (("", hr), ("-jpeg", hr_jpeg)):
        if summary is not None:
            rows += perceptual_targets(summary, kind)
    for kind, (measured, met) in (below or {}).items():
        rows.append((f"{KINDS[kind].split(' (')[0]}: model points below their identity, "
                     "plain JPEG or jpegli, per file", "none on the deployed front", measured,
                     met))
    status = {True: "met", False: "**missed**", None: "undefined"}
    lines = [
        "# Quality at a CPU budget: sandwich against plain JPEG, jpegli and the baselines",
        "",
        f"Written by `python benchmarks/quality.py` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU cores, budget {args.budget_minutes:g} minutes for training "
        f"({_minutes_text(minutes['per_model'])} minutes per model, {len(models)} models; "
        "whole run "
        f"{minutes['total']:.1f} minutes"
        + (f", reusing {len(minutes['reused'])} models trained by an earlier run into the same "
           "--output" if minutes["reused"] else "") + ").",
        f"Training corpus: {_photo_list(args.train_files)} "
        f"({args.patches_per_photo or PIXELS_PER_PHOTO // args.patch_size ** 2} patches of "
        f"{args.patch_size}x{args.patch_size} per photo"
        + (f"; the right-hand {args.hold_back:.0%} of each photo's width held back, on which "
           "the trainer measured itself and picked the weights it exported"
           if args.hold_back else "")
        + (f"; with copies downscaled by {', '.join(f'{r:g}' for r in args.rescale)}"
           if args.rescale else "") + "). Held out: "
        f"{_photo_list(args.held_out_files)} (never trained on). "
        "Every figure is a real file from the real encoder, its whole size per source pixel, "
        "and PSNR of the decoded reconstruction.",
        "",
        "## Targets",
        "",
        "| target | required | measured | |",
        "|---|---|---|---|",
        *[f"| {t} | {r} | {m} | {status.get(ok, ok)} |" for t, r, m, ok in rows],
    ]
    if hr is not None:
        kept = default_set_fronts(hr)["default_set"]
        lines += ["", f"The default set's front (as given): {', '.join(kept)}; the others' files "
                  "look wrong in a viewer without the post-processor (`codec.shipped`)."]
        lines += ["", f"## 8-bit photographs: high_res models at {_factors(models)}, one front",
                  "", *[f"![RD]({plot})" for plot in plots["hr"]], "",
                  "BD-PSNR / BD-rate at equal PSNR, MS-SSIM and Butteraugli 3-norm (over the "
                  "qualities both curves reach):", "", *_bd_table(hr), "", *_points_table(hr)]
    if hr_jpeg is not None:
        lines += ["", f"## The same held-out photos, {KINDS['-jpeg']}", "",
                  "Each saved once by Pillow at a quality drawn from "
                  "75-95 (`corpus.jpeg_sourced`; the quality is in the name).", "",
                  *[f"![RD]({plot})" for plot in plots["hr-jpeg"]], "",
                  *_bd_table(hr_jpeg), "", *_points_table(hr_jpeg)]
    if hbd is not None:
        lines += ["", "## 10-bit sources (" + (f"photographs of {args.deep}, rounded to 10 bits"
                                                 if args.deep else
                                                 "synthetic: 2x2 sums of 8-bit photographs") + ")", "",
                  *[f"![RD]({plot})" for plot in plots["hbd"]], "",
                  "`jpeg` and `jpegli` here code the source rounded to 8 bits (at these "
                  "rates rounding costs nothing: the 8-bit ceiling is far above). A "
                  f"lossless 16-bit PNG costs {hbd.get('lossless_png_bpp', 0):.2f} bpp.",
                  "", *_bd_table(hbd), "", *_points_table(hbd)]
    if gray is not None:
        lines += ["", "## Colour over a grayscale JPEG (gray)", "",
                  *[f"![RD]({plot})" for plot in plots["gray"]], "",
                  "The bottleneck is a one-component JPEG; its baseline is the luma alone "
                  "(colour lost). `jpeg` and `jpegli` are colour files, for comparison: a "
                  "pipeline that codes luma only cannot carry them.",
                  "", *_bd_table(gray), "", *_points_table(gray)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_corpus_flags(parser)
    parser.add_argument("--budget_minutes", type=float, default=90.0,
                        help="training minutes for all models together")
    parser.add_argument("--output", default=os.path.join(REPO, "out", "quality"))
    parser.add_argument("--report", default=os.path.join(REPO, "docs", "quality.md"),
                        help="the markdown report; its plots go beside it")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="[name=]scenario:factor[:trainer flags], e.g. "
                             "'hr-x1-psnr=high_res:1:--objective psnr' (default "
                             "names: hr-x1, hbd-x1, ...)")
    parser.add_argument("--context_codecs", action="store_true",
                        help="also measure AVIF and JPEG XL (slower)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    held_out_files(args)
    models = [parse_model(m) for m in args.models]
    for scenario, factor, _ in models:
        # The dataset job would refuse it, but only after the photos are copied.
        try:
            specs.check_patch_size(args.patch_size, factor)
        except specs.SpecError as e:
            parser.error(f"{scenario} x{factor}: {e}")
    space = Workspace(args.output, args.train_files, args.held_out_files, args.hold_back,
                      args.patch_size, args.rescale, args.patches_per_photo,
                      args.jpeg_sourced_train, args.deep)
    try:
        shares = training_minutes(models, args.budget_minutes)
    except ValueError as e:
        parser.error(str(e))
    print(f"{len(models)} models, {args.budget_minutes:g} training minutes in all; corpus "
          f"{os.path.dirname(space.train_files[0])}, held out {space.held8}", flush=True)
    exports, reused, names = {}, [], []
    for text, (scenario, factor, flags), share in zip(args.models, models, shares):
        if names.count(split_name(text)[0]):
            parser.error(f"two models named {split_name(text)[0]}")
        names.append(split_name(text)[0] or model_name(scenario, factor, names))
        export = space.export(names[-1])
        if export:
            print(f"== {names[-1]}: reusing {os.path.dirname(export)}", flush=True)
            reused.append(names[-1])
        else:
            started = time.monotonic()
            space.dataset(scenario, factor)
            remaining = share - (time.monotonic() - started) / 60
            export = space.train(
                names[-1], scenario, factor, flags,
                UNBOUNDED_STEPS + ["--max_train_minutes", f"{max(remaining, 0.5):.2f}"])
        exports.setdefault(scenario, []).append(export)
    alternatives = ["jpeg", "jpegli"] + (["avif", "jxl"] if args.context_codecs else [])
    summaries, plots = {}, {}
    report_dir = os.path.dirname(os.path.abspath(args.report))
    os.makedirs(report_dir, exist_ok=True)
    below = {}
    for scenario, model_dirs in exports.items():
        for kind in KINDS if scenario == "high_res" else [""]:
            summaries[scenario + kind] = space.evaluate(scenario, model_dirs, alternatives,
                                                        kind=kind)
            results = os.path.join(args.output, "eval", scenario + kind)
            key = SHORT_NAMES[scenario] + kind
            plots[key] = []
            for metric in summaries[scenario + kind].get("metrics", ["psnr"]):
                plots[key].append(f"quality_{scenario}{kind}_{metric}.png")
                shutil.copy(os.path.join(results, evaluate.PLOT_FILES[metric]),
                            os.path.join(report_dir, plots[key][-1]))
            if scenario == "high_res":
                below[kind] = below_per_file(results, summaries[scenario + kind])
    minutes = {"per_model": dict(zip(names, shares)), "reused": reused,
               "total": (time.monotonic() - start) / 60}
    write_report(args.report, args, models, summaries.get("high_res"),
                 summaries.get("high_bit_depth"), minutes, plots, summaries.get("high_res-jpeg"),
                 below, summaries.get("gray"))
    with open(os.path.splitext(args.report)[0] + ".json", "w") as f:
        json.dump({"budget_minutes": args.budget_minutes, "models": dict(zip(names, args.models)),
                   "training_minutes": minutes["per_model"],
                   "train": [_shown_path(p) for p in args.train_files],
                   "hold_back": args.hold_back, "rescale": args.rescale,
                   "jpeg_sourced_train": args.jpeg_sourced_train,
                   "held_out": [_shown_path(p) for p in args.held_out_files],
                   "command": shlex.join(["python", *sys.argv]), "commit": commit(),
                   "summaries": summaries}, f, indent=1)
    print(open(args.report).read())


if __name__ == "__main__":
    main()

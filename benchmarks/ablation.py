"""What each lever of the recipe is worth, in dB on held-out photos.

Trains one high_res model per arm on the same corpus for the same number of
steps (so that a machine busy with other work slows every arm alike), each
arm changing one thing of a reference recipe, then evaluates all of them
together with the real codec on the held-out photos (`pipelines.evaluate`)
and prints a table:

    python benchmarks/ablation.py --steps 1200 --output out/ablation

Columns: BD-PSNR against plain JPEG (libjpeg-turbo, standard tables, 4:2:0,
optimised) and against the arm's own baseline over the rates both cover,
the points that fall below that baseline, the measured time per training
step (under whatever else the machine ran), and the processors' size
(multiply-accumulates per source pixel, both processors).
The arms share `benchmarks/quality.py`'s corpus flags and workspace, so an
arm already trained into `--output` is reused.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quality  # noqa: E402

from pipelines import evaluate  # noqa: E402

# (name, what changes, trainer flags). The reference is the trainer's
# default recipe; every other arm changes one thing of it.
ARMS = [
    ("reference", "the trainer's defaults: rate-conditioned over its auto range (the "
     "post-processor told the step), gamma auto (2x the baseline's slope), cosine learning "
     "rate, the best evaluation's weights, a moving average of the weights, patches in "
     "random orientations, slim", []),
    ("no-average", "the weights themselves, not their moving average", ["--ema_decay", "0"]),
    ("no-augment", "the stored patches as they are, not randomly turned and mirrored",
     ["--no-augment"]),
    ("conditioned-preprocessor", "the pre-processor told the step too",
     ["--condition_preprocessor"]),
    ("step-gain", "the pre-processor's residual scaled by a learned gain of the step",
     ["--condition_preprocessor", "gain"]),
    ("post-only", "the pre-processor left the identity: post-processing alone",
     ["--no-train_preprocessor"]),
    ("last-weights", "export the last weights, not the best evaluation's", ["--no-keep_best"]),
    ("single-step", "one step (qstep 24, trained), no conditioning",
     ["--qstep_range", "off", "--qstep", "24"]),
    ("range-16-80", "steps 16..80, not x1's auto 12..80 (12 codes the held-out photos at "
     "2 bpp)", ["--qstep_range", "16,80"]),
    ("range-3-24", "x2 steps 3..24 (0.3-1.3 bpp on the held-out photos), the auto range "
     "x2 once had, not 12..96 (0.08-0.6 bpp)", ["--qstep_range", "3,24"]),
    ("gamma-1x-slope", "gamma 80: the baseline's slope at x1's centre step 31 (not 2x)",
     ["--gamma", "80"]),
    ("gamma-4x-slope", "gamma 320: 4x the slope", ["--gamma", "320"]),
    ("constant-lr", "no warmup or decay", ["--lr_schedule", "constant"]),
    ("tables", "trainable 8x8 luma and chroma tables in the DQT", ["--quantization", "tables"]),
    ("slim", "the slim preset, U-Net 5-10-15-20 (x1's default before medium)",
     ["--size", "slim"]),
    ("wider", "U-Net 8-16-24-32 (the medium preset, x1's default)",
     ["--unet_widths", "8,16,24,32"]),
    ("widest", "U-Net 16-32-48-64", ["--unet_widths", "16,32,48,64"]),
    ("slim-pre-wider-post", "a slim pre-processor and a post-processor of U-Net 24-48-72-96 "
     "(at x2, where the post-processor makes the gain)",
     ["--size", "slim", "--post_unet_widths", "24,48,72,96"]),
    ("batch-16", "batch 16 (twice the pixels per step)", ["--batch_size", "16"]),
    ("batch-2", "batch 2 (a quarter of the pixels per step; with --patch_size 128, the "
     "reference's pixels in larger patches)", ["--batch_size", "2"]),
]
STEP_RATE = re.compile(r"step \d+/\d+ ([\d.]+) steps/s")


def _seconds_per_step(log: str) -> float | None:
    rates = STEP_RATE.findall(open(log).read()) if os.path.exists(log) else []
    return 1.0 / float(rates[-1]) if rates else None


def _macs(export: str) -> float:
    """Multiply-accumulates per source pixel of both processors of an export,
    sized as the trainer sized them from the flags its spec records."""
    from sandwich.specs import MODEL_SPEC_FILE, ModelSpec
    from trainer.training import Config

    with open(os.path.join(export, MODEL_SPEC_FILE)) as f:
        spec = ModelSpec.from_json(f.read())
    widths = {key: tuple(spec.config[key]) if spec.config.get(key) else None
              for key in ("unet_widths", "mlp_widths", "post_unet_widths")}
    config = Config(data="", size=spec.config["size"], **widths)
    post_reads_step = spec.qstep_range is not None
    input_plane = spec.config.get("condition_preprocessor") in (True, "input")
    return (config.network().macs_per_pixel(in_channels=3 + input_plane)
            + config.post_network().macs_per_pixel(in_channels=3 + post_reads_step))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    quality.add_corpus_flags(parser)
    parser.add_argument("--steps", type=int, default=1200, help="training steps of every arm")
    parser.add_argument("--factor", type=int, default=1, help="the high_res factor")
    parser.add_argument("--arms", nargs="+", default=[a[0] for a in ARMS],
                        choices=[a[0] for a in ARMS])
    parser.add_argument("--output", default=os.path.join(quality.REPO, "out", "ablation"))
    args = parser.parse_args(argv)
    quality.held_out_files(args)
    space = quality.Workspace(args.output, args.train_files, args.held_out_files, args.hold_back,
                              args.patch_size, args.rescale, args.patches_per_photo,
                              args.jpeg_sourced_train)
    arms = [a for a in ARMS if a[0] in args.arms]
    exports = {}
    for name, _, flags in arms:
        run = f"x{args.factor}-{name}"
        exports[name] = space.export(run) or space.train(
            run, "high_res", args.factor, flags, ["--steps", str(args.steps)])
    summary = space.evaluate("high_res", list(exports.values()), ["jpeg"], tag="-ablation",
                             metrics=("psnr",))
    baseline = f"baseline-x{args.factor}"
    curves = {m["name"]: m["results"] for m in summary["methods"]}
    lines = [f"Ablation: high_res x{args.factor}, {args.steps} steps per arm; trained on "
             f"{', '.join(os.path.basename(p) for p in args.train_files)}; held out "
             f"{', '.join(os.path.basename(p) for p in args.held_out_files)}.",
             "`python benchmarks/ablation.py " + " ".join(argv or sys.argv[1:]) + "`", "",
             "| arm | change | BD-PSNR vs plain JPEG | vs own baseline | points below baseline "
             "| s/step | MACs/pixel |",
             "|---|---|---|---|---|---|---|"]
    for name, change, _ in arms:
        model = f"x{args.factor}-{name}"
        vs_jpeg = summary["bd"]["jpeg"].get(model, {}).get("bd_psnr")
        vs_base = summary["bd"][baseline].get(model, {}).get("bd_psnr")
        base = curves[baseline]
        below = sum(1 for bpp, psnr in zip(curves[model]["bpp"], curves[model]["psnr"])
                    if (b := quality.metrics.psnr_at(base["bpp"], base["psnr"], bpp)) is not None
                    and psnr < b - 0.01)
        seconds = _seconds_per_step(os.path.join(space.logs, f"{model}.log"))
        macs = _macs(exports[name])
        cell = lambda v: "undefined" if v is None else f"{v:+.2f} dB"  # noqa: E731
        lines.append(f"| {name} | {change} | {cell(vs_jpeg)} | {cell(vs_base)} | "
                     f"{below}/{len(curves[model]['bpp'])} | "
                     f"{'?' if seconds is None else f'{seconds:.3f}'} | {macs:,.0f} |")
    report = "\n".join(lines)
    with open(os.path.join(args.output, "ablation.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(args.output, "ablation.json"), "w") as f:
        json.dump({"steps": args.steps, "summary": summary}, f, indent=1)
    print(report)
    print(evaluate.table(summary))


if __name__ == "__main__":
    main()

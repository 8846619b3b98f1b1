"""Trains a sandwich on a dataset dir and exports it: `sandwich-train`.

    python -m trainer.task --data data/high_res --job_dir runs/hr --steps 20000

The scenario, bit depth, patch size and factor come from the dataset's
`dataset_spec.json`. The job dir receives `checkpoints/`, `logs/`
(TensorBoard) and `export/`; on Vertex AI, `AIP_CHECKPOINT_DIR`,
`AIP_TENSORBOARD_LOG_DIR` and `AIP_MODEL_DIR` take their place. Rerunning
the same command resumes from the last checkpoint.
"""
from __future__ import annotations

import argparse
import sys

from sandwich import logs
from sandwich.jpeg.tables import MODE_NAMES
from sandwich.model_options import PREPROCESSOR_CONDITIONING, PRESETS, QUANTIZATIONS
from sandwich.specs import DISTORTIONS, SCENARIOS, TABLE_SHAPES, check_qstep_range
from trainer.config import AUTO_OBJECTIVES, LR_SCHEDULES, OBJECTIVES, STRATEGIES, Config

# TensorFlow (`trainer.training`, `trainer.strategy`) is imported by `main`
# once the flags are parsed: `--help` and a mistyped flag are answered
# without loading it (tests/test_console_scripts.py).


def _widths(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(","))


def _gamma(text: str) -> float | str:
    return text if text == "auto" else float(text)


def _qstep_range(text: str):
    """`Config.qstep_range` of the flag's text."""
    if text in ("auto", "off"):
        return None if text == "off" else text
    try:
        return check_qstep_range(text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, auto or off: {e}") from e


def _switch(group, flag: str, default: dict, help: str) -> None:
    """`--flag` / `--no-flag`, defaulting to `Config`'s."""
    group.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=default[flag],
                       help=help)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandwich-train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                parents=[logs.flag()])
    default = {f: getattr(Config, f) for f in Config.__dataclass_fields__ if hasattr(Config, f)}
    io = p.add_argument_group("data and outputs")
    io.add_argument("--data", required=True, help="dataset dir (local or gs://)")
    io.add_argument("--eval_data",
                    help="dataset dir of photographs kept out of training, whose patches (its "
                         "eval split, else its train split) the real-codec evaluation and "
                         "--keep_best use instead of --data's eval split")
    io.add_argument("--job_dir", help="run dir for checkpoints/, logs/ and export/")
    io.add_argument("--checkpoint_dir", help="overrides job_dir/checkpoints and AIP_CHECKPOINT_DIR")
    io.add_argument("--log_dir", help="overrides job_dir/logs and AIP_TENSORBOARD_LOG_DIR")
    io.add_argument("--export_dir", help="overrides job_dir/export and AIP_MODEL_DIR")
    io.add_argument("--model_id", help="the exported model's id, which its bottlenecks carry "
                    "(default: scenario, time and a random suffix); name it so that it is unique")
    io.add_argument("--scenario", choices=SCENARIOS,
                    help="optional: refuse a dataset of another scenario")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=argparse.SUPPRESS,
                     help="total steps (resumed runs count on); default "
                          f"{default['steps']}, or no bound when --max_train_minutes is "
                          "given alone: the time budget then ends the run")
    opt.add_argument("--batch_size", type=int, default=default["batch_size"], help="global batch, split over replicas")
    opt.add_argument("--learning_rate", type=float, default=default["learning_rate"], help="Adam step size")
    opt.add_argument("--lr_schedule", choices=LR_SCHEDULES, default=default["lr_schedule"],
                     help="cosine: warmup, then decay to a twentieth of --learning_rate by the "
                          "end of --steps or --max_train_minutes, whichever comes first (by "
                          "time alone, the warmup is the budget's first 2%% and the decay "
                          "ends with it)")
    opt.add_argument("--gamma", type=_gamma, default=default["gamma"],
                     help="weight of the rate (bpp) in the loss, at the nominal step; auto: "
                          "twice the baseline's distortion-rate slope there, measured on the "
                          "eval patches with the real encoder")
    opt.add_argument("--penalty_weight", type=float, default=default["penalty_weight"],
                     help="weight of the bottleneck range penalty")
    opt.add_argument("--ema_decay", type=float, default=default["ema_decay"],
                     help="evaluate and export a moving average of the weights with this "
                          "decay per step (a horizon of about 1 / (1 - decay) steps); 0: the "
                          "weights themselves")
    _switch(opt, "augment", default,
            help="show each training patch in one of its 8 orientations (quarter "
                 "turns and mirror), drawn anew each time")
    opt.add_argument("--max_train_minutes", type=float,
                     help="stop training (and export) after this much wall time, even "
                          "before --steps; given without --steps, it alone bounds the run. "
                          "It counts the training loops' time over resumes: a run resumed "
                          "from its checkpoints (after a preemption, say) has what its last "
                          "checkpoint left of it, and a schedule bounded by time alone "
                          "carries on")
    opt.add_argument("--seed", type=int, help="shuffle seed; none: a new shuffle each run")
    loss = p.add_argument_group(
        "what the loss measures (each flag left out takes the --objective preset's value)")
    loss.add_argument("--objective", choices=["auto", *sorted(OBJECTIVES)],
                      default=default["objective"],
                      help="a preset of the flags below: " + "; ".join(
                          f"{name}: " + ", ".join(f"{k} {v}" for k, v in preset.items()
                                                  if v is not None)
                          for name, preset in OBJECTIVES.items())
                      + "; auto: the one measured best for the dataset's scenario and factor "
                      "in its own JPEG mode (" + ", ".join(
                          f"{name} x{factor}: {objective}"
                          for (name, factor), objective in AUTO_OBJECTIVES.items())
                      + "), else psnr")
    loss.add_argument("--distortion", choices=DISTORTIONS,
                      help="the loss's distortion, in squared error (0..255 scale) or its "
                           "MS-SSIM equivalent: mse, ms-ssim, or mix, (1 - w) mse + w ms-ssim")
    loss.add_argument("--ms_ssim_weight", type=float, metavar="W",
                      help="a mix's MS-SSIM share w, in [0, 1]")
    loss.add_argument("--view_weight", type=float,
                      help="weight of the distortion of the decoded bottleneck itself (the "
                           "file as a viewer shows it, without the post-processor) against "
                           "the source at its resolution and 8 bits; 0: not judged")
    loss.add_argument("--table_shape", choices=TABLE_SHAPES,
                      help="the quantisation tables' shape, which --qstep scales: flat; "
                           "standard, JPEG's Annex K tables (plain JPEG's, coarser where the "
                           "eye sees less); or jpegli, jpegli's (finer chroma, flatter); "
                           "learned tables start from it")
    net = p.add_argument_group("model")
    net.add_argument("--size", choices=["auto", *sorted(PRESETS)], default=default["size"],
                     help="network preset: slim, medium and wide for CPUs, paper for "
                          "accelerators; auto: wide for downsampling scenarios (factor > 1), "
                          "else medium")
    net.add_argument("--unet_widths", type=_widths, help="override the preset's U-Net widths, e.g. 8,16")
    net.add_argument("--post_unet_widths", type=_widths,
                     help="the post-processor's own U-Net widths, where it should differ from "
                          "the pre-processor's (the preset's or --unet_widths)")
    net.add_argument("--mlp_widths", type=_widths, help="override the preset's MLP widths, e.g. 16,16")
    net.add_argument("--qstep", type=float, default=default["qstep"],
                     help="initial scale of the JPEG quantisation tables (their geometric "
                          "mean: the step itself for flat tables)")
    net.add_argument("--qstep_range", type=_qstep_range, default=default["qstep_range"],
                     metavar="LOW,HIGH|auto|off",
                     help="train one rate-conditioned model for these JPEG steps: each batch "
                          "at a step drawn log-uniformly in the range, the post-processor "
                          "told the step, its distortion weighted by (centre / step)^2; "
                          "--qstep is then "
                          "ignored. auto: the scenario's range, where its models beat what "
                          "a user has (high_res x1 about 0.25-1.5 bpp, x2 0.08-0.6, x4 "
                          "0.03-0.18; with standard tables the scales of about the same "
                          "rates, as far as tables of entries up to 255 reach); off: one "
                          "model for the one step --qstep")
    net.add_argument("--condition_preprocessor", nargs="?", const="input",
                     choices=PREPROCESSOR_CONDITIONING, default=default["condition_preprocessor"],
                     help="with a qstep range, tell the pre-processor the step too, not only the "
                          "post-processor: input, as an input plane of its branches (the flag "
                          "alone); gain, as a learned gain on its residual; off. A rate search "
                          "then pre-processes once per probe, not once per image")
    _switch(net, "train_preprocessor", default,
            help="train the pre-processor; without it, it stays the identity and only "
                 "the post-processor learns (post-processing alone, for comparison)")
    net.add_argument("--fixed_qstep", dest="train_qstep", action="store_false",
                     help="keep qstep at its initial value; train_qstep=%(default)s")
    net.add_argument("--quantization", choices=sorted(QUANTIZATIONS),
                     default=default["quantization"],
                     help="what of the JPEG quantisation learns: one flat step, a step "
                          "per table (luma, chroma), or both 8x8 tables (written to the DQT)")
    net.add_argument("--jpeg_mode", choices=MODE_NAMES, default=default["jpeg_mode"],
                     help="the inner JPEG's colour handling (default: gray for gray, "
                          "planes for high_bit_depth with flat tables, the one that nears "
                          "the 8-bit ceiling, else ycbcr-420); planes at 8 bits starts "
                          "about 4 dB below plain JPEG")
    net.add_argument("--carrier_gain", type=float, default=default["carrier_gain"],
                     help="gray only: the starting gain of the colour carriers the "
                          "pre-processor hides in the luma (sandwich.colour_carrier); "
                          "default 0.3; 0 starts from the luma-only baseline")
    run = p.add_argument_group("distribution and bookkeeping (intervals in steps; 0: never)")
    run.add_argument("--strategy", choices=STRATEGIES, default=default["strategy"],
                     help="auto: TPU if configured, multi_worker if TF_CONFIG names several "
                          "tasks, mirrored over several GPUs, else default")
    run.add_argument("--jit_compile", choices=("auto", "on", "off"), default=default["jit_compile"],
                     help="compile the step with XLA, the whole step where the strategy "
                          "allows, else each replica's gradients; auto: on with GPUs and TPUs, "
                          "off on CPU-only hosts (slower there)")
    run.add_argument("--logical_cpus", type=int, default=0,
                     help="split the CPU into this many devices (to try mirrored on one machine)")
    run.add_argument("--checkpoint_every", type=int, default=default["checkpoint_every"],
                     help="steps between checkpoints (and one at the end)")
    run.add_argument("--keep_checkpoints", type=int, default=default["keep_checkpoints"],
                     help="how many recent checkpoints to keep")
    run.add_argument("--summary_every", type=int, default=default["summary_every"],
                     help="steps between TensorBoard scalars and progress lines")
    run.add_argument("--image_every", type=int, default=default["image_every"],
                     help="steps between TensorBoard images of eval patches")
    run.add_argument("--refit_every", type=int, default=default["refit_every"],
                     help="steps between refits of the rate model to the real encoder")
    run.add_argument("--refit_patches", type=int, default=default["refit_patches"],
                     help="eval patches the rate model is refitted on")
    run.add_argument("--eval_every", type=int, default=default["eval_every"],
                     help="steps between real-codec evaluations on the eval split")
    _switch(run, "keep_best", default,
            help="export the weights of the evaluation (every --eval_every steps, and "
                 "at the end) with the best real-codec BD-PSNR over the baseline across "
                 "the model's steps, rather than the last ones")
    run.add_argument("--eval_patches", type=int, default=default["eval_patches"],
                     help="eval patches per evaluation (the first ones, same every time)")
    return p


def parse(argv=None):
    """The `Config` and the number of logical CPUs the flags ask for."""
    args = parser().parse_args(argv)
    if args.max_train_minutes is not None and not args.max_train_minutes > 0:
        parser().error("--max_train_minutes must be positive")
    # Left out, --steps is the default bound, or none with a time budget.
    args.steps = getattr(args, "steps", None)
    if args.steps is None and args.max_train_minutes is None:
        args.steps = Config.steps
    if not 0.0 <= args.ema_decay < 1.0:
        parser().error("--ema_decay must lie in [0, 1)")
    for flag in ("steps", "batch_size", "checkpoint_every", "eval_patches", "refit_patches"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser().error(f"--{flag} must be at least 1")
    # `auto` picks one of the presets, by the dataset's scenario.
    presets = OBJECTIVES.values() if args.objective == "auto" else [OBJECTIVES[args.objective]]
    if args.ms_ssim_weight is not None and "mix" not in (
            {args.distortion} if args.distortion else {p["distortion"] for p in presets}):
        parser().error("--ms_ssim_weight weighs a mix: give it with --distortion mix")
    if args.ms_ssim_weight is not None and not 0.0 <= args.ms_ssim_weight <= 1.0:
        parser().error("--ms_ssim_weight must lie in [0, 1]")
    if args.view_weight is not None and not args.view_weight >= 0.0:
        parser().error("--view_weight must be >= 0")
    # `auto` resolves to a flat preset in planes (`objective_for`).
    preset_shape = None if args.objective == "auto" else OBJECTIVES[args.objective]["table_shape"]
    shape = args.table_shape or preset_shape
    if shape not in (None, "flat") and args.jpeg_mode == "planes":
        parser().error(f"--table_shape {shape} is shaped for luma and chroma; --jpeg_mode "
                       "planes codes RGB planes")
    logical_cpus = vars(args).pop("logical_cpus")
    del args.verbose  # logs.set_up's
    return Config(**vars(args)), logical_cpus


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logs.set_up(argv)
    config, logical_cpus = parse(argv)
    from trainer.strategy import split_cpu
    from trainer.training import train

    if logical_cpus:
        split_cpu(logical_cpus)
    result = train(config)
    return 143 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

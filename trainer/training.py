"""The training loop: a custom loop under any `tf.distribute` strategy.

Keras 3's `Model.fit` fails under MultiWorkerMirroredStrategy in TF 2.21
(keras-team/keras#20585), so the loop is ours: one step on every replica
(`strategy.run`), compiled with XLA by `sandwich.model.make_train_step`:
the whole step where it compiles, else XLA up to the gradients.
Around the step, outside anything compiled:

- the rate model's table is refitted to the real encoder at the current
  qstep, on the same fixed patches on every worker (so replicas agree);
- checkpoints (model, optimizer, rate table, and the training time spent,
  which `--max_train_minutes` counts across resumes, `trainer.time_budget`;
  the step is the optimizer's iteration count) go through
  `tf.train.CheckpointManager`: a run killed by SIGKILL resumes from the
  last one, SIGTERM (a preempted Vertex AI VM) saves one first, and on a
  multi-worker run every worker stops with it at the same step
  (`strategy.any_worker`). Only the chief writes; other workers save to a scratch
  directory that is deleted, as multi-worker checkpointing requires;
- TensorBoard scalars and images, a progress line, and periodic evaluation
  on the eval patches (`--eval_data`, else the eval split) with the real codec, of a moving average of the
  weights (`trainer.averaging`, `--ema_decay`);
- at the end, the export dir (`trainer.export`), on the chief only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid

import keras
import numpy as np
import tensorflow as tf

import sandwich
from sandwich import colour_carrier, rate, scenarios
from sandwich.model import Sandwich, check_distortion, make_train_step
from sandwich.specs import DatasetSpec, ModelSpec, check_qstep_range
from trainer import data, export, summaries, strategy as strategies
from trainer.averaging import WeightAverage
from trainer.config import OBJECTIVES, Config, objective_for
from trainer.patch_evaluation import RateDistortionGain, curve_qsteps, evaluate_patches
from trainer.time_budget import Deadline, TrainingClock

IMAGES = 3  # patches shown in TensorBoard
RATE_GRID = 5  # rate model rows over a conditioned model's qstep range


@dataclasses.dataclass(frozen=True)
class Dirs:
    """Where a run writes; Vertex AI's `AIP_*` variables win over `job_dir`."""

    checkpoints: str
    logs: str
    export: str

    @classmethod
    def of(cls, config: Config) -> "Dirs":
        def pick(flag, env, leaf):
            chosen = flag or os.environ.get(env) or (
                config.job_dir and f"{config.job_dir.rstrip('/')}/{leaf}")
            if not chosen:
                raise ValueError(f"no directory for {leaf}: give --job_dir (or the flag "
                                 f"of this directory, or set {env})")
            return chosen.rstrip("/")

        return cls(pick(config.checkpoint_dir, "AIP_CHECKPOINT_DIR", "checkpoints"),
                   pick(config.log_dir, "AIP_TENSORBOARD_LOG_DIR", "logs"),
                   pick(config.export_dir, "AIP_MODEL_DIR", "export"))


@dataclasses.dataclass
class Result:
    """What `train` returns: the final step, metrics and where things went."""

    step: int
    metrics: dict
    export_dir: str | None
    weights_digest: str
    interrupted: bool
    model: Sandwich
    out_of_time: bool = False  # ended by `--max_train_minutes`, not by `--steps`


class Stop:
    """Turns SIGTERM into a request to checkpoint and stop between steps."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            del frame
            logging.warning("signal %d: checkpointing and stopping", signum)
            self.requested = True

        self._previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)


WARMUP = 0.02  # of the run, for the cosine schedule
FINAL_LR = 0.05  # of the base rate, where the cosine schedule ends


def learning_rate(base: float, schedule: str, progress: float) -> float:
    """The step size at `progress` (0..1) through the run.

    'cosine': a linear warmup over the first `WARMUP` of the run (Adam's
    early moments are noisy), then a half cosine from `base` down to
    `FINAL_LR * base`: big steps while far from a good model, small ones to
    settle. Progress is whichever of the step budget and the time budget
    runs out first, so the decay also ends with `--max_train_minutes`; a
    run bounded by time alone (no `--steps`) warms up and decays over its
    time budget.
    """
    if schedule == "constant":
        return base
    progress = min(max(progress, 0.0), 1.0)
    warm = min(1.0, progress / WARMUP)
    return base * warm * (FINAL_LR + (1.0 - FINAL_LR) * 0.5 * (1.0 + np.cos(np.pi * progress)))


class Progress:
    """A console line every few steps: rate, ETA and the loss terms. The
    ETA is whichever comes first, the last step (if any) or the time budget's end."""

    def __init__(self, first: int, last: int | None, deadline: Deadline):
        self._first, self._last, self._deadline = first, last, deadline
        self._start = time.monotonic()

    def line(self, step: int, scalars: dict) -> str:
        elapsed = time.monotonic() - self._start
        rate_ = (step - self._first) / max(elapsed, 1e-9)
        by_steps = (self._last - step) / rate_ if rate_ and self._last else float("inf")
        eta = min(by_steps, self._deadline.remaining())
        terms = " ".join(f"{k} {scalars[k]:.4g}" for k in ("loss", "psnr", "bpp", "qstep"))
        return (f"step {step}{f'/{self._last}' if self._last else ''} {rate_:.2f} steps/s "
                f"eta {_duration(eta)} | {terms}")


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{seconds:02d}s"


def with_objective(config: Config, scenario: str, factor: int) -> Config:
    """`config` with its `--objective` resolved for `scenario` at `factor`
    (`objective_for`) and the loss flags it leaves open (None) set from that
    preset; an MS-SSIM weight is kept for a `mix` only (a preset's weight
    does not outlive an explicit `--distortion mse`)."""
    objective = objective_for(config.objective, scenario, factor, config.jpeg_mode)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be auto or one of {sorted(OBJECTIVES)}, "
                         f"got {config.objective!r}")
    config = dataclasses.replace(config, objective=objective)
    preset = OBJECTIVES[objective]
    chosen = {name: preset[name] if getattr(config, name) is None else getattr(config, name)
              for name in preset}
    if chosen["distortion"] != "mix" and config.ms_ssim_weight is None:
        chosen["ms_ssim_weight"] = None
    chosen["ms_ssim_weight"] = check_distortion(chosen["distortion"], chosen["ms_ssim_weight"])
    return dataclasses.replace(config, **chosen)


# `--qstep_range auto`: per scenario and factor, the rates where the model
# can beat what a user has (measured with the real encoder on the held-out
# photos). x1 spans about 0.25 to 1.5 bits per source pixel (a 10-bit
# source's gain over its 8-bit ceiling lies at the finer steps). x2 spans
# about 0.08 to 0.6, below the rates where x1 and plain JPEG overtake it:
# trained over 3..24 (0.3-1.3 bpp) it was +0.15 dB over plain JPEG, over
# 12..96 +1.26 dB (docs/ablation.md). At x1 the finest step of the range is
# where a long run can fall below the baseline (-0.14 dB at 12, 2 bpp, in
# one 20-minute run, +0.04 dB in another); starting the range at 16 moved the
# weak end there (-0.24 dB at 1.69 bpp after 22,000 steps), where a 12..80 model was
# +0.17 dB above it (docs/ablation.md). x4 over 2..16 coded
# 0.15-0.42 bpp and saturated at 25.3 dB, where x2 was 0.4-3 dB above it and
# plain JPEG overtook it from 0.3 bpp; over 16..128 it codes 0.03-0.18 bpp,
# the rates below x2's reach and plain JPEG's (0.19 bpp at quality 5), and
# extends the front there (docs/ablation.md), though its step 128
# is 0.25 dB below its baseline; x3 over 16..128 is +0.55 dB over its
# baseline (docs/ablation.md).
# gray's baseline (luma alone) codes 1.34 bpp at 8 and 0.25 at 64 on the
# bundled photos (coffee left out), the rates of high_res x1's range.
# high_bit_depth trains in `planes` (`TRAINING_MODES`) from step 1 (table
# entries of 1: as near lossless as an 8-bit JPEG gets) to 32 (about 2 bpp).
AUTO_QSTEP_RANGES = {("high_res", 1): (12.0, 80.0), ("high_res", 2): (12.0, 96.0),
                     ("high_bit_depth", 1): (4.0, 32.0), ("gray", 1): (8.0, 64.0),
                     ("high_bit_depth", 1, "planes"): (1.05, 32.0)}
# The JPEG mode a scenario trains in unless `--jpeg_mode` says: the one its
# users need, where it differs from what the scenario codes by default.
# high_bit_depth's users keep 10-16 bits for the rates where 8 bits are the
# limit; on the 4 held-out photos of `benchmarks/hdr_corpus.py` at 10 bits
# its baseline tops out at 55.38 dB, 14.4 bpp, at step 1 in planes (the
# 8-bit ceiling: 58.34), at 49.72 dB in ycbcr-444 (colour conversion rounds
# to 8 bits twice) and 36.63 dB in ycbcr-420 (`python
# benchmarks/inner_codec.py --deep`); planes is above ycbcr-444 from about
# 6 bpp up (on crops of three of them).
TRAINING_MODES = {"high_bit_depth": "planes"}


def training_scenario(config: Config, spec: DatasetSpec):
    """The scenario a run of `config` trains on the dataset of `spec`: in
    `--jpeg_mode`, else the scenario's `TRAINING_MODES` entry where its
    tables are flat (shaped ones are shaped for luma and chroma, which
    planes does not code), else the scenario's own mode."""
    shape = with_objective(config, spec.scenario, spec.factor).table_shape
    mode = config.jpeg_mode or (TRAINING_MODES.get(spec.scenario) if shape == "flat" else None)
    return scenarios.from_spec(spec, mode)


DEEPER_FACTORS_QSTEP_RANGE = (16.0, 128.0)
# The same rates with standard tables (`--table_shape standard`), whose
# scale codes more bits than a flat step of the same value: the scales
# where the baseline's bits per pixel on the bundled photos (coffee left
# out) match the flat range's ends. Flat 12 at x1 (1.22 bpp) is standard
# 24, flat 12 at x2 (0.40 bpp) 22.5, flat 4 and 32 at 10 bits (3.2 and
# 0.77 bpp) 6.1 and 80, flat 16 at x3 and x4 31 and 30, gray's flat 8 and
# 64 (1.34 and 0.25 bpp) 16 and 220. The coarse ends
# stop at 255, baseline JPEG's largest entry, where most entries are
# clipped already: 0.25 bpp at x1 (flat 80: 0.23), 0.09 at x2 (flat 96:
# 0.07), 0.054 at x3 (flat 128: 0.036), 0.038 at x4 (0.027): standard
# tables cannot reach the coarsest flat rates.
AUTO_QSTEP_RANGES_STANDARD = {("high_res", 1): (24.0, 255.0), ("high_res", 2): (22.0, 255.0),
                              ("high_bit_depth", 1): (6.0, 80.0), ("gray", 1): (16.0, 220.0)}
DEEPER_FACTORS_QSTEP_RANGE_STANDARD = (30.0, 255.0)
# The same with jpegli's tables (`--table_shape jpegli`), matched alike: flat
# 12 and 80 at x1 (1.21 and 0.23 bpp) are jpegli 14 and 120, flat 12 and 96
# at x2 (0.41 and 0.072) jpegli 14 and 140. Flatter than Annex K's, they
# reach the coarse flat rates; elsewhere they take the flat ranges.
AUTO_QSTEP_RANGES_JPEGLI = {("high_res", 1): (14.0, 120.0), ("high_res", 2): (14.0, 140.0)}


def qstep_range(config: Config, scenario) -> tuple[float, float] | None:
    """The steps a run trains for: `--qstep_range`, with 'auto' resolved for
    the scenario and its table shape, or None (`off`: one step, `--qstep`);
    checked by the one rule for a range, `specs.check_qstep_range`."""
    if config.qstep_range != "auto":
        return check_qstep_range(config.qstep_range)
    key = (scenario.name, scenario.factor)
    if scenario.table_shape == "standard":
        return AUTO_QSTEP_RANGES_STANDARD.get(key, DEEPER_FACTORS_QSTEP_RANGE_STANDARD)
    if scenario.table_shape == "jpegli" and key in AUTO_QSTEP_RANGES_JPEGLI:
        return AUTO_QSTEP_RANGES_JPEGLI[key]
    return AUTO_QSTEP_RANGES.get((*key, scenario.jpeg_mode.name),
                                 AUTO_QSTEP_RANGES.get(key, DEEPER_FACTORS_QSTEP_RANGE))


# `--gamma auto`: this many times the baseline's own distortion-rate slope at
# the nominal step (`Scenario.slope`). Measured on held-out photos
# (benchmarks/ablation.py, gamma arms): at 1x the slope the sandwich buys
# PSNR with bits a coarser step would have bought as cheaply, above it the
# pre-processor learns to save bits the post-processor restores.
GAMMA_PER_SLOPE = 2.0


def network_preset(config: Config, scenario) -> str:
    """`--size`, with 'auto' resolved: `wide` where the codec carries a
    downsampled image (its post-processor is a super-resolver, and width
    paid there: +0.32 dB over slim at x2), else `medium` (+0.13 dB over slim
    at x1 in 20 minutes on a corpus of 264 photos)."""
    if config.size != "auto":
        return config.size
    return "wide" if scenario.factor > 1 else "medium"


def settle(config: Config, scenario) -> tuple[Config, object]:
    """`config` with what needs no measurement resolved, and `scenario` with
    its table shape: the objective's loss flags, the network size and the
    qstep range (`qstep_range`). The one place they are resolved; a
    settled config settles to itself."""
    config = with_objective(config, scenario.name, scenario.factor)
    scenario = dataclasses.replace(scenario, table_shape=config.table_shape)
    return dataclasses.replace(config, qstep_range=qstep_range(config, scenario),
                               size=network_preset(config, scenario)), scenario


def resolve(config: Config, scenario, patches: np.ndarray) -> Config:
    """`config` settled (`settle`: the loss flags, the network, the qstep
    range for the scenario) and with gamma from the baseline's slope on
    `patches` (real codec), in the loss's own distortion."""
    config, scenario = settle(config, scenario)
    if config.gamma == "auto":
        low_high = config.qstep_range
        nominal = float(np.sqrt(low_high[0] * low_high[1])) if low_high else config.qstep
        if config.distortion == "mse" and not config.view_weight:
            slope = scenario.slope(patches, nominal)
        else:
            slope = loss_slope(build_model(dataclasses.replace(config, gamma=0.0), scenario),
                               patches, nominal)
        config = dataclasses.replace(config, gamma=round(GAMMA_PER_SLOPE * slope, 2))
        print(f"gamma auto: {config.gamma:g} ({GAMMA_PER_SLOPE:g} x the baseline's "
              f"distortion-rate slope {slope:.1f} at qstep {nominal:.1f})", flush=True)
    return config


def loss_slope(model: Sandwich, patches: np.ndarray, qstep: float, spread: float = 1.05) -> float:
    """The baseline's slope `-dD/dR` at `qstep` in the loss's own distortion
    terms (`Sandwich.real_distortion`: D, and the view term's), measured
    with the real codec on `patches` through `model` untrained (which is
    its baseline), between `scenarios.probe_steps`: what `Scenario.slope`
    measures for squared error alone."""
    points = []
    for q in scenarios.probe_steps(qstep, spread):
        real = model.real_forward(patches, q)
        points.append((model.real_distortion(patches, real), float(np.mean(real["bpp"]))))
    (d_fine, r_fine), (d_coarse, r_coarse) = points
    return float((d_coarse - d_fine) / max(r_fine - r_coarse, 1e-9))


def build_model(config: Config, scenario, rate_model=None) -> Sandwich:
    """The sandwich `config` describes (`settle`d), around `scenario` with
    the table shape `config` asks for."""
    config, scenario = settle(config, scenario)
    if not isinstance(config.gamma, (int, float)):
        raise ValueError(f"gamma must be a number here (resolve 'auto' first), got {config.gamma!r}")
    model = Sandwich(scenario, size=config.network(), post_size=config.post_network(),
                     qstep=config.qstep,
                     train_qstep=config.train_qstep, quantization=config.quantization,
                     gamma=config.gamma, qstep_range=config.qstep_range,
                     condition_preprocessor=config.condition_preprocessor,
                     penalty_weight=config.penalty_weight, rate_model=rate_model,
                     distortion=config.distortion,
                     ms_ssim_weight=config.ms_ssim_weight if config.distortion == "mix" else None,
                     view_weight=config.view_weight,
                     carrier_gain=carrier_gain(config, scenario))
    # Frozen, the pre-processor stays the identity (and codes no colour
    # carrier): post-processing alone.
    model.preprocessor.trainable = config.train_preprocessor
    if model.carrier:
        model.carrier.trainable = config.train_preprocessor
    return model


def carrier_gain(config: Config, scenario) -> float:
    """The gray scenario's colour carriers' starting gain: `--carrier_gain`,
    else `colour_carrier.DEFAULT_GAIN`; 0 where the pre-processor is
    frozen (it sends no colour) and for the other scenarios (no carriers)."""
    if config.carrier_gain is not None and scenario.channels != 1:
        raise ValueError("--carrier_gain is the gray scenario's; "
                         f"{scenario.name} codes colour as it is")
    if scenario.channels != 1 or not config.train_preprocessor:
        return 0.0
    return colour_carrier.DEFAULT_GAIN if config.carrier_gain is None else config.carrier_gain


def weights_digest(model) -> str:
    """A fingerprint of the weights: equal on every worker of a healthy run."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _baseline_bottleneck(scenario, patches: np.ndarray) -> np.ndarray:
    """What an untrained sandwich (the baseline) hands the codec."""
    source = tf.cast(tf.convert_to_tensor(patches), tf.float32)
    return scenarios.codec_input(scenario.to_bottleneck(source)).numpy()


# The training time's key in a checkpoint (`_Checkpoints`).
_TRAINED_SECONDS = "trained_seconds/.ATTRIBUTES/VARIABLE_VALUE"


class _Checkpoints:
    """A CheckpointManager on the chief; elsewhere a scratch one, emptied after
    each save (every worker must take part in saving distributed variables).
    It saves `tracked` and the training time (`clock`), brought up to date
    before each save."""

    def __init__(self, tracked: dict, clock: TrainingClock, directory: str, chief: bool,
                 keep: int):
        self.directory = directory
        self._scratch = None if chief else tempfile.mkdtemp(prefix="sandwich-ckpt-")
        self._clock = clock
        self._checkpoint = tf.train.Checkpoint(**tracked, trained_seconds=clock.seconds)
        # What checkpoints written before the training time was saved hold:
        # they still resume, their time counted from zero.
        self._untimed = tf.train.Checkpoint(**tracked)
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, self._scratch or directory, max_to_keep=keep)

    def restore(self) -> str | None:
        latest = tf.train.latest_checkpoint(self.directory)
        if latest:
            timed = tf.train.load_checkpoint(latest).has_tensor(_TRAINED_SECONDS)
            try:
                (self._checkpoint if timed else self._untimed).restore(
                    latest).assert_existing_objects_matched()
            except (ValueError, AssertionError) as e:
                raise ValueError(
                    f"{latest} does not fit this model (another size or version of the "
                    f"model or the rate model wrote it); resume with the flags and version "
                    f"that wrote it, or train into a new --job_dir: {e}") from e
        return latest

    def save(self, step: int) -> None:
        self._clock.record()
        self._manager.save(checkpoint_number=step)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            os.makedirs(self._scratch)

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _train_step(config: Config, model, optimizer, strategy):
    """The step `--jit_compile` asks for: `on`, XLA over the whole replica
    step where it compiles, else up to the gradients (several devices in one
    process: the update would read another replica's variables); `off`, no
    XLA; `auto`, `on` on a host with GPUs or TPUs and `off` on a CPU-only
    host: there XLA made the step 0.88-0.95x as fast and took 10-35 s to
    compile (`benchmarks/train_step_throughput.py`)."""
    jit = config.jit_compile == "on" or (config.jit_compile == "auto"
                                         and strategies.has_accelerator())
    split = not strategies.whole_step_compiles(strategy)
    return make_train_step(model, optimizer, jit_compile=jit,
                           xla_scope="gradients" if split else "step", strategy=strategy)


def train(config: Config) -> Result:
    """Runs (or resumes) a training run to `config.steps`, or until
    `config.max_train_minutes` have passed, whichever comes first, and
    exports it: set up (`_set_up`), the steps (`_steps`), the export
    (`_finish`)."""
    if config.steps is None and config.max_train_minutes is None:
        raise ValueError("a run without a step bound needs a time budget (max_train_minutes)")
    run = _set_up(config)
    return _finish(run, _steps(run))


@dataclasses.dataclass
class _Run:
    """A run as `_set_up` leaves it: its config resolved, its model built
    and restored from the last checkpoint, if any, at `step`."""

    config: Config
    spec: DatasetSpec
    dirs: Dirs
    strategy: tf.distribute.Strategy
    scenario: scenarios.Scenario
    chief: bool
    eval_patches: np.ndarray
    refit_patches: np.ndarray
    model: Sandwich
    rate_model: rate.LogRateModel
    optimizer: keras.optimizers.Optimizer
    train_step: object
    average: WeightAverage | None
    clock: TrainingClock
    checkpoints: _Checkpoints
    step: int

    @property
    def last(self) -> int | float:
        """The last step, or infinity for a run bounded by time alone."""
        return self.config.steps or float("inf")


@dataclasses.dataclass
class _Ended:
    """How `_steps` ended: at `step`, by time, by a stop request, or at the last step."""

    step: int
    metrics: dict
    best: "_Best"
    out_of_time: bool
    interrupted: bool


def _set_up(config: Config) -> _Run:
    """The strategy, the data and the resolved config, then the model, its
    optimizer and rate model, restored from the job's last checkpoint."""
    spec = data.read_spec(config.data)
    dirs = Dirs.of(config)
    # Before any TensorFlow op: collective ops are configured at start-up.
    strategy = strategies.make(config.strategy)
    data.check(config.data, spec, config.scenario)
    scenario = training_scenario(config, spec)
    chief = strategies.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size {config.batch_size} does not split over {replicas} replicas")
    eval_patches = data.eval_patches(config.data, spec, config.eval_patches, config.eval_data)
    config = resolve(config, scenario, eval_patches)
    scenario = dataclasses.replace(scenario, table_shape=config.table_shape)
    refit_patches = eval_patches[:config.refit_patches]

    with strategy.scope():
        # Fitted at the tables the model starts from: the scenario's shape.
        rate_model = rate.LogRateModel(rate.calibrate(
            _baseline_bottleneck(scenario, refit_patches),
            [scenario.tables_at(q) for q in _rate_qsteps(config.qstep_range, config.qstep)],
            scenario.jpeg_mode))
        model = build_model(config, scenario, rate_model)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        train_step = _train_step(config, model, optimizer, strategy)
        tracked = dict(model=model, optimizer=optimizer, rate_model=rate_model)
    average = WeightAverage(model.get_weights(), config.ema_decay) if config.ema_decay else None
    if average:
        tracked["average"] = average
    clock = TrainingClock()
    checkpoints = _Checkpoints(tracked, clock, dirs.checkpoints, chief, config.keep_checkpoints)
    restored = checkpoints.restore()
    step = int(optimizer.iterations.numpy())
    trained = f"{clock.elapsed() / 60:.1f} min trained; " if restored else ""
    print(f"{'resumed from ' + restored if restored else 'starting'} at step {step}; {trained}"
          f"{spec.scenario} {spec.bit_depth}-bit x{spec.factor}, {replicas} replica(s), "
          f"global batch {config.batch_size}", flush=True)
    return _Run(config, spec, dirs, strategy, scenario, chief, eval_patches, refit_patches,
                model, rate_model, optimizer, train_step, average, clock, checkpoints, step)


def _steps(run: _Run) -> _Ended:
    """The training steps, until the last, the time budget or a stop
    request (SIGTERM on any worker), each followed by what is due
    (`_after_step`); a checkpoint where they stop early."""
    config, strategy = run.config, run.strategy
    dataset = strategy.distribute_datasets_from_function(
        lambda context: data.train_dataset(
            config.data, run.spec, context.get_per_replica_batch_size(config.batch_size),
            context, config.seed, config.augment))
    writer = (tf.summary.create_file_writer(run.dirs.logs) if run.chief
              else tf.summary.create_noop_writer())
    iterator = iter(dataset)
    run.clock.start()
    deadline = Deadline(config.max_train_minutes, run.clock)
    progress = Progress(run.step, config.steps, deadline)
    metrics: dict = {}
    best = _Best(RateDistortionGain(run.scenario, run.eval_patches, curve_qsteps(run.model))
                 if run.chief and config.keep_best else None)
    out_of_time = False
    rate_now = config.learning_rate
    step, last = run.step, run.last
    with Stop() as stop, writer.as_default(step=step):
        while step < last and not strategies.any_worker(strategy, stop.requested):
            # Workers agree on the time budget too: one whose clock ran out
            # alone would leave the others waiting in the next all-reduce.
            out_of_time = strategies.any_worker(strategy, deadline.passed(step))
            if out_of_time:
                break
            if config.lr_schedule != "constant":
                # Workers' clocks differ: they agree on the mean, so they step alike.
                done = strategies.mean_over_workers(
                    strategy, max((step + 1) / last, deadline.fraction()))
                rate_now = learning_rate(config.learning_rate, config.lr_schedule, done)
                run.optimizer.learning_rate = rate_now
            scalars = {k: float(v) for k, v in run.train_step(_next(iterator, config.data)).items()}
            step += 1
            evaluated = _after_step(run, step, scalars, rate_now, progress, best)
            if evaluated is not None:
                metrics = evaluated
        interrupted = step < last and not out_of_time
        if step < last:
            run.checkpoints.save(step)
        writer.flush()
    run.checkpoints.close()
    return _Ended(step, metrics, best, out_of_time, interrupted)


def _after_step(run: _Run, step: int, scalars: dict, rate_now: float, progress: Progress,
                best: "_Best") -> dict | None:
    """What follows a step: the moving average, a check of the loss, and
    what is due at `step` (summaries, images, a refit, an evaluation, a
    checkpoint). Returns the evaluation's metrics where one was due."""
    config, model = run.config, run.model
    if run.average:
        run.average.update(model, step)
    tf.summary.experimental.set_step(step)
    if not np.isfinite(scalars["loss"]):
        raise FloatingPointError(f"the loss is {scalars['loss']} at step {step}")

    def due(every: int) -> bool:
        return bool(every) and (step % every == 0 or step == run.last)

    if due(config.summary_every):
        for name, value in scalars.items():
            summaries.scalar(f"train/{name}", value)
        summaries.scalar("train/learning_rate", rate_now)
        if run.chief:
            print(progress.line(step, scalars), flush=True)
    if run.chief and due(config.image_every):
        _write_images(model, run.eval_patches[:IMAGES])
    if due(config.refit_every):
        _refit(model, run.rate_model, run.refit_patches)
    metrics = None
    if due(config.eval_every):
        with _evaluated(model, run.average):
            metrics = best.offer(step, model, _evaluate(model, run.eval_patches, run.chief))
    if due(config.checkpoint_every):
        run.checkpoints.save(step)
    return metrics


def _finish(run: _Run, ended: _Ended) -> Result:
    """The weights' digest, then, unless the run was stopped early, the
    export (on the chief) of the best evaluation's weights."""
    model, strategy, step = run.model, run.strategy, ended.step
    digest = weights_digest(model)
    print(f"step {step}: weights digest {digest}", flush=True)
    if ended.interrupted:
        strategies.barrier(strategy)  # every worker has saved before any exits
        return Result(step, ended.metrics, None, digest, True, model)
    export_dir, metrics = None, ended.metrics
    with _evaluated(model, run.average):
        if not metrics or ended.out_of_time:
            metrics = ended.best.offer(step, model, _evaluate(model, run.eval_patches, run.chief))
        if run.chief:
            weights, metrics = ended.best.pick(step, model, metrics)
            export_dir = _export(run.config, run.spec, run.scenario, weights, metrics,
                                 run.dirs.export)
            print(f"exported to {export_dir}", flush=True)
    strategies.barrier(strategy)
    return Result(step, metrics, export_dir, digest, False, model, ended.out_of_time)


def _evaluated(model, average: WeightAverage | None):
    """The weights that are evaluated and exported: the moving average
    (`--ema_decay`), else the model's own."""
    return average.swapped_in(model) if average else contextlib.nullcontext(model)


def _next(iterator, data_dir: str):
    try:
        return next(iterator)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise data.DataError(f"unreadable training record in {data_dir}: {e.message}") from e
    except (StopIteration, tf.errors.OutOfRangeError) as e:
        raise data.DataError(f"{data_dir} yields no training batch") from e


def _write_images(model, patches: np.ndarray) -> None:
    images = model(tf.convert_to_tensor(patches))["images"]
    for name, batch in images.items():
        summaries.images(f"images/{name}", batch, IMAGES)


def _rate_qsteps(qstep_range, qstep=None) -> list:
    """Where the rate model is fitted: at `qstep` (None: the model's current
    tables), or on a log-spaced grid over a conditioned model's range (the
    rate model interpolates between its rows)."""
    if qstep_range is None:
        return [qstep]
    return list(np.geomspace(*qstep_range, RATE_GRID))


def _refit(model, rate_model, patches: np.ndarray) -> None:
    """Refits the rate table on what the pre-processor now hands the codec,
    at the model's current tables, rescaled over its range if conditioned
    (each row on the bottleneck made for its step)."""
    source = tf.convert_to_tensor(patches)
    qsteps = _rate_qsteps(model.qstep_range)
    images = ([model.preprocess(source, q).numpy() for q in qsteps]
              if model.preprocessor_conditioned else model.preprocess(source).numpy())
    fitted = rate_model.refit(images, [model.codec_tables(q) for q in qsteps])
    slots = len(fitted.ac_scale[0]) // rate.FEATURES
    for slot in range(slots):
        for feature, name in enumerate(("log2_ac_bits", "nonzero_ac_bits", "log2_run_bits")):
            summaries.scalar(f"rate_model/{name}_{slot}", fitted.ac_scale[0][feature * slots + slot])
    summaries.scalar("rate_model/median_error", fitted.median_error[0])


def _evaluate(model, patches: np.ndarray, chief: bool) -> dict:
    """Real-codec metrics on the chief (the others would only repeat them)."""
    if not chief:
        return {}
    metrics = evaluate_patches(model, patches)
    for name, value in metrics.items():
        summaries.scalar(f"eval/{name}", value)
    print("eval (real JPEG): " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
          flush=True)
    return metrics


class _Best:
    """The weights of the evaluation where the sandwich's BD-PSNR over its
    baseline (`RateDistortionGain`) was highest, kept in memory on the
    chief; with no `gain` (`--no-keep_best`, other workers) it keeps
    nothing and the last weights are exported. A resumed run starts
    afresh: earlier runs' evaluations are not in its checkpoint."""

    def __init__(self, gain: RateDistortionGain | None):
        self._gain = gain
        self._step, self._weights, self._metrics = None, None, None

    def offer(self, step: int, model, metrics: dict) -> dict:
        """`metrics` with `bd_psnr_vs_baseline` added (and kept if best)."""
        if self._gain is None or not metrics:
            return metrics
        metrics = {**metrics, "bd_psnr_vs_baseline": self._gain(model)}
        summaries.scalar("eval/bd_psnr_vs_baseline", metrics["bd_psnr_vs_baseline"])
        print(f"eval (real JPEG) over the range: BD-PSNR {metrics['bd_psnr_vs_baseline']:+.3f} dB "
              "against the baseline", flush=True)
        if self._metrics is None or (metrics["bd_psnr_vs_baseline"]
                                     > self._metrics["bd_psnr_vs_baseline"]):
            self._step, self._weights, self._metrics = step, model.get_weights(), metrics
        return metrics

    def pick(self, step: int, model, metrics: dict) -> tuple[list, dict]:
        """The weights to export and their metrics (with `selected_step`)."""
        if self._weights is None:
            return model.get_weights(), metrics
        if self._step != step:
            print(f"exporting the weights of step {self._step}: BD-PSNR "
                  f"{self._metrics['bd_psnr_vs_baseline']:+.3f} dB against the baseline, "
                  f"against {metrics['bd_psnr_vs_baseline']:+.3f} dB at step {step}", flush=True)
        return self._weights, {**self._metrics, "selected_step": self._step}


def _export(config: Config, spec: DatasetSpec, scenario, weights: list, metrics: dict,
            directory: str) -> str:
    """Exports a model of `weights` with plain (undistributed) variables."""
    serving = build_model(config, scenario)
    serving.set_weights(weights)
    qstep = float(serving.qstep)
    run_config = {k: v for k, v in dataclasses.asdict(config).items()
                  if k not in ("data", "eval_data", "job_dir", "checkpoint_dir", "log_dir",
                               "export_dir", "model_id")}
    # What the real encoder was given in training and evaluation: nothing
    # but the step for flat tables, else the tables at the nominal step.
    qtables = serving.codec_tables(qstep)
    model_spec = ModelSpec(
        model_id=config.model_id or (
            f"{spec.scenario}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"),
        scenario=spec.scenario, bit_depth=spec.bit_depth, factor=spec.factor, qstep=qstep,
        jpeg_mode=scenario.jpeg_mode.name,
        qtables=None if np.ndim(qtables) == 0 else np.asarray(qtables, float).tolist(),
        qstep_range=list(serving.qstep_range) if serving.conditioned else None,
        preprocessor_reads_qstep=serving.preprocessor_conditioned,
        objective=config.objective, distortion=serving.distortion,
        ms_ssim_weight=serving.ms_ssim_weight, view_weight=serving.view_weight,
        table_shape=serving.scenario.table_shape,
        dataset=json.loads(spec.to_json()), metrics=metrics, config=run_config,
        version=sandwich.__version__)
    return export.save(serving, model_spec, directory)

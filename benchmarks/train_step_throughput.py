"""Training-step throughput: our compiled step against a host-callback step.

Both steps train the same sandwich (same scenario, network size, batch and
initial weights) and differ only in where the rate comes from:

- compiled: the calibrated rate model inside the step, compiled with XLA
  (`sandwich.model.make_train_step(..., jit_compile=True)`);
- host callback: the reference implementation's way of fitting its rate,
  the real encoder run through `tf.py_function` on every step to rescale the
  proxy's rate to the true bit count. The callback leaves the graph, so the
  step cannot be compiled and every step waits on Python and libjpeg.

A third row runs our step without XLA, to tell what dropping the callback
buys from what XLA buys on this machine. The floor is the same step with
the codec left out (the networks and the resampling alone, forward and
backward), with and without XLA: the step's ratio to it is what the codec
proxy and the rate model cost.

The sandwich is the one the trainer builds by default: rate-conditioned
over the trainer's own `--qstep_range auto` for the scenario (each batch
coded at a drawn step, which the processors are told as the trainer's
defaults have it); `--qstep_range off` times a sandwich of one step,
`--qstep`. Patches are random crops of the bundled
photographs. Compilation (the first steps) is timed apart from the steady
state the figures report.

    PYTHONPATH=. python benchmarks/train_step_throughput.py --batch_size 8 --patch_size 64 --rounds 3
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from sandwich import model, samples, scenarios
from sandwich.jpeg import real_roundtrip
from trainer import task, training

WARMUP_STEPS = 2


def training_qstep(sandwich: model.Sandwich, source):
    """The step a training batch is coded at, as `Sandwich.call` draws it
    (None: the model's own)."""
    return sandwich.drawn_qstep(source) if sandwich.conditioned else None


def host_callback_terms(sandwich: model.Sandwich, source) -> dict:
    """The loss with the proxy's rate rescaled to the real encoder's bits."""
    forward = sandwich.forward(source, training_qstep(sandwich, source))
    bottleneck = scenarios.codec_input(forward.bottleneck)
    real_bits = tf.py_function(
        lambda images, qstep: real_roundtrip(images.numpy(), float(qstep))[1].astype(np.float32),
        [bottleneck, forward.qstep], tf.float32)
    real_bits.set_shape(forward.bits.shape)
    # The gradient still flows through the proxy; only its scale is measured.
    bits = forward.bits * tf.stop_gradient(real_bits / forward.bits)
    return sandwich.loss_terms(forward._replace(bits=bits))


def networks_only_terms(sandwich: model.Sandwich, source) -> dict:
    """The loss with the codec left out: the bottleneck goes straight to the
    post-processor and costs no bits. The step's floor."""
    qstep = training_qstep(sandwich, source)
    x = tf.cast(source, tf.float32)
    bottleneck = sandwich.scenario.to_bottleneck(
        sandwich.preprocessor(x, sandwich.preprocessor_level(qstep)))
    reconstruction = sandwich.postprocessor(
        sandwich.scenario.from_bottleneck(bottleneck, x.shape[1:3]), sandwich.level(qstep))
    return sandwich.loss_terms(model.Forward(
        x, bottleneck, bottleneck, reconstruction, tf.zeros([x.shape[0]]),
        sandwich.qstep if qstep is None else qstep))


def patches(scenario: scenarios.Scenario, count: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    photos = samples.load_all()
    out = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        y = rng.integers(0, photo.shape[0] - size + 1)
        x = rng.integers(0, photo.shape[1] - size + 1)
        out.append(photo[y:y + size, x:x + size])
    batch = np.stack(out)
    if scenario.bit_depth > 8:
        # Throughput does not depend on the low bits: leave them zero.
        batch = batch.astype(np.uint16) << (scenario.bit_depth - 8)
    return batch


def prepare(args, scenario, batches, *, jit_compile: bool, loss_fn=None):
    """A step of a fresh sandwich, warmed up: (step, seconds the warm-up took)."""
    keras.utils.set_random_seed(args.seed)
    sandwich = model.Sandwich(scenario, size=args.size, qstep=args.qstep,
                              qstep_range=args.qstep_range)
    step = model.make_train_step(sandwich, keras.optimizers.Adam(args.learning_rate),
                                 jit_compile=jit_compile, loss_fn=loss_fn)
    start = time.perf_counter()
    for batch in batches[:WARMUP_STEPS]:
        float(step(batch)["loss"])
    return step, time.perf_counter() - start


def patches_per_second(step, batches, batch_size: int) -> float:
    start = time.perf_counter()
    for batch in batches:
        loss = step(batch)["loss"]
    float(loss)  # Wait for the last step.
    return batch_size * len(batches) / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", choices=scenarios.specs.SCENARIOS, default="high_res")
    parser.add_argument("--bit_depth", type=int, help="source bit depth (scenario default)")
    parser.add_argument("--factor", type=int, help="high_res factor (scenario default)")
    parser.add_argument("--size", default="auto",
                        help="network preset (slim, wide, paper); auto: the trainer's choice")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--patch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after warm-up")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed runs of every row, in turns; each row keeps its best")
    parser.add_argument("--qstep", type=float, default=16.0,
                        help="the step of a sandwich that is not rate-conditioned")
    parser.add_argument("--qstep_range", type=task._qstep_range, default="auto",
                        help="LOW,HIGH: a rate-conditioned sandwich; 'auto': the trainer's "
                             "range for the scenario; 'off': one step, --qstep")
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    scenario = scenarios.make(args.scenario, bit_depth=args.bit_depth, factor=args.factor)
    config = training.Config(data="", qstep_range=args.qstep_range, size=args.size)
    args.qstep_range = training.qstep_range(config, scenario)
    args.size = training.network_preset(config, scenario)
    data = patches(scenario, args.batch_size * (WARMUP_STEPS + args.steps), args.patch_size,
                   args.seed)
    batches = [tf.constant(b) for b in np.split(data, WARMUP_STEPS + args.steps)]
    rates = (f"rate-conditioned over qstep {args.qstep_range[0]:g}-{args.qstep_range[1]:g}"
             if args.qstep_range else f"qstep {args.qstep:g}")
    print(f"{scenario.name} {scenario.bit_depth}-bit x{scenario.factor}, {args.size} networks, "
          f"{rates}, batch {args.batch_size} x {args.patch_size}x{args.patch_size}, "
          f"{args.steps} steps")
    steps = {
        "compiled (XLA, rate model in the step)": prepare(args, scenario, batches,
                                                          jit_compile=True),
        "host callback (real encoder every step)": prepare(
            args, scenario, batches, jit_compile=False, loss_fn=host_callback_terms),
        "rate model in the step, XLA off": prepare(args, scenario, batches, jit_compile=False),
        "floor: networks alone, XLA": prepare(args, scenario, batches, jit_compile=True,
                                              loss_fn=networks_only_terms),
        "floor: networks alone, XLA off": prepare(args, scenario, batches, jit_compile=False,
                                                  loss_fn=networks_only_terms),
    }
    # Rounds take turns, and each row keeps its best: on a shared machine a
    # row measured once may have lost its cores to another process.
    best = dict.fromkeys(steps, 0.0)
    for _ in range(args.rounds):
        for name, (step, _) in steps.items():
            best[name] = max(best[name], patches_per_second(
                step, batches[WARMUP_STEPS:], args.batch_size))
    results = {name: (steps[name][1], best[name]) for name in steps}
    for name, (warmup, throughput) in results.items():
        print(f"{name:42s} {throughput:8.1f} patches/s   "
              f"(first {WARMUP_STEPS} steps: {warmup:.1f} s)")
    compiled, host, uncompiled, floor_xla, floor = (t for _, t in results.values())
    print(f"speed-up of the compiled step over the host callback: {compiled / host:.2f}x "
          f"(of the rate model alone, both without XLA: {uncompiled / host:.2f}x)")
    print(f"step time over its floor: {floor_xla / compiled:.2f}x with XLA, "
          f"{floor / uncompiled:.2f}x without; XLA's speed-up of the step: "
          f"{compiled / uncompiled:.2f}x, of the floor: {floor_xla / floor:.2f}x")


if __name__ == "__main__":
    main()

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
buys from what XLA buys on this machine.

Patches are random crops of the bundled photographs. Compilation (the first
steps) is timed apart from the steady state the figures report.

    PYTHONPATH=. python benchmarks/train_step_throughput.py --batch_size 8 --patch_size 64
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from sandwich import model, samples, scenarios
from sandwich.jpeg import real_roundtrip

WARMUP_STEPS = 2


def host_callback_terms(sandwich: model.Sandwich, source) -> dict:
    """The loss with the proxy's rate rescaled to the real encoder's bits."""
    forward = sandwich.forward(source)
    bottleneck = scenarios.codec_input(forward.bottleneck)
    real_bits = tf.py_function(
        lambda images, qstep: real_roundtrip(images.numpy(), float(qstep))[1].astype(np.float32),
        [bottleneck, sandwich.qstep], tf.float32)
    real_bits.set_shape(forward.bits.shape)
    # The gradient still flows through the proxy; only its scale is measured.
    bits = forward.bits * tf.stop_gradient(real_bits / forward.bits)
    return sandwich.loss_terms(forward._replace(bits=bits))


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


def measure(args, scenario, batches, *, jit_compile: bool, loss_fn=None) -> tuple[float, float]:
    """Returns (seconds for the warm-up steps, patches per second after)."""
    keras.utils.set_random_seed(args.seed)
    sandwich = model.Sandwich(scenario, size=args.size, qstep=args.qstep)
    step = model.make_train_step(sandwich, keras.optimizers.Adam(args.learning_rate),
                                 jit_compile=jit_compile, loss_fn=loss_fn)
    start = time.perf_counter()
    for batch in batches[:WARMUP_STEPS]:
        float(step(batch)["loss"])
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches[WARMUP_STEPS:]:
        loss = step(batch)["loss"]
    float(loss)  # Wait for the last step.
    return warmup, args.batch_size * args.steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", choices=scenarios.specs.SCENARIOS, default="high_res")
    parser.add_argument("--bit_depth", type=int, help="source bit depth (scenario default)")
    parser.add_argument("--factor", type=int, help="high_res factor (scenario default)")
    parser.add_argument("--size", default="slim", help="network preset: slim or paper")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--patch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after warm-up")
    parser.add_argument("--qstep", type=float, default=16.0)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    scenario = scenarios.make(args.scenario, bit_depth=args.bit_depth, factor=args.factor)
    data = patches(scenario, args.batch_size * (WARMUP_STEPS + args.steps), args.patch_size,
                   args.seed)
    batches = [tf.constant(b) for b in np.split(data, WARMUP_STEPS + args.steps)]
    print(f"{scenario.name} {scenario.bit_depth}-bit x{scenario.factor}, {args.size} networks, "
          f"batch {args.batch_size} x {args.patch_size}x{args.patch_size}, {args.steps} steps")
    results = {
        "compiled (XLA, rate model in the step)": measure(args, scenario, batches,
                                                          jit_compile=True),
        "host callback (real encoder every step)": measure(
            args, scenario, batches, jit_compile=False, loss_fn=host_callback_terms),
        "rate model in the step, XLA off": measure(args, scenario, batches, jit_compile=False),
    }
    for name, (warmup, throughput) in results.items():
        print(f"{name:42s} {throughput:8.1f} patches/s   "
              f"(first {WARMUP_STEPS} steps: {warmup:.1f} s)")
    compiled, host, uncompiled = (throughput for _, throughput in results.values())
    print(f"speed-up of the compiled step over the host callback: {compiled / host:.2f}x "
          f"(of the rate model alone, both without XLA: {uncompiled / host:.2f}x)")


if __name__ == "__main__":
    main()

"""Training throughput on the CPU: 1 vs 2 replicas, XLA-compiled vs not.

    PYTHONPATH=. python benchmarks/trainer_throughput.py [--patch_size 64 --batch_size 8 --steps 20]

Prints patches per second of the trainer's step under a `tf.distribute`
strategy for each configuration, in one process:
the CPU is split into two logical devices first, so that MirroredStrategy
has two replicas to spread the global batch over. Two logical devices share
the same cores, so the 2-replica figure shows the cost of distribution on
this machine, not a speed-up. With one replica XLA compiles the whole step
(`sandwich.model.make_train_step`); with two, only the forward and backward
pass (its `xla_scope='gradients'`), as XLA on CPUs has no all-reduce.
"""
from __future__ import annotations

import argparse
import time

import tensorflow as tf

from trainer.strategy import split_cpu


def measure(strategy, xla: bool, patches, args) -> float:
    import keras

    from sandwich import rate, samples, scenarios
    from sandwich.model import Sandwich, make_train_step

    scenario = scenarios.make(args.scenario)
    with strategy.scope():
        rate_model = rate.LogRateModel(rate.calibrate(
            samples.crops(samples.load_all(), args.patch_size)[:4], [20.0]))
        model = Sandwich(scenario, size=args.size, rate_model=rate_model)
        optimizer = keras.optimizers.Adam(1e-4)
        scope = "gradients" if strategy.num_replicas_in_sync > 1 else "step"
        step = make_train_step(model, optimizer, jit_compile=xla, xla_scope=scope,
                               strategy=strategy)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(patches).repeat()
        .batch(args.batch_size, drop_remainder=True).prefetch(2))
    batches = iter(dataset)
    for _ in range(args.warmup):  # tracing and compilation
        step(next(batches))["loss"].numpy()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(next(batches))["loss"]
    loss.numpy()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", default="high_res")
    parser.add_argument("--size", default="slim")
    parser.add_argument("--patch_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    split_cpu(2)
    from sandwich import samples

    patches = samples.crops(samples.load_all(), args.patch_size)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    runs = [("1 replica, XLA", one, True), ("1 replica, no XLA", one, False),
            ("2 replicas (mirrored), XLA", two, True),
            ("2 replicas (mirrored), no XLA", two, False)]
    print(f"{args.scenario} {args.size}, {args.patch_size}x{args.patch_size} patches, "
          f"global batch {args.batch_size}, {args.steps} timed steps")
    results = {}
    for name, strategy, xla in runs:
        results[name] = measure(strategy, xla, patches, args)
        print(f"{name:32s} {results[name]:8.1f} patches/s", flush=True)
    for replicas in ("1 replica", "2 replicas (mirrored)"):
        speedup = results[f"{replicas}, XLA"] / results[f"{replicas}, no XLA"]
        print(f"XLA speed-up, {replicas}: x{speedup:.2f}")


if __name__ == "__main__":
    main()

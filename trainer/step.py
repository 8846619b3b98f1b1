"""A training step with XLA for the forward and backward pass only.

`sandwich.model.make_train_step` compiles the whole replica step, gradient
all-reduce and update included. That fails in two places a trainer meets:
on CPUs, XLA has no collective ops (b/194942685), so neither a multi-worker
nor a multi-device step compiles; and with several devices in one process
(MirroredStrategy), a compiled function traced for one replica is reused
for the others, and XLA then reads another device's variables
(keras-team/keras#19005, why Keras turns XLA off under tf.distribute).

Here the compiled part stops at the gradients, and its trace is keyed by the
replica's device, so each replica gets its own; the all-reduce and the
optimizer update run outside XLA, as ordinary distributed ops.
"""
from __future__ import annotations

import tensorflow as tf

from sandwich.model import SCALARS


def make_split_step(model, optimizer, strategy: tf.distribute.Strategy):
    """`train_step(source) -> {name: scalar}`, the contract of
    `sandwich.model.make_train_step`; build it inside `strategy.scope()`."""
    variables = model.trainable_variables
    if not optimizer.built:
        optimizer.build(variables)

    @tf.function(jit_compile=True)
    def gradients(source, device: str):
        del device  # Only keys the trace: one compiled function per replica device.
        with tf.GradientTape() as tape:
            terms = model(source, training=True)
            # Replicas' gradients are summed: scale so that they average.
            loss = terms["loss"] / strategy.num_replicas_in_sync
        return tape.gradient(loss, variables), {name: terms[name] for name in SCALARS}

    def replica_step(source):
        grads, scalars = gradients(source, source.device)
        optimizer.apply_gradients(zip(grads, variables))
        return scalars

    @tf.function
    def train_step(source):
        scalars = strategy.run(replica_step, args=(source,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in scalars.items()}

    return train_step

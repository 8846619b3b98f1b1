"""Which `tf.distribute` strategy to train under, and which worker writes.

`auto` follows the machine the job landed on, so the same command runs on a
laptop, a multi-GPU VM, a Vertex AI multi-worker pool (which describes the
cluster in `TF_CONFIG`) and a TPU VM.
"""
from __future__ import annotations

import functools
import json
import os

import tensorflow as tf

from trainer.config import STRATEGIES



def split_cpu(count: int) -> None:
    """Splits the host CPU into `count` logical devices, so that distribution
    over several replicas can be exercised without accelerators. Must run
    before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def cluster_tasks() -> int:
    """How many tasks `TF_CONFIG` names (0 when it is unset)."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker"))


def _tpu_configured() -> bool:
    return bool(os.environ.get("TPU_NAME") or tf.config.list_physical_devices("TPU"))


def resolve(name: str) -> str:
    """The concrete strategy `auto` stands for here; others unchanged."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
    if name != "auto":
        return name
    if _tpu_configured():
        return "tpu"
    if cluster_tasks() > 1:
        return "multi_worker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make(name: str) -> tf.distribute.Strategy:
    """Creates the strategy; call before any variable or dataset exists."""
    name = resolve(name)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif name == "multi_worker":
        if not cluster_tasks():
            raise ValueError("--strategy multi_worker needs TF_CONFIG to describe the cluster")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    else:
        strategy = tf.distribute.get_strategy()
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes checkpoints, summaries and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(
            resolver, tf.distribute.cluster_resolver.TPUClusterResolver):
        return True
    return chief_task(resolver.task_type, resolver.task_id or 0,
                      resolver.cluster_spec().as_dict())


def chief_task(task_type: str | None, task_id: int, cluster: dict) -> bool:
    """Vertex AI names a `chief` task; in a bare cluster of `worker`s,
    worker 0 is the chief, as `MultiWorkerMirroredStrategy` has it."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def has_accelerator() -> bool:
    """Whether this host has GPUs or TPUs (logical devices, once configured)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def whole_step_compiles(strategy: tf.distribute.Strategy) -> bool:
    """Whether XLA compiles the whole replica step, all-reduce and update
    included, under `strategy` (see `sandwich.model.make_train_step`'s `xla_scope` for where it cannot).

    TPUs compile the whole replica function anyway; multi-worker steps on
    GPUs compile their collectives; several devices in one process do not.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool(tf.config.list_logical_devices("GPU"))
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return len(strategy.extended.worker_devices) == 1
    return True


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Holds every worker until all have reached it (a one-number all-reduce).

    At the end of a multi-worker run the chief still exports while the
    others are done; a worker that exits first is reported as crashed by
    the cluster's health checks and aborts the chief.
    """
    _sum_over_replicas(strategy)(tf.constant(1.0))


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether `flag` is set on any worker (on one worker: `flag` itself).

    A preemption notice (SIGTERM) reaches one VM only, yet every step and
    every checkpoint save is a collective: a worker that stopped alone would
    leave the others waiting in their next all-reduce. So the workers agree
    on stopping, and stop together, at the same step.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag
    return bool(_sum_over_replicas(strategy)(tf.constant(float(flag))).numpy() > 0)


def mean_over_workers(strategy: tf.distribute.Strategy, value: float) -> float:
    """`value` averaged over the workers (on one worker: `value` itself), so
    that a quantity every worker measures for itself (the share of a time
    budget spent) is the same number on all of them."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value
    total = _sum_over_replicas(strategy)(tf.constant(float(value)))
    return float(total.numpy()) / strategy.num_replicas_in_sync


@functools.cache
def _sum_over_replicas(strategy: tf.distribute.Strategy):
    """A compiled all-reduce of one number per replica, traced once per strategy."""
    @tf.function
    def all_reduce(value):
        values = strategy.run(tf.identity, args=(value,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    return all_reduce

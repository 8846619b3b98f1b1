"""`--max_train_minutes` over a run's whole life, resumes included.

A run on a spot VM is preempted, restarted and resumed from its last
checkpoint, maybe several times. Were the budget counted from each
process's start, every restart would get it afresh, and a run meant to
train for an hour could train for many (and a schedule decaying over the
budget would start over each time). So the training time spent is part of
the run's state: `TrainingClock` keeps it in a variable the checkpoint
saves, and a resumed run counts on from what its last checkpoint recorded.
Time trained after that checkpoint by a process killed outright (SIGKILL)
is not counted; a preemption's SIGTERM saves a checkpoint first.

What counts is each process's training loop, from its first step on: not
the set-up before it (reading the dataset, calibrating the rate model,
building and restoring the model), which a resume repeats.
"""
from __future__ import annotations

import time

import tensorflow as tf


class TrainingClock:
    """The seconds a run has trained, over every process that resumed it:
    `seconds` (a variable the checkpoint saves) as of the last save, plus
    this process's loop since `start`."""

    def __init__(self):
        # A plain host variable, outside any strategy, like the weight
        # average's: only the chief's copy is saved, and every worker
        # restores it from the chief's checkpoints.
        with tf.device("/cpu:0"):
            self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                       name="trained_seconds")
        self._origin: float | None = None

    def start(self) -> None:
        """Starts this process's share, counting on from the restored `seconds`."""
        self._origin = time.monotonic() - float(self.seconds.numpy())

    def elapsed(self) -> float:
        """Seconds trained so far, earlier processes included."""
        if self._origin is None:
            return float(self.seconds.numpy())
        return time.monotonic() - self._origin

    def record(self) -> None:
        """Brings `seconds` up to now, for a checkpoint about to be saved."""
        self.seconds.assign(self.elapsed())


class Deadline:
    """`--max_train_minutes`: training ends (and exports) once the run has
    trained this long (`TrainingClock`, resumes included), whatever
    `--steps` says. On several workers, the first clock to run out stops
    them all (the loop agrees on it like on a preemption).
    """

    def __init__(self, minutes: float | None, clock: TrainingClock):
        self._budget = None if minutes is None else 60.0 * minutes
        self._clock = clock
        self._passed_at: int | None = None

    def fraction(self) -> float:
        """The share of the budget spent (0 without one)."""
        if self._budget is None:
            return 0.0
        return 1.0 - self.remaining() / self._budget

    def remaining(self) -> float:
        """Seconds left of the budget (infinite without one)."""
        if self._budget is None:
            return float("inf")
        return max(self._budget - self._clock.elapsed(), 0.0)

    def passed(self, step: int) -> bool:
        if self._passed_at is None and self._budget is not None and not self.remaining():
            self._passed_at = step
            print(f"time budget reached at step {step}", flush=True)
        return self._passed_at is not None

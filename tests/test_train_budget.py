"""`--max_train_minutes` given alone bounds the run by time, not by the
`--steps` default (1,000 steps, about a minute on a CPU), and counts the
time a resumed run trained before its preemption."""
import os
import time

import pytest

from tests import trainer_data
from trainer import task
from trainer.time_budget import Deadline, TrainingClock
from trainer.training import Config, train

BUDGET_MINUTES = 0.1


def test_a_time_budget_alone_leaves_steps_unbounded():
    config, _ = task.parse(["--data", "d", "--job_dir", "j", "--max_train_minutes", "0.2"])
    assert config.steps is None and config.max_train_minutes == 0.2


@pytest.mark.parametrize("flags, steps", [
    ([], Config.steps),
    (["--steps", "50", "--max_train_minutes", "0.2"], 50),
    (["--steps", "50"], 50),
])
def test_steps_bound_the_run_when_given_or_without_a_budget(flags, steps):
    config, _ = task.parse(["--data", "d", "--job_dir", "j", *flags])
    assert config.steps == steps


@pytest.mark.parametrize("minutes", ["0", "-1"])
def test_budget_must_be_positive(minutes, capsys):
    with pytest.raises(SystemExit):
        task.parse(["--data", "d", "--max_train_minutes", minutes])
    assert "--max_train_minutes must be positive" in capsys.readouterr().err


def test_a_run_needs_some_bound(tmp_path):
    with pytest.raises(ValueError, match="needs a time budget"):
        train(Config(data=str(tmp_path), job_dir=str(tmp_path), steps=None))


def _budget_run(data: str, job_dir: str, minutes: float = BUDGET_MINUTES) -> Config:
    """A tiny run bounded by `minutes` alone, with nothing due on the way."""
    config, _ = task.parse([
        "--data", data, "--job_dir", job_dir,
        "--max_train_minutes", str(minutes), "--strategy", "default", "--gamma", "1",
        "--qstep_range", "off", "--lr_schedule", "cosine", *trainer_data.TINY,
        "--checkpoint_every", "100000", "--eval_every", "0", "--refit_every", "0",
        "--image_every", "0", "--no-keep_best"])
    return config


def test_time_budget_alone_stops_the_run_by_time(high_bit_depth_dataset, tmp_path, capsys):
    job_dir = str(tmp_path / "job")
    config = _budget_run(high_bit_depth_dataset, job_dir)
    assert config.steps is None
    start = time.monotonic()
    result = train(config)
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert result.out_of_time and not result.interrupted
    assert f"time budget reached at step {result.step}" in out
    assert 0 < result.step < Config.steps
    assert elapsed >= 60 * BUDGET_MINUTES
    assert result.export_dir and os.path.isdir(result.export_dir)
    # Every step logged; the compile of the first step counts against the
    # budget too, so on a busy machine there may be only one.
    losses = trainer_data.scalars(os.path.join(job_dir, "logs"), "train/loss")
    assert len(losses) == result.step


def test_the_budget_counts_what_earlier_processes_trained():
    clock = TrainingClock()
    clock.seconds.assign(45.0)  # as a resumed run's checkpoint restores it
    clock.start()
    deadline = Deadline(1.0, clock)
    assert deadline.remaining() == pytest.approx(15.0, abs=1.0)
    assert deadline.fraction() == pytest.approx(0.75, abs=0.02)
    clock.seconds.assign(60.0)
    clock.start()
    assert Deadline(1.0, clock).passed(7)


def test_a_resumed_run_has_only_what_its_checkpoint_left_of_the_budget(
        high_bit_depth_dataset, tmp_path, capsys):
    """A spot VM's run, preempted and restarted, stops at the same total
    budget: here the first process spends all of it, so the resumed one
    takes no step and exports what the checkpoint holds."""
    import tensorflow as tf

    config = _budget_run(high_bit_depth_dataset, str(tmp_path / "job"), minutes=0.05)
    first = train(config)
    assert first.out_of_time and first.step > 0
    latest = tf.train.latest_checkpoint(str(tmp_path / "job" / "checkpoints"))
    trained = tf.train.load_checkpoint(latest).get_tensor(
        "trained_seconds/.ATTRIBUTES/VARIABLE_VALUE")
    assert trained >= 60 * config.max_train_minutes
    capsys.readouterr()
    resumed = train(config)
    out = capsys.readouterr().out
    assert f"resumed from {latest} at step {first.step}; {trained / 60:.1f} min trained" in out
    assert f"time budget reached at step {first.step}" in out
    assert resumed.step == first.step and resumed.out_of_time and resumed.export_dir


def test_a_checkpoint_saved_without_the_training_time_still_resumes(tmp_path):
    """As checkpoints were before the time was saved: the run resumes, its
    time counted from zero."""
    import tensorflow as tf

    from trainer.training import _Checkpoints

    tf.train.Checkpoint(model=tf.Variable([1.0, 2.0])).save(str(tmp_path / "ckpt"))
    weights, clock = tf.Variable([0.0, 0.0]), TrainingClock()
    assert _Checkpoints({"model": weights}, clock, str(tmp_path), True, 1).restore()
    assert weights.numpy().tolist() == [1.0, 2.0] and clock.elapsed() == 0.0

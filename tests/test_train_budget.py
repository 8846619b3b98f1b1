"""`--max_train_minutes` given alone bounds the run by time, not by the
`--steps` default (1,000 steps, about a minute on a CPU)."""
import os
import time

import pytest

from tests import trainer_data
from trainer import task
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


def test_time_budget_alone_stops_the_run_by_time(high_bit_depth_dataset, tmp_path, capsys):
    job_dir = str(tmp_path / "job")
    config, _ = task.parse([
        "--data", high_bit_depth_dataset, "--job_dir", job_dir,
        "--max_train_minutes", str(BUDGET_MINUTES), "--strategy", "default", "--gamma", "1",
        "--qstep_range", "off", "--lr_schedule", "cosine", *trainer_data.TINY,
        "--checkpoint_every", "100000", "--eval_every", "0", "--refit_every", "0",
        "--image_every", "0", "--no-keep_best"])
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

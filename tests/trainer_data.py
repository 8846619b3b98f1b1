"""Datasets for the trainer's tests, written by the real dataset job, and run helpers.

The trainer reads what `pipelines.make_dataset` writes, so its tests read
exactly that: `make` runs the job on the bundled photographs (high_res) or on
their 10-bit 2x2 block sums (high_bit_depth, as `pipelines.sample_data`
makes them), 16x16 patches in two shards per split, on Beam's in-process
runner so that a dataset costs seconds, not a pool of worker processes.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import subprocess
import sys

import numpy as np

from pipelines import make_dataset, sample_data
from sandwich import samples

PATCH_SIZE = 16
PATCHES_PER_IMAGE = 16
# Of the four bundled photographs, two go to each split at this fraction.
EVAL_FRACTION = 0.4


def make(directory: str, scenario: str, eval_fraction: float = EVAL_FRACTION,
         patch_size: int = PATCH_SIZE) -> str:
    """Runs make_dataset into `directory`/data and returns that path."""
    corpus = os.path.join(directory, "photos")
    os.makedirs(corpus, exist_ok=True)
    if scenario == "high_bit_depth":
        sample_data.write_sample(corpus, block=2)
    else:
        for path in samples.paths():
            shutil.copy(path, corpus)
    output = os.path.join(directory, "data")
    with contextlib.redirect_stdout(io.StringIO()):
        make_dataset.run([
            f"--input={corpus}", f"--output={output}", f"--scenario={scenario}",
            f"--patch_size={patch_size}", f"--patches_per_image={PATCHES_PER_IMAGE}",
            f"--eval_fraction={eval_fraction}", "--num_shards=2", "--seed=0",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return output


# A model and a run small enough for a shared 2-core machine.
TINY = ["--batch_size", "4", "--unet_widths", "4,8", "--mlp_widths", "8", "--eval_patches", "8",
        "--refit_patches", "4", "--learning_rate", "3e-3", "--summary_every", "1",
        "--image_every", "10", "--refit_every", "10", "--seed", "0"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(args, env=None, **kwargs) -> subprocess.Popen:
    """`python -m trainer.task ARGS` in its own process (its own TF devices)."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.task", *args], cwd=REPO, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def summaries(log_dir: str) -> dict[str, dict[int, np.ndarray]]:
    """Everything a run logged for TensorBoard: `{tag: {step: value}}`."""
    import tensorflow as tf

    logged = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                logged.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return logged


def scalars(log_dir: str, tag: str) -> list[float]:
    """The values a run logged under `tag`, in step order."""
    values = summaries(log_dir).get(tag, {})
    return [float(values[step]) for step in sorted(values)]

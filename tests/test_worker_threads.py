"""How many worker processes a local job starts, by its work, and how they share the
machine's cores (not each taking all of them)."""
import os
import subprocess
import sys

import pytest

from pipelines import beam_options, make_dataset
from pipelines.beam_options import (MODEL_JOB_COST, local_processes, model_job_args,
                                    pipeline_options, worker_processes)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("beam_args, processes", [
    ([], 0),  # local default: one worker process per core
    (["--direct_num_workers=3"], 3),
    (["--direct_num_workers=1"], 1),  # in the runner's own process
    (["--direct_running_mode=in_memory", "--direct_num_workers=1"], 1),
    (["--runner=DataflowRunner"], 0),  # one SDK process per vCPU
    (["--runner=DataflowRunner", "--experiments=no_use_multiple_sdk_containers"], 1),
])
def test_worker_processes_per_machine_follow_the_runner_options(beam_args, processes,
                                                                monkeypatch):
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 2)
    assert worker_processes(beam_args) == processes


@pytest.mark.parametrize("megapixels, cores, processes", [
    ([0.5] * 22, 2, 1),  # the runner's process: 11 MP do not repay a worker's start
    ([2.4] * 120, 2, 2),  # 288 MP: one worker per core
    ([0.05] * 10**4, 16, 16),  # many small files: one per core
    ([0.05] * 10**4, 1, 1),
    ([100.0], 16, 1),  # a file is not split: the runner's process
    ([60.0] + [0.5] * 10, 2, 1),  # its worker would take longer than the runner's process
    ([2.4] * 3, 16, 1),  # at most one worker per file, each with one core
    ([], 2, 1),
])
def test_local_processes_are_those_the_megapixels_repay(megapixels, cores, processes):
    assert local_processes(megapixels, cores, MODEL_JOB_COST) == processes


def test_each_kind_of_job_repays_processes_at_its_own_costs():
    """A dataset worker's start is repaid later: it does far less a megapixel."""
    assert local_processes([0.5] * 22, 2, make_dataset.LOCAL_COST) == 1
    assert local_processes([2.4] * 120, 2, make_dataset.LOCAL_COST) == 2
    assert local_processes([2.4] * 60, 2, make_dataset.LOCAL_COST) == 1
    assert local_processes([2.4] * 60, 2, MODEL_JOB_COST) == 2


@pytest.mark.parametrize("beam_args, inputs, mode, processes", [
    ([], [0.5] * 22, "in_memory", 1),  # one model, in the runner's process
    ([], [2.4] * 120, "multi_processing", 2),  # one worker process per core
    ([], 22, "in_memory", 1),  # a count: photographs of TYPICAL_PHOTO_MEGAPIXELS
    ([], 2000, "multi_processing", 2),
    (["--direct_num_workers=1"], [2.4] * 120, "in_memory", 1),  # sized by the user
    (["--direct_num_workers=2"], [0.5], "multi_processing", 2),
    (["--direct_running_mode=in_memory"], [2.4] * 120, "in_memory", 1),
    (["--runner=DataflowRunner"], [2.4] * 120, None, 0),
])
def test_a_model_job_sizes_its_unsized_local_workers_by_its_inputs(beam_args, inputs, mode,
                                                                   processes, monkeypatch):
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 2)
    monkeypatch.setattr(beam_options, "usable_cores", lambda: 2)
    measured = []
    args = model_job_args(beam_args, lambda: measured.append(inputs) or inputs)
    options = pipeline_options(args).get_all_options()
    if mode:
        assert options["direct_running_mode"] == mode
    assert worker_processes(args) == processes
    assert len(measured) == (beam_args == []), "inputs measured only when the job may choose"


def test_a_worker_gives_tensorflow_its_share_of_the_cores():
    """In a fresh process, as a worker is, before TensorFlow runs anything."""
    code = ("import tensorflow as tf; from codec.exported import share_cores; "
            "share_cores(int(__import__('sys').argv[1])); "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    cores = len(os.sched_getaffinity(0))
    for processes, threads in ((0, 1), (1, cores), (2, max(1, cores // 2))):
        done = subprocess.run([sys.executable, "-c", code, str(processes)], cwd=REPO,
                              capture_output=True, text=True, check=True)
        assert done.stdout.split()[-2:] == [str(threads)] * 2, (processes, done.stdout)

"""Worker processes that run a model share the machine's cores, not each take all of them."""
import os
import subprocess
import sys

import pytest

from pipelines.beam_options import (FILES_TO_REPAY_MODEL_PROCESSES, model_job_args,
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


@pytest.mark.parametrize("beam_args, files, mode, processes", [
    ([], FILES_TO_REPAY_MODEL_PROCESSES - 1, "in_memory", 1),  # one model, TF on every core
    ([], FILES_TO_REPAY_MODEL_PROCESSES, "multi_processing", 0),  # one process per core
    (["--direct_num_workers=2"], 10**6, "multi_processing", 2),  # sized by the user
    (["--direct_running_mode=in_memory"], 10**6, "in_memory", 1),
    (["--runner=DataflowRunner"], 10**6, None, 0),
])
def test_a_model_job_sizes_its_unsized_local_workers_by_its_inputs(beam_args, files, mode,
                                                                   processes, monkeypatch):
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 2)
    counted = []
    args = model_job_args(beam_args, lambda: counted.append(files) or files)
    options = pipeline_options(args).get_all_options()
    if mode:
        assert options["direct_running_mode"] == mode
    assert worker_processes(args) == processes
    assert len(counted) == (beam_args == []), "inputs counted only when the job may choose"


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

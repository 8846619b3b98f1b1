"""The trainer in its own processes: two replicas in one process, two worker
processes on 127.0.0.1, and a run killed and resumed from its checkpoints.

Each run is a subprocess because logical devices and collective ops can only
be configured before TensorFlow initialises.
"""
import glob
import json
import os
import re
import signal
import socket
import time

import pytest

from tests import trainer_data

TIMEOUT = 420


@pytest.fixture(scope="module")
def high_res(high_res_dataset):
    return high_res_dataset


def _finish(process, timeout=TIMEOUT):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def _digest(output):
    return re.findall(r"step (\d+): weights digest (\w+)", output)


def _iterations(checkpoint_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_dir)
    return int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.parametrize("jit_compile", ["auto", "on"])
def test_mirrored_over_two_logical_cpus(high_res, tmp_path, jit_compile):
    """`on` compiles each replica's gradients (the whole step, update
    included, would read the other replica's variables from its device)."""
    code, output = _finish(trainer_data.launch([
        "--data", high_res, "--job_dir", str(tmp_path), "--steps", "6", "--strategy", "mirrored",
        "--logical_cpus", "2", "--checkpoint_every", "3", "--eval_every", "6",
        "--jit_compile", jit_compile, *trainer_data.TINY]))
    assert code == 0, output
    assert "2 replica(s)" in output
    assert re.search(r"step 6/6 [\d.]+ steps/s eta \S+ \| loss ", output)
    assert _digest(output)[-1][0] == "6" and _iterations(tmp_path / "checkpoints") == 6
    assert os.path.exists(tmp_path / "export" / "model_spec.json")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(high_res, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [trainer_data.launch(
        ["--data", high_res, "--job_dir", str(tmp_path), "--steps", "6", "--strategy", "auto",
         "--checkpoint_every", "3", "--eval_every", "6", *trainer_data.TINY],
        env={"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                      "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    (chief_code, chief), (worker_code, worker) = [_finish(p) for p in processes]
    assert chief_code == 0, chief
    assert worker_code == 0, worker
    assert "2 replica(s)" in chief
    assert _digest(chief) == _digest(worker) and _digest(chief)[0][0] == "6"
    # Only the chief writes.
    assert "exported to" in chief and "exported to" not in worker
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "export", "logs"]
    assert len(os.listdir(tmp_path / "logs")) == 1


def _wait_for_checkpoint(process, checkpoint_dir, after: int):
    """Waits until a checkpoint numbered above `after` exists."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        numbers = [int(p.rsplit("-", 1)[1].split(".")[0])
                   for p in glob.glob(f"{checkpoint_dir}/ckpt-*.index")]
        if numbers and max(numbers) > after:
            return max(numbers)
        time.sleep(0.5)
    raise TimeoutError("no checkpoint appeared")


def test_killed_run_resumes_to_the_same_step(tmp_path, high_res):
    # Enough steps that the second run is still training when its SIGTERM
    # comes, however fast the step.
    steps = 120
    args = ["--data", high_res, "--job_dir", str(tmp_path), "--steps", str(steps),
            "--strategy", "default", "--jit_compile", "off", "--checkpoint_every", "4",
            "--eval_every", "0", *trainer_data.TINY]
    checkpoints = tmp_path / "checkpoints"

    first = trainer_data.launch(args)
    killed_after = _wait_for_checkpoint(first, checkpoints, 0)
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = trainer_data.launch(args)
    _wait_for_checkpoint(second, checkpoints, killed_after)
    second.send_signal(signal.SIGTERM)
    code, output = _finish(second)
    assert code == 143, output
    resumed_at = int(re.search(r"resumed from \S+ at step (\d+)", output).group(1))
    assert resumed_at >= killed_after
    stopped_at = int(_digest(output)[-1][0])
    assert stopped_at > resumed_at
    assert _iterations(checkpoints) == stopped_at  # SIGTERM checkpointed where it stopped
    assert not os.path.exists(tmp_path / "export")

    code, output = _finish(trainer_data.launch(args))
    assert code == 0, output
    assert f"at step {stopped_at};" in output
    assert _digest(output)[-1][0] == str(steps) and _iterations(checkpoints) == steps
    assert os.path.exists(tmp_path / "export" / "model_spec.json")


def test_sigterm_to_one_worker_stops_both_at_one_checkpoint(high_res, tmp_path):
    """A preemption notice reaches one VM: the other worker must not wait for
    it forever in the next all-reduce, but stop at the same step, with the
    chief's checkpoint at that step. Every wait is bounded."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [trainer_data.launch(
        ["--data", high_res, "--job_dir", str(tmp_path), "--steps", "100000",
         "--strategy", "auto", "--jit_compile", "off", "--checkpoint_every", "3",
         "--eval_every", "0", *trainer_data.TINY],
        env={"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                      "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    try:
        _wait_for_checkpoint(processes[0], tmp_path / "checkpoints", 0)
        processes[1].send_signal(signal.SIGTERM)
        (chief_code, chief), (worker_code, worker) = [_finish(p, timeout=180) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "signal 15: checkpointing and stopping" in worker
    assert (chief_code, worker_code) == (143, 143), chief + worker
    stopped_at = _digest(chief)[-1]
    assert _digest(worker)[-1] == stopped_at
    assert _iterations(tmp_path / "checkpoints") == int(stopped_at[0])
    assert not os.path.exists(tmp_path / "export")

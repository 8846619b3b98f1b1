"""`trainer.submit`: the Vertex AI job spec, offline, and its container."""
import json
import socket

import pytest
from packaging.specifiers import SpecifierSet
from google.cloud.aiplatform.compat.types import custom_job

import sandwich
from tests import test_containers
from trainer import submit

COMMON = ["--project", "p", "--region", "europe-west4", "--job_dir", "gs://bucket/runs/one",
          "--dry_run"]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _dry_run(capsys, *flags):
    assert submit.main([*COMMON, *flags]) == 0
    text = capsys.readouterr().out
    custom_job.CustomJob.from_json(text)  # The API's own message type accepts it.
    return json.loads(text)


def test_multi_worker_gpu_job_spec(offline, capsys):
    job = _dry_run(capsys, "--accelerator_type", "NVIDIA_TESLA_T4", "--accelerator_count", "2",
                   "--workers", "3", "--", "--data", "gs://bucket/data", "--steps", "100")
    chief, workers = job["jobSpec"]["workerPoolSpecs"]
    assert (chief["replicaCount"], workers["replicaCount"]) == ("1", "2")
    assert chief["machineSpec"] == {"machineType": "n1-standard-8",
                                    "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2}
    assert chief["containerSpec"] == workers["containerSpec"] == {
        "imageUri": f"europe-west4-docker.pkg.dev/p/sandwich/trainer-gpu:{sandwich.__version__}",
        "command": ["sandwich-train"], "args": ["--data", "gs://bucket/data", "--steps", "100"]}
    assert job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == "gs://bucket/runs/one"


def test_default_job_runs_the_image_of_this_package(offline, capsys):
    """With defaults the job runs the trainer image of this very version,
    which `docker/trainer.Dockerfile` builds on the package's Python with
    the package (and so its TensorFlow) installed."""
    (pool,) = _dry_run(capsys, "--", "--data", "gs://bucket/data")["jobSpec"]["workerPoolSpecs"]
    uri = pool["containerSpec"]["imageUri"]
    assert uri == f"europe-west4-docker.pkg.dev/p/sandwich/trainer:{sandwich.__version__}"
    dockerfile = test_containers.DOCKERFILES["trainer"]
    python = test_containers.python_of(test_containers.base_image(dockerfile))
    assert f"{python}.0" in SpecifierSet(test_containers.PACKAGE["Requires-Python"])
    assert test_containers.pip_install_target(dockerfile).startswith(".")
    assert pool["containerSpec"]["command"] == json.loads(
        test_containers.instruction(dockerfile, "ENTRYPOINT"))


def test_tpu_job_spec(offline, capsys):
    job = _dry_run(capsys, "--tpu", "v3", "--image", "gcr.io/p/tpu:1", "--", "--data", "gs://b/d")
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3",
                                   "acceleratorCount": 8}
    assert pool["containerSpec"]["imageUri"] == "gcr.io/p/tpu:1"


# Machines Vertex AI custom training accepts for each accelerator and count
# ("Configure compute resources for custom training"): the job spec must name
# them, since Vertex AI refuses any other pairing when the job is created.
@pytest.mark.parametrize("flags, machine", [
    (["--accelerator_type", "NVIDIA_L4"], {"machineType": "g2-standard-8",
                                           "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}),
    (["--accelerator_type", "NVIDIA_L4", "--accelerator_count", "4"],
     {"machineType": "g2-standard-48", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 4}),
    (["--accelerator_type", "NVIDIA_TESLA_A100"],
     {"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_TESLA_A100",
      "acceleratorCount": 1}),
    (["--accelerator_type", "NVIDIA_TESLA_A100", "--accelerator_count", "8"],
     {"machineType": "a2-highgpu-8g", "acceleratorType": "NVIDIA_TESLA_A100",
      "acceleratorCount": 8}),
    (["--accelerator_type", "NVIDIA_A100_80GB", "--accelerator_count", "2"],
     {"machineType": "a2-ultragpu-2g", "acceleratorType": "NVIDIA_A100_80GB",
      "acceleratorCount": 2}),
    (["--accelerator_type", "NVIDIA_H100_80GB", "--accelerator_count", "8"],
     {"machineType": "a3-highgpu-8g", "acceleratorType": "NVIDIA_H100_80GB",
      "acceleratorCount": 8}),
    (["--accelerator_type", "NVIDIA_TESLA_V100", "--accelerator_count", "2"],
     {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_V100",
      "acceleratorCount": 2}),
    (["--tpu", "v5e", "--accelerator_count", "4", "--image", "gcr.io/p/tpu:1"],
     {"machineType": "ct5lp-hightpu-4t", "acceleratorType": "TPU_V5_LITEPOD",
      "acceleratorCount": 4, "tpuTopology": "2x2"}),
    (["--accelerator_type", "TPU_V5_LITEPOD", "--image", "gcr.io/p/tpu:1"],
     {"machineType": "ct5lp-hightpu-1t", "acceleratorType": "TPU_V5_LITEPOD",
      "acceleratorCount": 1, "tpuTopology": "1x1"}),
    (["--accelerator_type", "NVIDIA_TESLA_A100", "--machine_type", "a2-highgpu-4g"],
     {"machineType": "a2-highgpu-4g", "acceleratorType": "NVIDIA_TESLA_A100",
      "acceleratorCount": 4}),
    ([], {"machineType": "n1-standard-8"}),
])
def test_machine_follows_the_accelerator(offline, capsys, flags, machine):
    job = _dry_run(capsys, *flags, "--", "--data", "gs://b/d")
    for pool in job["jobSpec"]["workerPoolSpecs"]:
        assert pool["machineSpec"] == machine
    assert "scheduling" not in job["jobSpec"] and "labels" not in job


@pytest.mark.parametrize("flags, message", [
    (["--tpu", "v2", "--workers", "2", "--image", "i"], "--tpu takes neither"),
    (["--tpu", "v2"], "--tpu needs --image"),
    (["--job_dir", "runs/local"], "--job_dir must be a gs:// path"),
    (["--accelerator_type", "NVIDIA_L4", "--machine_type", "n1-standard-8"],
     "--machine_type n1-standard-8 does not take NVIDIA_L4: Vertex AI attaches it to g2 "
     "machines only"),
    (["--accelerator_type", "NVIDIA_H100_80GB", "--machine_type", "a2-highgpu-1g"],
     "attaches it to a3-highgpu machines only"),
    (["--accelerator_type", "NVIDIA_TESLA_T4", "--machine_type", "g2-standard-8"],
     "attaches it to n1 machines only"),
    (["--accelerator_type", "NVIDIA_TESLA_A100", "--machine_type", "a2-highgpu-4g",
      "--accelerator_count", "2"], "use a2-highgpu-2g"),
    (["--accelerator_type", "NVIDIA_L4", "--accelerator_count", "3"],
     "NVIDIA_L4 comes 1, 2, 4 or 8 to a machine, not 3"),
    (["--tpu", "v5e", "--accelerator_count", "2", "--image", "i"],
     "TPU_V5_LITEPOD comes 1, 4 or 8 to a machine, not 2"),
    (["--tpu", "v3", "--machine_type", "n1-standard-8", "--image", "i"],
     "attaches it to cloud-tpu machines only"),
    (["--machine_type", "a3-highgpu-8g"],
     "--machine_type a3-highgpu-8g carries NVIDIA_H100_80GB"),
    (["--accelerator_type", "TPU_V5_LITEPOD"], "--accelerator_type TPU_V5_LITEPOD needs --image"),
    (["--timeout", "2 hours"], "is no duration"),
    (["--labels", "team"], "a label is KEY=VALUE"),
])
def test_refusals(capsys, flags, message):
    with pytest.raises(SystemExit):
        submit.parse([*COMMON, *flags])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, scheduling", [
    (["--spot"], {"strategy": "SPOT"}),
    (["--timeout", "2h"], {"timeout": "7200s"}),
    (["--timeout", "90m", "--spot"], {"timeout": "5400s", "strategy": "SPOT"}),
    (["--timeout", "1h30m"], {"timeout": "5400s"}),
    (["--timeout", "45s"], {"timeout": "45s"}),
    (["--spot", "--workers", "2", "--accelerator_type", "NVIDIA_L4"],
     {"strategy": "SPOT", "restartJobOnWorkerRestart": True}),
])
def test_spot_and_timeout(offline, capsys, flags, scheduling):
    job = _dry_run(capsys, *flags, "--", "--data", "gs://b/d")
    assert job["jobSpec"]["scheduling"] == scheduling


def test_labels(offline, capsys):
    job = _dry_run(capsys, "--labels", "team=vision", "run=hr1", "--", "--data", "gs://b/d")
    assert job["labels"] == {"team": "vision", "run": "hr1"}

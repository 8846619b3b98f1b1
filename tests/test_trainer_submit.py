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


@pytest.mark.parametrize("flags, message", [
    (["--tpu", "v2", "--workers", "2", "--image", "i"], "--tpu takes neither"),
    (["--tpu", "v2"], "--tpu needs --image"),
    (["--job_dir", "runs/local"], "--job_dir must be a gs:// path"),
])
def test_refusals(capsys, flags, message):
    with pytest.raises(SystemExit):
        submit.parse([*COMMON, *flags])
    assert message in capsys.readouterr().err

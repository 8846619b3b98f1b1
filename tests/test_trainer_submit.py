"""`trainer.submit`: the Vertex AI job spec offline, the package upload
against a Cloud Storage emulator on 127.0.0.1."""
import json
import socket
import tarfile

import pytest

from trainer import submit

# The submitting machine's dependency only; not one of the trainer's.
pytest.importorskip("google.cloud.aiplatform")
from google.cloud.aiplatform.compat.types import custom_job  # noqa: E402

COMMON = ["--project", "p", "--region", "europe-west4", "--staging_bucket", "gs://bucket/staging",
          "--job_dir", "gs://bucket/runs/one", "--dry_run"]


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
    package = chief["pythonPackageSpec"]
    assert package["pythonModule"] == "trainer.task"
    assert package["args"] == ["--data", "gs://bucket/data", "--steps", "100"]
    assert package["packageUris"][0].startswith("gs://bucket/staging/packages/")
    assert "tf-gpu" in package["executorImageUri"]
    assert job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == "gs://bucket/runs/one"


def test_tpu_job_spec(offline, capsys):
    job = _dry_run(capsys, "--tpu", "v3", "--", "--data", "gs://bucket/data")
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3",
                                   "acceleratorCount": 8}
    assert "tf-tpu" in pool["pythonPackageSpec"]["executorImageUri"]


def test_tpu_refuses_workers():
    with pytest.raises(SystemExit):
        submit.parse([*COMMON, "--tpu", "v2", "--workers", "2"])


def test_package_upload_to_storage(gcs_emulator, tmp_path):
    gcs_emulator.create_bucket("staging")
    package = submit.build_package(str(tmp_path))
    with tarfile.open(package) as archive:
        names = archive.getnames()
    assert any(n.endswith("trainer/task.py") for n in names)
    assert any(n.endswith("sandwich/model.py") for n in names)
    uri = submit.upload(package, submit.package_uri("gs://staging/sandwich", package), gcs_emulator)
    blob = gcs_emulator.bucket("staging").get_blob(uri[len("gs://staging/"):])
    assert blob.size == package.stat().st_size

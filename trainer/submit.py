"""Sends `trainer.task` to Vertex AI as a CustomJob: `sandwich-submit`.

    python -m trainer.submit --project P --region us-central1 \
        --staging_bucket gs://B/staging --job_dir gs://B/runs/hr1 \
        --machine_type n1-standard-8 --accelerator_type NVIDIA_TESLA_T4 \
        --accelerator_count 2 --workers 2 -- --data gs://B/data/hr --steps 20000

Everything after `--` goes to the trainer unchanged. The package is this
repository's `setup.py` built as an sdist and uploaded under the staging
bucket; Vertex AI installs it in a prebuilt TensorFlow image and runs
`python -m trainer.task`. With `--workers N > 1` the job has a chief pool
and a pool of N-1 workers, and Vertex AI's `TF_CONFIG` makes the trainer
pick MultiWorkerMirroredStrategy. `--dry_run` prints the job spec as JSON
and touches no network.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
IMAGES = {
    "cpu": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
    "gpu": "us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-17.py310:latest",
    "tpu": "us-docker.pkg.dev/vertex-ai/training/tf-tpu.2-17.py310:latest",
}
TPU_CORES = 8


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandwich-submit", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--project", required=True)
    p.add_argument("--region", default="us-central1")
    p.add_argument("--staging_bucket", required=True, help="gs:// prefix for the package")
    p.add_argument("--job_dir", required=True,
                   help="gs:// base output dir; Vertex AI sets AIP_MODEL_DIR etc. under it")
    p.add_argument("--display_name", default="sandwich-train")
    p.add_argument("--machine_type", default="n1-standard-8")
    p.add_argument("--accelerator_type", default="",
                   help="e.g. NVIDIA_TESLA_T4, NVIDIA_L4; empty for CPU only")
    p.add_argument("--accelerator_count", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="machines; above 1 the trainer runs MultiWorkerMirroredStrategy")
    p.add_argument("--tpu", choices=("v2", "v3"),
                   help="train on a TPU VM (machine cloud-tpu with 8 cores) instead")
    p.add_argument("--image", help="executor image (default: a prebuilt TensorFlow one "
                                   "matching CPU/GPU/TPU)")
    p.add_argument("--service_account")
    p.add_argument("--dry_run", action="store_true", help="print the job spec and stop")
    return p


def parse(argv):
    argv = list(argv)
    trainer_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    args = parser().parse_args(own)
    if args.tpu and (args.accelerator_type or args.workers != 1):
        parser().error("--tpu takes neither --accelerator_type nor --workers")
    if args.workers < 1:
        parser().error("--workers must be at least 1")
    return args, trainer_args


def worker_pool_specs(args, package_uri: str, trainer_args: list[str]) -> list[dict]:
    """The chief pool and, for several workers, a pool of the others."""
    machine = {"machine_type": args.machine_type}
    if args.tpu:
        machine = {"machine_type": "cloud-tpu", "accelerator_type": f"TPU_{args.tpu.upper()}",
                   "accelerator_count": TPU_CORES}
    elif args.accelerator_type:
        machine.update(accelerator_type=args.accelerator_type,
                       accelerator_count=args.accelerator_count or 1)
    kind = "tpu" if args.tpu else "gpu" if args.accelerator_type else "cpu"
    package = {"executor_image_uri": args.image or IMAGES[kind],
               "package_uris": [package_uri], "python_module": "trainer.task",
               "args": list(trainer_args)}
    pools = [{"machine_spec": machine, "replica_count": 1, "python_package_spec": package}]
    if args.workers > 1:
        pools.append({"machine_spec": dict(machine), "replica_count": args.workers - 1,
                      "python_package_spec": dict(package)})
    return pools


def build_job(args, package_uri: str, trainer_args: list[str], credentials=None):
    """The `aiplatform.CustomJob`; its constructor checks every field against
    the API's own message types, with no network call."""
    from google.cloud import aiplatform

    return aiplatform.CustomJob(
        display_name=args.display_name,
        worker_pool_specs=worker_pool_specs(args, package_uri, trainer_args),
        base_output_dir=args.job_dir, staging_bucket=args.staging_bucket,
        project=args.project, location=args.region, credentials=credentials)


def job_json(job) -> str:
    """The CustomJob message the job would send, as JSON."""
    return json.dumps(job.to_dict(), indent=2, sort_keys=True)


def build_package(directory: str) -> pathlib.Path:
    """Builds the project's sdist into `directory` and returns its path."""
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--formats=gztar",
                    "--dist-dir", directory], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    (package,) = pathlib.Path(directory).glob("*.tar.gz")
    return package


def package_uri(staging_bucket: str, package: pathlib.Path) -> str:
    return f"{staging_bucket.rstrip('/')}/packages/{package.name}"


def upload(package: pathlib.Path, uri: str, client=None) -> str:
    """Copies the package to `uri` (gs://bucket/path) with google-cloud-storage."""
    from google.cloud import storage

    bucket, _, name = uri[len("gs://"):].partition("/")
    client = client or storage.Client()
    client.bucket(bucket).blob(name).upload_from_filename(str(package))
    return uri


def main(argv=None) -> int:
    args, trainer_args = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as directory:
        if args.dry_run:
            from google.auth.credentials import AnonymousCredentials

            uri = package_uri(args.staging_bucket, pathlib.Path("sandwich-compression-0.1.0.tar.gz"))
            print(job_json(build_job(args, uri, trainer_args, AnonymousCredentials())))
            return 0
        package = build_package(directory)
        uri = upload(package, package_uri(args.staging_bucket, package))
        job = build_job(args, uri, trainer_args)
        job.submit(service_account=args.service_account)
        print(json.dumps({"job": job.resource_name, "package": uri}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

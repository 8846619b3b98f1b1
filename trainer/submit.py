"""Sends `trainer.task` to Vertex AI as a CustomJob: `sandwich-submit`.

    python -m trainer.submit --project P --region us-central1 --job_dir gs://B/runs/hr1 \
        --machine_type n1-standard-8 --accelerator_type NVIDIA_TESLA_T4 \
        --accelerator_count 2 --workers 2 -- --data gs://B/data/hr --steps 20000

Everything after `--` goes to the trainer unchanged. The job runs a custom
container built from `docker/trainer.Dockerfile`: Vertex AI's prebuilt
TensorFlow images stop at Python versions and TensorFlow releases older than
the ones `setup.py` requires, so the package cannot be installed into them.
By default the image is the one that Dockerfile builds, pushed to the
project's Artifact Registry under the package's version (`default_image`);
build and push it first (README, "Training on Vertex AI"), or name another
with `--image`. With `--workers N > 1` the job has a chief pool and a pool of
N-1 workers, and Vertex AI's `TF_CONFIG` makes the trainer pick
MultiWorkerMirroredStrategy. `--dry_run` prints the job spec as JSON and
touches no network.
"""
from __future__ import annotations

import argparse
import json
import sys

import sandwich

TPU_CORES = 8
# The Artifact Registry repository and image names `default_image` uses.
REPOSITORY = "sandwich"
IMAGE_NAMES = {"cpu": "trainer", "gpu": "trainer-gpu"}
# The console script the image installs (setup.py's entry points).
COMMAND = ["sandwich-train"]


def default_image(project: str, region: str, kind: str) -> str:
    """Where `docker/trainer.Dockerfile`'s image of this version is pushed:
    `REGION-docker.pkg.dev/PROJECT/sandwich/trainer[-gpu]:VERSION`."""
    return (f"{region}-docker.pkg.dev/{project}/{REPOSITORY}/{IMAGE_NAMES[kind]}:"
            f"{sandwich.__version__}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandwich-submit", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--project", required=True)
    p.add_argument("--region", default="us-central1")
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
                   help="train on a TPU VM (machine cloud-tpu with 8 cores); needs --image")
    p.add_argument("--image",
                   help="training container (default: docker/trainer.Dockerfile's image in the "
                        "project's Artifact Registry, "
                        + default_image("PROJECT", "REGION", "cpu") + ", or trainer-gpu with "
                        "an accelerator)")
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
    if args.tpu and not args.image:
        parser().error("--tpu needs --image: a container with TensorFlow for TPUs (libtpu); "
                       "docker/trainer.Dockerfile builds one for CPUs and GPUs only")
    if args.workers < 1:
        parser().error("--workers must be at least 1")
    if not args.job_dir.startswith("gs://"):
        parser().error("--job_dir must be a gs:// path: Vertex AI writes nowhere else")
    return args, trainer_args


def image(args) -> str:
    """The container the job runs: `--image`, or the default one for its machine."""
    kind = "gpu" if args.accelerator_type else "cpu"
    return args.image or default_image(args.project, args.region, kind)


def worker_pool_specs(args, trainer_args: list[str]) -> list[dict]:
    """The chief pool and, for several workers, a pool of the others."""
    machine = {"machine_type": args.machine_type}
    if args.tpu:
        machine = {"machine_type": "cloud-tpu", "accelerator_type": f"TPU_{args.tpu.upper()}",
                   "accelerator_count": TPU_CORES}
    elif args.accelerator_type:
        machine.update(accelerator_type=args.accelerator_type,
                       accelerator_count=args.accelerator_count or 1)
    container = {"image_uri": image(args), "command": list(COMMAND), "args": list(trainer_args)}
    pools = [{"machine_spec": machine, "replica_count": 1, "container_spec": container}]
    if args.workers > 1:
        pools.append({"machine_spec": dict(machine), "replica_count": args.workers - 1,
                      "container_spec": dict(container)})
    return pools


def build_job(args, trainer_args: list[str], credentials=None):
    """The `aiplatform.CustomJob`; its constructor checks every field against
    the API's own message types, with no network call."""
    from google.cloud import aiplatform

    # The SDK insists on a staging bucket; with the package inside the image
    # nothing is staged, so the job dir serves.
    return aiplatform.CustomJob(
        display_name=args.display_name, worker_pool_specs=worker_pool_specs(args, trainer_args),
        base_output_dir=args.job_dir, staging_bucket=args.job_dir,
        project=args.project, location=args.region, credentials=credentials)


def job_json(job) -> str:
    """The CustomJob message the job would send, as JSON."""
    return json.dumps(job.to_dict(), indent=2, sort_keys=True)


def main(argv=None) -> int:
    args, trainer_args = parse(sys.argv[1:] if argv is None else argv)
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        print(job_json(build_job(args, trainer_args, AnonymousCredentials())))
        return 0
    job = build_job(args, trainer_args)
    job.submit(service_account=args.service_account)
    print(json.dumps({"job": job.resource_name, "image": image(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sends `trainer.task` to Vertex AI as a CustomJob: `sandwich-submit`.

    python -m trainer.submit --project P --region us-central1 --job_dir gs://B/runs/hr1 \
        --accelerator_type NVIDIA_L4 --accelerator_count 1 --workers 2 --spot \
        --timeout 6h -- --data gs://B/data/hr --max_train_minutes 300

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

The machine type follows from the accelerator (`ACCELERATORS`): Vertex AI
attaches each GPU to one machine family only (L4 to g2, A100 to a2, H100 to
a3; T4, V100, P100 and P4 to n1) and TPUs to their own machines, and it
refuses any other pairing when the job is created. An explicit
`--machine_type` is checked against the same table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys

import sandwich

CPU_MACHINE = "n1-standard-8"


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """What Vertex AI custom training attaches an accelerator to: `machines`
    maps each machine type that carries it to how many it carries, or, for an
    accelerator attached to a general-purpose family, `family` (a machine
    type prefix) takes any machine of it and `counts` are the numbers one
    machine may have; `default` is the machine a count gets when no
    `--machine_type` is given. (Vertex AI, "Configure compute resources for
    custom training"; `tpu_topology` per machine for TPU v5e, which needs it.)"""

    family: str
    default: dict[int, str]
    machines: dict[str, int] = dataclasses.field(default_factory=dict)
    counts: tuple[int, ...] = ()
    tpu: bool = False
    topology: dict[str, str] = dataclasses.field(default_factory=dict)

    def allowed_counts(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.machines.values()))) if self.machines else self.counts


def _per_gpus(name: str, counts=(1, 2, 4, 8)) -> dict[str, int]:
    """`{name.format(n): n}`: machine types named after their GPU count."""
    return {name.format(n): n for n in counts}


# G2 machines by vCPUs: one L4 up to 32 vCPUs except the 24-vCPU one's two.
_G2 = {f"g2-standard-{cpus}": {24: 2, 48: 4, 96: 8}.get(cpus, 1)
       for cpus in (4, 8, 12, 16, 24, 32, 48, 96)}
_N1_DEFAULT = {n: CPU_MACHINE for n in (1, 2, 4, 8)}
ACCELERATORS = {
    "NVIDIA_L4": Accelerator("g2", {1: "g2-standard-8", 2: "g2-standard-24",
                                    4: "g2-standard-48", 8: "g2-standard-96"}, _G2),
    "NVIDIA_TESLA_A100": Accelerator(
        "a2-highgpu", {n: f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)},
        _per_gpus("a2-highgpu-{}g") | {"a2-megagpu-16g": 16}),
    "NVIDIA_A100_80GB": Accelerator("a2-ultragpu", {n: f"a2-ultragpu-{n}g" for n in (1, 2, 4, 8)},
                                    _per_gpus("a2-ultragpu-{}g")),
    # The 1-, 2- and 4-GPU a3-highgpu machines are offered as Spot VMs or
    # through the Dynamic Workload Scheduler only (`--spot`).
    "NVIDIA_H100_80GB": Accelerator("a3-highgpu", {n: f"a3-highgpu-{n}g" for n in (1, 2, 4, 8)},
                                    _per_gpus("a3-highgpu-{}g")),
    "NVIDIA_TESLA_T4": Accelerator("n1", _N1_DEFAULT, counts=(1, 2, 4)),
    "NVIDIA_TESLA_V100": Accelerator("n1", _N1_DEFAULT, counts=(1, 2, 4, 8)),
    "NVIDIA_TESLA_P100": Accelerator("n1", _N1_DEFAULT, counts=(1, 2, 4)),
    "NVIDIA_TESLA_P4": Accelerator("n1", _N1_DEFAULT, counts=(1, 2, 4)),
    # TPU v2 and v3: a TPU VM of 8 cores.
    "TPU_V2": Accelerator("cloud-tpu", {8: "cloud-tpu"}, {"cloud-tpu": 8}, tpu=True),
    "TPU_V3": Accelerator("cloud-tpu", {8: "cloud-tpu"}, {"cloud-tpu": 8}, tpu=True),
    # TPU v5e: a single-host slice of 1, 4 or 8 chips.
    "TPU_V5_LITEPOD": Accelerator(
        "ct5lp-hightpu", {n: f"ct5lp-hightpu-{n}t" for n in (1, 4, 8)},
        {f"ct5lp-hightpu-{n}t": n for n in (1, 4, 8)}, tpu=True,
        topology={"ct5lp-hightpu-1t": "1x1", "ct5lp-hightpu-4t": "2x2",
                  "ct5lp-hightpu-8t": "2x4"}),
}
TPUS = {"v2": "TPU_V2", "v3": "TPU_V3", "v5e": "TPU_V5_LITEPOD"}
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
    p.add_argument("--machine_type",
                   help="default: the machine Vertex AI pairs with the accelerator and its "
                        "count (" + "; ".join(
                            f"{name}: " + ", ".join(
                                f"{n} {m}" for n, m in sorted(acc.default.items()))
                            for name, acc in ACCELERATORS.items() if acc.family != "n1")
                        + f"; T4, V100, P100, P4: {CPU_MACHINE}), or {CPU_MACHINE} without "
                        "one; another is refused unless it carries that accelerator")
    p.add_argument("--accelerator_type", default="", choices=["", *ACCELERATORS],
                   metavar="TYPE",
                   help="empty for CPU only; one of " + ", ".join(ACCELERATORS))
    p.add_argument("--accelerator_count", type=int, default=0,
                   help="accelerators per machine (0: 1 GPU; 8 cores of a TPU v2/v3; "
                        "1 chip of a TPU v5e); with --machine_type, the machine's")
    p.add_argument("--workers", type=int, default=1,
                   help="machines; above 1 the trainer runs MultiWorkerMirroredStrategy")
    p.add_argument("--tpu", choices=tuple(TPUS),
                   help="train on a TPU VM: v2 and v3 on machine cloud-tpu with 8 cores, v5e "
                        "on ct5lp-hightpu-1t/4t/8t by --accelerator_count (chips); the "
                        "same as --accelerator_type " + "/".join(TPUS.values()) + "; needs --image")
    p.add_argument("--spot", action="store_true",
                   help="run on Spot VMs (scheduling strategy SPOT): much cheaper, but a VM "
                        "may be preempted at any time. The trainer checkpoints every "
                        "--checkpoint_every steps and on SIGTERM, and resumes from its last "
                        "checkpoint in the job dir when Vertex AI restarts the job or you "
                        "resubmit it with the same --job_dir, so a preemption costs at most "
                        "the steps since then; with --workers above 1 a restarted worker "
                        "restarts the whole job (restart_job_on_worker_restart)")
    p.add_argument("--timeout", type=duration,
                   help="longest the job may run before Vertex AI stops it, e.g. 90m, 2h, "
                        "1h30m, 3600s (Vertex AI's default: 7 days); keep it above the "
                        "trainer's --max_train_minutes plus its start and export")
    p.add_argument("--labels", nargs="+", type=label, default=[], metavar="KEY=VALUE",
                   help="labels of the job (lowercase letters, digits, - and _), e.g. "
                        "team=vision run=hr1")
    p.add_argument("--image",
                   help="training container (default: docker/trainer.Dockerfile's image in the "
                        "project's Artifact Registry, "
                        + default_image("PROJECT", "REGION", "cpu") + ", or trainer-gpu with "
                        "an accelerator)")
    p.add_argument("--service_account")
    p.add_argument("--dry_run", action="store_true", help="print the job spec and stop")
    return p


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600, "m": 60, "s": 1}


def duration(text: str) -> int:
    """`2h`, `90m`, `1h30m`, `3600s` or `3600` -> whole seconds."""
    parts = _DURATION.findall(text)
    if text.isdigit():
        seconds = int(text)
    elif parts and "".join(n + u for n, u in parts) == text:
        seconds = round(sum(float(n) * _SECONDS[u] for n, u in parts))
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is no duration: e.g. 90m, 2h, 1h30m, 3600s")
    if seconds < 1:
        raise argparse.ArgumentTypeError("the timeout must be at least a second")
    return seconds


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: a label is KEY=VALUE")
    return key, value


def parse(argv):
    argv = list(argv)
    trainer_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    args = parser().parse_args(own)
    if args.tpu:
        if args.accelerator_type or args.workers != 1:
            parser().error("--tpu takes neither --accelerator_type nor --workers")
        args.accelerator_type = TPUS[args.tpu]
    tpu = args.accelerator_type and ACCELERATORS[args.accelerator_type].tpu
    if tpu and args.workers != 1:
        parser().error(f"{args.accelerator_type} takes no --workers: the trainer uses one TPU host")
    if tpu and not args.image:
        flag = "--tpu" if args.tpu else f"--accelerator_type {args.accelerator_type}"
        parser().error(f"{flag} needs --image: a container with TensorFlow for TPUs (libtpu); "
                       "docker/trainer.Dockerfile builds one for CPUs and GPUs only")
    if args.workers < 1:
        parser().error("--workers must be at least 1")
    if args.accelerator_count < 0:
        parser().error("--accelerator_count must be at least 0")
    if not args.job_dir.startswith("gs://"):
        parser().error("--job_dir must be a gs:// path: Vertex AI writes nowhere else")
    try:
        args.machine_type, args.accelerator_count = machine(
            args.accelerator_type, args.accelerator_count, args.machine_type)
    except ValueError as e:
        parser().error(str(e))
    keys = [key for key, _ in args.labels]
    if len(set(keys)) < len(keys):
        parser().error("--labels names a key twice")
    args.labels = dict(args.labels)
    return args, trainer_args


def machine(accelerator_type: str, count: int, machine_type: str | None) -> tuple[str, int]:
    """The (machine type, accelerator count) of a worker: the machine the
    accelerator and count need, or `machine_type` checked against them.
    Raises ValueError, naming the family it needs, for a pairing Vertex AI
    refuses."""
    if not accelerator_type:
        if count:
            raise ValueError("--accelerator_count needs --accelerator_type")
        for name, acc in ACCELERATORS.items():
            if machine_type in acc.machines:
                raise ValueError(f"--machine_type {machine_type} carries {name}: give "
                                 f"--accelerator_type {name}")
        return machine_type or CPU_MACHINE, 0
    acc = ACCELERATORS[accelerator_type]
    counts = acc.allowed_counts()
    if machine_type is None:
        count = count or min(counts)
        if count not in acc.default:
            raise ValueError(f"{accelerator_type} comes {_or(counts)} to a machine, not {count}")
        return acc.default[count], count
    family = f"{acc.family} machines only (" + (
        ", ".join(acc.machines) if acc.machines else f"e.g. {acc.default[min(counts)]}") + ")"
    if acc.machines:
        if machine_type not in acc.machines:
            raise ValueError(f"--machine_type {machine_type} does not take {accelerator_type}: "
                             f"Vertex AI attaches it to {family}")
        if count and count != acc.machines[machine_type]:
            right = [m for m, n in acc.machines.items() if n == count]
            raise ValueError(
                f"{machine_type} has {acc.machines[machine_type]} {accelerator_type}, not "
                f"--accelerator_count {count}" + (f": use {right[0]}" if right else
                                                  f" (it comes {_or(counts)} to a machine)"))
        return machine_type, acc.machines[machine_type]
    if not machine_type.startswith(acc.family + "-"):
        raise ValueError(f"--machine_type {machine_type} does not take {accelerator_type}: "
                         f"Vertex AI attaches it to {family}")
    count = count or min(counts)
    if count not in counts:
        raise ValueError(f"{accelerator_type} comes {_or(counts)} to a machine, not {count}")
    return machine_type, count


def _or(counts) -> str:
    words = [str(n) for n in counts]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def image(args) -> str:
    """The container the job runs: `--image`, or the default one for its machine."""
    kind = "gpu" if args.accelerator_type else "cpu"
    return args.image or default_image(args.project, args.region, kind)


def worker_pool_specs(args, trainer_args: list[str]) -> list[dict]:
    """The chief pool and, for several workers, a pool of the others, on
    the machine `parse` chose (`machine`)."""
    machine = {"machine_type": args.machine_type}
    if args.accelerator_type:
        machine.update(accelerator_type=args.accelerator_type,
                       accelerator_count=args.accelerator_count)
        topology = ACCELERATORS[args.accelerator_type].topology.get(args.machine_type)
        if topology:
            machine["tpu_topology"] = topology
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

    from google.cloud.aiplatform.compat.types import custom_job
    from google.protobuf import duration_pb2

    # The SDK insists on a staging bucket; with the package inside the image
    # nothing is staged, so the job dir serves.
    job = aiplatform.CustomJob(
        display_name=args.display_name, worker_pool_specs=worker_pool_specs(args, trainer_args),
        base_output_dir=args.job_dir, staging_bucket=args.job_dir, labels=args.labels or None,
        project=args.project, location=args.region, credentials=credentials)
    # Set here rather than by `submit`'s arguments, so that `--dry_run` shows
    # it; `submit` leaves a scheduling alone when given none of its own.
    if args.spot or args.timeout:
        # A worker that a preemption restarts cannot rejoin the others'
        # collective ops (MultiWorkerMirroredStrategy): all restart together.
        job.job_spec.scheduling = custom_job.Scheduling(
            timeout=duration_pb2.Duration(seconds=args.timeout) if args.timeout else None,
            strategy=custom_job.Scheduling.Strategy.SPOT if args.spot else None,
            restart_job_on_worker_restart=args.spot and args.workers > 1)
    return job


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

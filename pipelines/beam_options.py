"""The runner configuration every Beam job of the project starts from.

Beam 2.77's `DirectRunner` first tries the Prism runner, which downloads its
binary from the internet, and only falls back to the FnApiRunner after that
fails; offline that is a long stall. We name the `FnApiRunner` directly (the
engine the DirectRunner falls back to for batch jobs). It runs the workers
as `--direct_num_workers` asks (0, the default: one per core): several in
`multi_processing` mode, one worker process each; a single one in the
runner's own process (`in_memory`), since a worker process of its own
would only add its start-up (about 0.8 s of CPU importing `apache_beam`,
which the runner waits for) and nothing runs beside it. Any flag the user
gives (`--runner DataflowRunner`, `--direct_running_mode multi_processing`,
...) wins over these defaults; other runners ignore the `direct_*` ones.
"""
from __future__ import annotations

import argparse
import multiprocessing

from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner")


def local_defaults(beam_args: list[str]) -> list[str]:
    """The local runner's flags for the workers the user's flags ask for.

    Counts workers as the FnApiRunner does (0: one per core, by
    `multiprocessing.cpu_count`).
    """
    workers = _workers_flags(beam_args).direct_num_workers or 0
    mode = "in_memory" if (workers or multiprocessing.cpu_count()) == 1 else "multi_processing"
    return ["--runner=FnApiRunner", f"--direct_running_mode={mode}", "--direct_num_workers=0"]


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the pass-through flags, local defaults first.

    The defaults go before the user's flags because, as with any argparse
    option, the last occurrence of a flag is the one that counts.
    """
    return PipelineOptions(local_defaults(beam_args) + list(beam_args))


def _workers_flags(beam_args: list[str]) -> argparse.Namespace:
    """The local runner's worker flags as given, None where not given (Beam's
    own parser cannot tell a flag given at its default from one left out)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--direct_num_workers", type=int)
    parser.add_argument("--direct_running_mode")
    return parser.parse_known_args(beam_args)[0]


def local_and_unsized(beam_args: list[str]) -> bool:
    """Whether the job runs on the local runner with neither the number of
    its workers nor the way they run given: whether the job may choose."""
    flags = _workers_flags(beam_args)
    runner = pipeline_options(beam_args).get_all_options()["runner"]
    return (runner in LOCAL_RUNNERS and flags.direct_num_workers is None
            and flags.direct_running_mode is None)


def model_job_args(beam_args: list[str]) -> list[str]:
    """`beam_args` for a job whose workers run a loaded model (compress,
    decompress): on a local run whose workers the user did not size and a
    machine of several cores, one worker thread per core in one process.

    The threads share one loaded model (RunInference keeps it per process)
    and TensorFlow's thread pools, and Pillow's codecs and TensorFlow's ops
    release the GIL, so the threads overlap the codec work of one image with
    the model of another. Worker processes each import TensorFlow and load
    the model (about 4 s of CPU apiece) and split the cores between their
    pools; on 2 cores, with the default x2 model, threads ran compress 1.3-1.5x
    and decompress 1.1-1.2x as fast (docs/architecture.md).
    """
    if not local_and_unsized(beam_args) or multiprocessing.cpu_count() == 1:
        return list(beam_args)
    return ["--direct_running_mode=multi_threading", *beam_args]


def worker_processes(beam_args: list[str]) -> int:
    """How many of the job's worker processes share one machine; 0: one per core.

    A worker gives TensorFlow its share of the machine's cores
    (`model_handler.share_cores`): left alone, every process sizes its thread
    pools to all cores, and two processes on two cores run slower together
    than one. Locally the FnApiRunner starts `--direct_num_workers` processes
    (0: one per core) or runs in its own process; Dataflow starts one SDK
    process per vCPU unless `--experiments=no_use_multiple_sdk_containers`.
    """
    options = pipeline_options(beam_args).get_all_options()
    if "dataflow" in (options["runner"] or "").lower():
        return 1 if "no_use_multiple_sdk_containers" in (options["experiments"] or []) else 0
    if options["direct_running_mode"] == "multi_processing":
        return options["direct_num_workers"]
    return 1

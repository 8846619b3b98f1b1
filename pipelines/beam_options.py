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

Beam itself only warns about a flag none of its options classes knows and
drops it, so a misspelt `--runer DataflowRunner` would run locally and
succeed; `unknown_options` is what the jobs refuse them by (`jobs.job_parser`).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import multiprocessing
import os
from typing import Callable, Sequence

from apache_beam.options import pipeline_options as beam_pipeline_options
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


def _beam_parser() -> argparse.ArgumentParser:
    """A parser of every flag Beam knows: those of all `PipelineOptions`
    subclasses imported, as `PipelineOptions.get_all_options` builds it."""
    parser = beam_pipeline_options._BeamArgumentParser(allow_abbrev=False, add_help=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def unknown_options(beam_args: list[str]) -> list[str]:
    """What in `beam_args` (a job's flags left over from its own parser) no
    Beam options class takes, one message each, with the closest known flag
    where there is one: ['--runer (did you mean --runner?)']. Empty if all
    are known."""
    parser = _beam_parser()
    known = [flag for action in parser._actions for flag in action.option_strings]
    messages, after_flag = [], False
    for arg in parser.parse_known_args(list(beam_args))[1]:
        if arg.startswith("-") and arg != "--":
            name, has_value = arg.split("=", 1)[0], "=" in arg
            close = difflib.get_close_matches(name, known, n=1)
            messages.append(name + (f" (did you mean {close[0]}?)" if close else ""))
            after_flag = not has_value
        elif after_flag:
            after_flag = False  # the unknown flag's value
        elif arg != "--":
            messages.append(f"{arg!r} (an argument without a flag)")
    return messages


def _workers_flags(beam_args: list[str]) -> argparse.Namespace:
    """The local runner's worker flags as given, None where not given (Beam's
    own parser cannot tell a flag given at its default from one left out)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--direct_num_workers", type=int)
    parser.add_argument("--direct_running_mode")
    return parser.parse_known_args(beam_args)[0]


def local_worker_flags(beam_args: list[str], workers: Callable[[], int]) -> list[str]:
    """`--direct_num_workers` of `workers()` when the job runs on the local
    runner and the user gave neither the number of its workers nor the way
    they run, so the job may choose (`workers` is called only then: it may
    list the input); else none. A job puts them before `beam_args`."""
    flags = _workers_flags(beam_args)
    runner = pipeline_options(beam_args).get_all_options()["runner"]
    if (runner not in LOCAL_RUNNERS or flags.direct_num_workers is not None
            or flags.direct_running_mode is not None):
        return []
    return [f"--direct_num_workers={workers()}"]


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as
    `codec.exported.share_cores` counts them; a container's limit, not the host's)."""
    return len(os.sched_getaffinity(0))


@dataclasses.dataclass(frozen=True)
class LocalCost:
    """What a kind of job costs on the local runner, the figures its choice
    of worker processes (`local_processes`) weighs.

    `start_seconds`: what worker processes add before their first unit of
    work over the runner's own process (a worker's interpreter, Beam and
    the job's modules, the runner's channels to it; a model job's
    TensorFlow and model load the runner's process pays as well);
    `seconds_per_megapixel`: a worker process's work on its one core;
    `in_process_seconds_per_megapixel`: the runner's own process's, on
    every core its libraries use (TensorFlow's thread pools in a model job).
    """

    start_seconds: float
    seconds_per_megapixel: float
    in_process_seconds_per_megapixel: float


def local_processes(megapixels: Sequence[float], cores: int, cost: LocalCost) -> int:
    """How many processes finish soonest the units of work (files, or a
    dataset's shards) of `megapixels` each on `cores` cores at `cost`: 1,
    the runner's own process, or n worker processes, at most one per core
    and one per unit.

    The runner's process takes the total at the in-process rate; n workers
    take their start plus the busiest one's share at a worker's rate. The
    local runner deals a stage's units out to its workers in turn, whole,
    in an order the job does not choose (`FnApiRunner`'s partition of a
    grouped stage), so the busiest is taken to get the ceil(units / n)
    largest: exact for units of one size, and where a few large ones
    dominate (a huge file, a dataset of two shards), the runner's process
    keeps them. Sized by the work, not by the count of files: 120
    photographs of 2.4 MP repay the processes that 120 thumbnails do not.
    Ties go to fewer processes.
    """
    largest_first = sorted(megapixels, reverse=True)
    best, fastest = 1, sum(largest_first) * cost.in_process_seconds_per_megapixel
    for n in range(2, min(cores, len(largest_first)) + 1):
        busiest = sum(largest_first[:-(-len(largest_first) // n)])
        seconds = cost.start_seconds + busiest * cost.seconds_per_megapixel
        if seconds < fastest:
            best, fastest = n, seconds
    return best


# A model job's work on the local runner, on 2 cores. A worker process (one
# core) codes a megapixel in about 1.1 s with the shipped x2 model (its
# pre-processor: 2.7 s for a 2.4-MP photograph). The runner's own process
# is hardly faster: TensorFlow ran that pre-processor on one core there too
# (CPU time 0.98 of wall time), and `compress_throughput.py`'s steady states
# were 0.38 s a megapixel in it against 0.42 in each of two workers. Two
# workers cost 7 s of CPU more than the runner's process, which imports
# TensorFlow and loads the model too (a one-photo compress: 13.1 s of CPU
# against 6.0), and their runs' fixed costs were 7-11 s more on 2 cores that
# other work shared (`compress_throughput.py --copies 2`); 3.5 s is what
# free cores would give.
MODEL_JOB_COST = LocalCost(start_seconds=8.0, seconds_per_megapixel=1.1,
                           in_process_seconds_per_megapixel=1.0)

# A photograph's megapixels where a model job's caller gives only a count of
# its inputs: about the mean of the bundled and scikit-image photographs (0.47).
TYPICAL_PHOTO_MEGAPIXELS = 0.5


def model_job_args(beam_args: list[str],
                   inputs: Callable[[], Sequence[float] | int]) -> list[str]:
    """`beam_args` for a job whose workers run a loaded model (compress,
    decompress), sized when the job runs locally and the user sized no
    workers: `local_processes` of the inputs' megapixels (`inputs()`, called
    only then: `jobs.source_megapixels`; a bare count of files is taken as
    that many photographs of `TYPICAL_PHOTO_MEGAPIXELS`) at `MODEL_JOB_COST`.

    Not worker threads (`multi_threading`), though they would share one
    model: 3 of 13 such runs of decompress over 55 photos each lost one
    photo in the local runner's `Flatten`, which only the job's closing
    account caught (docs/architecture.md).
    """
    def processes() -> int:
        work = inputs()
        megapixels = [TYPICAL_PHOTO_MEGAPIXELS] * work if isinstance(work, int) else work
        return local_processes(megapixels, usable_cores(), MODEL_JOB_COST)

    return local_worker_flags(beam_args, processes) + list(beam_args)


def worker_processes(beam_args: list[str]) -> int:
    """How many of the job's worker processes share one machine; 0: one per core.

    A worker gives TensorFlow its share of the machine's cores
    (`codec.exported.share_cores`): left alone, every process sizes its thread
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

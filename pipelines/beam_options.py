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
import difflib
import multiprocessing
from typing import Callable

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


# A worker process of a model job imports TensorFlow and loads the model
# (about 4 s of CPU) before its first image; on 2 cores, with the default x2
# model, processes would overtake the runner's own process (one model,
# TensorFlow on every core, the image codecs in one thread) from 160-300
# photos on, by the fixed and per-photo costs of runs of 55 and 110 photos
# (docs/architecture.md).
FILES_TO_REPAY_MODEL_PROCESSES = 200


def model_job_args(beam_args: list[str], count_inputs: Callable[[], int]) -> list[str]:
    """`beam_args` for a job whose workers run a loaded model (compress,
    decompress), sized when the job runs locally and the user sized no
    workers: below `FILES_TO_REPAY_MODEL_PROCESSES` inputs
    (`count_inputs()`, called only then) the runner's own process, else
    one worker process per core.

    Not worker threads (`multi_threading`), though they would share one
    model: 3 of 13 such runs of decompress over 55 photos each lost one
    photo in the local runner's `Flatten`, which only the job's closing
    account caught (docs/architecture.md).
    """
    return local_worker_flags(
        beam_args, lambda: 1 if count_inputs() < FILES_TO_REPAY_MODEL_PROCESSES else 0
    ) + list(beam_args)


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

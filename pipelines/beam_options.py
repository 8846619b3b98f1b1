"""The runner configuration every Beam job of the project starts from.

Beam 2.77's `DirectRunner` first tries the Prism runner, which downloads its
binary from the internet, and only falls back to the FnApiRunner after that
fails; offline that is a long stall. We name the `FnApiRunner` directly (the
engine the DirectRunner falls back to for batch jobs) in `multi_processing`
mode, so a local run uses one worker process per core and never reaches for
the network. Any flag the user gives (`--runner DataflowRunner`,
`--direct_num_workers 2`, ...) wins over these defaults; other runners
ignore the `direct_*` ones.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_DEFAULTS = [
    "--runner=FnApiRunner",
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=0",  # 0 = one worker process per CPU core
]


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the pass-through flags, local defaults first.

    The defaults go before the user's flags because, as with any argparse
    option, the last occurrence of a flag is the one that counts.
    """
    return PipelineOptions(LOCAL_DEFAULTS + list(beam_args))


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

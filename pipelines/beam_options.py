"""The runner configuration every Beam job of the project starts from.

Beam 2.77's `DirectRunner` first tries the Prism runner, which downloads its
binary from the internet, and only falls back to the FnApiRunner after that
fails; offline that is a long stall. We name the `FnApiRunner` directly (the
same engine the DirectRunner falls back to for batch jobs) in
`multi_processing` mode, so a local run uses one worker process per core and
never reaches for the network. Any flag the user gives (`--runner
DataflowRunner`, `--direct_num_workers 2`, ...) wins over these defaults.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_DEFAULTS = {
    "runner": "FnApiRunner",
    "direct_running_mode": "multi_processing",
    "direct_num_workers": 0,  # 0 = one worker process per CPU core
}


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the pass-through flags, local defaults filled in.

    The multi-process defaults only apply when no runner is named or the
    FnApiRunner is: other runners (Dataflow, Prism, Flink) ignore them.
    """
    options = PipelineOptions(beam_args)
    given = options.get_all_options(drop_default=True)
    runner = given.get("runner") or LOCAL_DEFAULTS["runner"]
    if runner.lower() not in ("fnapirunner", "fnapi"):
        return options
    defaults = {k: v for k, v in LOCAL_DEFAULTS.items() if k not in given}
    return PipelineOptions(beam_args, **defaults)

"""How every command of the project logs: its own lines always, other libraries' when asked.

A user of `make demo` or of a job reads the command's progress and its
closing account. Around them, every process that imports TensorFlow logs its
device set-up, and Beam's local runner forwards each worker process's
warnings about its own platform: dozens of lines per job, none of them the
user's business. By default the project's loggers (and Dataflow's job
monitor, which reports progress and the job's URL) are shown at INFO, the
rest at WARNING, and the forwarded worker warnings only at ERROR;
`--verbose` shows every library at INFO.

TensorFlow reads its native (C++) log level from `TF_CPP_MIN_LOG_LEVEL` once,
when it is imported, which for a console script is before `main` parses a
flag; `quiet_native_logs` therefore runs when `pipelines` or `trainer` is
imported (and first in the commands of the libraries `sandwich` and
`codec`, whose import leaves the environment alone) and sets it only if the
user has not (`TF_CPP_MIN_LOG_LEVEL=0` brings those logs back). Beam's
worker processes inherit it. Level 3, not 2: on a host without CUDA,
TensorFlow logs "failed call to cuInit" as an error at every start. What
TensorFlow 2.21's libraries log while they load, before its logging starts
(absl's "All log messages before absl::InitializeLog()" banner, the oneDNN
notice, "Could not find cuda drivers"), obeys no setting: some six lines
per process that imports it.

One Beam warning is dropped unless `--verbose`: RunInference warns "Resource
module is not available" on every run without PyTorch (Beam 2.77 sets
`resource` to None when its optional PyTorch import fails), though nothing
is wrong.
"""
from __future__ import annotations

import argparse
import logging
import os

OWN = ("sandwich", "pipelines", "trainer", "__main__", "apache_beam.runners.dataflow")
# Worker processes' log records, re-logged by the local runner.
FORWARDED = ("apache_beam.runners.portability.local_job_service",)
# Errors that matter reach Python as exceptions; the rest is device set-up.
NATIVE = {"TF_CPP_MIN_LOG_LEVEL": "3"}
BEAM_NOISE = "Resource module is not available for current platform"


def quiet_native_logs() -> None:
    for name, value in NATIVE.items():
        os.environ.setdefault(name, value)


def flag() -> argparse.ArgumentParser:
    """The `--verbose` flag, as a parent parser for every command's own."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--verbose", action="store_true",
                        help="also show the INFO logs of Beam, TensorFlow and other libraries")
    return parser


def set_up(argv) -> None:
    """Configures logging for a command run with `argv` (its `--verbose`)."""
    verbose = flag().parse_known_args(list(argv))[0].verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in OWN:
        logging.getLogger(name).setLevel(logging.INFO)
    for name in FORWARDED:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_DropMessage(BEAM_NOISE))


class _DropMessage(logging.Filter):
    """Drops the records whose message starts with `start`."""

    def __init__(self, start: str):
        super().__init__()
        self._start = start

    def filter(self, record) -> bool:
        return not str(record.msg).startswith(self._start)

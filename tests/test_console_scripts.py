"""What a console script costs before it answers `--help` or a mistyped
flag: nothing of TensorFlow (3-9 s and some 800 MB); and that where it
imports TensorFlow, its native start-up logs are quieted first. Each check
runs in a fresh interpreter, as a console script does.
"""
import os
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

PROBE = """
import sys, time
start = time.monotonic()
from {module} import main
try:
    code = main({argv!r})
except SystemExit as exit:
    code = exit.code
print("exit", code, "tensorflow" in sys.modules, f"{{time.monotonic() - start:.1f}} s")
"""


# Notes `TF_CPP_MIN_LOG_LEVEL` as TensorFlow's first import finds it, which
# is when TensorFlow reads it; a command that never imports TensorFlow is
# judged by what it leaves set for a later import.
QUIET_PROBE = """
import os, sys
found = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not found:
            found.append(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))

sys.meta_path.insert(0, Watch())
from {module} import main
try:
    main(["--help"])
except SystemExit:
    pass
print("level", (found or [os.environ.get("TF_CPP_MIN_LOG_LEVEL")])[0])
"""
COMMANDS = sorted(e.value.split(":")[0] for e in metadata.entry_points(group="console_scripts")
                  if e.name.startswith("sandwich-"))


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, **kwargs)


def _probe(module: str, argv: list[str]) -> tuple[list[str], str]:
    """The probe's verdict (exit code, whether TensorFlow was imported, the
    time) and what the command printed before it."""
    done = _python(PROBE.format(module=module, argv=argv))
    if not done.stdout:
        pytest.fail(done.stderr)
    *printed, verdict = done.stdout.splitlines()
    return verdict.split(), "\n".join(printed)


@pytest.mark.parametrize("argv, code", [
    (["--help"], "0"),
    (["--input", "x", "--output", "y", "--qsteps", "3"], "2"),  # a curve needs two steps
    (["--input", "x", "--output", "y", "--metrics", "fps"], "2"),
])
def test_eval_answers_help_and_flag_errors_without_tensorflow(argv, code):
    (_, exit_code, tensorflow, *_), _ = _probe("pipelines.evaluate", argv)
    assert (exit_code, tensorflow) == (code, "False")


@pytest.mark.parametrize("argv, code", [
    (["--help"], "0"),
    (["--data", "d", "--size", "huge"], "2"),  # not a preset
    (["--data", "d", "--ema_decay", "1"], "2"),  # checked after parsing
])
def test_train_answers_help_and_flag_errors_without_tensorflow(argv, code):
    (_, exit_code, tensorflow, *_), printed = _probe("trainer.task", argv)
    assert (exit_code, tensorflow) == (code, "False")
    if argv == ["--help"]:  # with the choices of modules that train
        for listed in ("--max_train_minutes", "{auto,default,mirrored,multi_worker,tpu}",
                       "{auto,medium,paper,slim,wide}", "{flat,steps,tables}",
                       "{auto,perceptual,psnr}", "{constant,cosine}", "{off,input,gain}"):
            assert listed in printed


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_quiets_tensorflow_before_importing_it(module):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = _python(QUIET_PROBE.format(module=module), env=env)
    assert done.stdout.splitlines()[-1:] == ["level 3"], done.stderr

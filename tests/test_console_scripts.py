"""What a console script costs before it answers `--help` or a mistyped
flag: nothing of TensorFlow (3-9 s and some 800 MB). Each check runs in a
fresh interpreter, as a console script does.
"""
import subprocess
import sys
import textwrap

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


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, **kwargs)


def _probe(module: str, argv: list[str]) -> list[str]:
    done = _python(PROBE.format(module=module, argv=argv))
    if not done.stdout:
        pytest.fail(done.stderr)
    return done.stdout.splitlines()[-1].split()


@pytest.mark.parametrize("argv, code", [
    (["--help"], "0"),
    (["--input", "x", "--output", "y", "--qsteps", "3"], "2"),  # a curve needs two steps
    (["--input", "x", "--output", "y", "--metrics", "fps"], "2"),
])
def test_eval_answers_help_and_flag_errors_without_tensorflow(argv, code):
    _, exit_code, tensorflow, *_ = _probe("pipelines.evaluate", argv)
    assert (exit_code, tensorflow) == (code, "False")

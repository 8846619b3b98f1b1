"""Dataflow installs our code on its workers from `--setup_file ./setup.py`.

Beam's stager builds that package on the submitting machine, with no network
(`python -m build --no-isolation`, else `setup.py sdist`); this runs the same
stager call and checks the package carries the pipeline and the library.
The build leaves `sandwich_compression.egg-info` in the checkout, whose
metadata (no requirements in it) would then shadow the installed
package's for the rest of the run: the test removes what it made.
"""
import os
import shutil
import subprocess
import sys
import tarfile

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import Stager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EGG_INFO = os.path.join(ROOT, "sandwich_compression.egg-info")
PACKAGES = ("sandwich", "codec", "pipelines", "trainer")
# The jobs that run on Dataflow's workers, and the modules they import only
# once running (`evaluate` writes its report with `pipelines.report`).
JOBS = ("pipelines.make_dataset", "pipelines.compress", "pipelines.decompress",
        "pipelines.evaluate", "pipelines.report")


def _modules_loaded_by(modules) -> set[str]:
    """The files of this checkout (relative paths) that importing `modules`
    loads, in a fresh interpreter."""
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    importlib.import_module(name)\n"
              "for module in list(sys.modules.values()):\n"
              "    print(getattr(module, '__file__', None) or '')\n")
    printed = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split("\n")
    return {os.path.relpath(path, ROOT) for path in printed
            if path.startswith(ROOT + os.sep) and f"{os.sep}.venv{os.sep}" not in path}


def _files_under(*directories, suffix="") -> set[str]:
    """The files below `directories` of this checkout, as relative paths."""
    return {os.path.relpath(os.path.join(directory, name), ROOT)
            for top in directories
            for directory, _, files in os.walk(os.path.join(ROOT, top))
            for name in files if name.endswith(suffix) and "__pycache__" not in directory}


def test_stager_builds_the_package_with_the_pipeline(tmp_path):
    options = PipelineOptions([f"--setup_file={ROOT}/setup.py", "--sdk_location=container"])
    left_before = os.path.exists(EGG_INFO)
    try:
        resources = Stager.create_job_resources(options, str(tmp_path))
    finally:
        if not left_before:
            shutil.rmtree(EGG_INFO, ignore_errors=True)
    staged_as = {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
        r.role_payload).staged_name for r in resources}
    assert "workflow.tar.gz" in staged_as  # the name Dataflow workers install from
    [sdist] = [f for f in os.listdir(tmp_path) if f.endswith(".tar.gz")]
    with tarfile.open(tmp_path / sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        entry_points = tar.extractfile(next(
            m for m in tar.getmembers() if m.name.endswith("entry_points.txt"))).read().decode()
    # Every module each job loads on a worker (what it imports, and what it
    # imports once running), and every module of the packages besides.
    loaded = _modules_loaded_by(JOBS)
    assert {"pipelines/compress.py", "codec/rate_control.py", "sandwich/jpeg/real.py",
            "pipelines/report.py"} <= loaded
    assert not sorted(loaded - names)
    assert not sorted(_files_under(*PACKAGES, suffix=".py") - names)
    # The data files they read: the rate model's calibrations and the
    # bundled photographs (sandwich/data/), and the shipped models
    # (`--model shipped`, the jobs' default): every file of every export
    # dir under codec/models/.
    data = _files_under("sandwich/data", "codec/models")
    assert {"sandwich/data/log_rate_calibration_ycbcr-420.json"} <= data
    assert not sorted(data - names)
    assert "sandwich-dataset = pipelines.make_dataset:main" in entry_points

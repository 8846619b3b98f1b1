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
import tarfile

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import Stager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EGG_INFO = os.path.join(ROOT, "sandwich_compression.egg-info")


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
    for module in ("pipelines/make_dataset.py", "pipelines/beam_options.py",
                   "pipelines/dead_letters.py", "pipelines/patches.py",
                   "pipelines/tfds_writer.py", "pipelines/compress.py",
                   "pipelines/decompress.py", "pipelines/model_handler.py",
                   "sandwich/image_io.py", "sandwich/specs.py",
                   # The deployed codec, which the model jobs run on the workers.
                   "codec/__init__.py", "codec/api.py", "codec/exported.py",
                   "codec/bottleneck_format.py", "codec/rate_control.py", "codec/tiling.py",
                   "codec/shipped.py"):
        assert module in names, module
    # The shipped models (`--model shipped`, the jobs' default) travel with
    # the code: every file of every export dir under codec/models/.
    shipped = [os.path.relpath(os.path.join(directory, name), ROOT)
               for directory, _, files in os.walk(os.path.join(ROOT, "codec", "models"))
               for name in files]
    assert not [path for path in shipped if path not in names], shipped
    assert "sandwich-dataset = pipelines.make_dataset:main" in entry_points

"""Every job refuses a flag neither it nor Beam knows, and an input glob that
matches nothing, instead of running (locally, on nothing) and exiting 0."""
import subprocess
import sys

import pytest

from pipelines import beam_options, compress, decompress, evaluate, jobs, make_dataset
from tests.trainer_data import REPO

JOBS = {"compress": compress, "decompress": decompress, "evaluate": evaluate,
        "make_dataset": make_dataset}
# What each job needs besides --input and --output to get past its own flags.
OWN_FLAGS = {"make_dataset": ["--scenario=high_res"]}

# Every Beam flag the README, Makefile, benchmarks, .ci and tests pass to a
# job, and the Dataflow ones a cloud run is likely to.
BEAM_FLAGS = [
    "--runner=DataflowRunner", "--project=p", "--region=europe-west4",
    "--temp_location=gs://b/tmp", "--staging_location=gs://b/staging",
    "--setup_file=./setup.py", "--sdk_container_image=r-docker.pkg.dev/p/sandwich/dataflow:1",
    "--sdk_location=container", "--worker_machine_type=n1-standard-4",
    "--machine_type=n1-standard-4", "--max_num_workers=8", "--num_workers=2",
    "--experiments=no_use_multiple_sdk_containers", "--number_of_worker_harness_threads=1",
    "--direct_num_workers=2", "--direct_running_mode=multi_processing",
    "--save_main_session", "--job_name=sandwich-1", "--service_account_email=a@p.iam",
    "--disk_size_gb=50", "--no_use_public_ips", "--subnetwork=regions/r/subnetworks/s",
    "--dataflow_service_options=enable_prime", "--requirements_file=requirements.txt",
]


def _job(name: str, tmp_path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.{name}", f"--input={tmp_path}/none/*.png",
         f"--output={tmp_path}/out", *OWN_FLAGS.get(name, []), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_misspelt_runner_is_refused(tmp_path):
    """`--runer DataflowRunner` used to warn, run locally and exit 0."""
    ran = _job("compress", tmp_path, "--runer", "DataflowRunner")
    assert ran.returncode == 2, ran.stderr
    assert "--runer (did you mean --runner?)" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_job_refuses_unknown_options(name, capsys):
    argv = ["--input=x/*", "--output=y", *OWN_FLAGS.get(name, []),
            "--temp_locaton", "gs://x", "--no_such_flag", "--project=p"]
    with pytest.raises(SystemExit) as exit_:
        JOBS[name].parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--temp_locaton (did you mean --temp_location?)" in err
    assert "--no_such_flag" in err and "--project" not in err.split("error:")[1]


def test_stray_argument_is_refused(capsys):
    with pytest.raises(SystemExit):
        make_dataset.parse_args(["--input=x/*", "--output=y", "--scenario=high_res", "typo"])
    assert "'typo' (an argument without a flag)" in capsys.readouterr().err


def test_known_beam_flags_pass():
    assert beam_options.unknown_options(BEAM_FLAGS) == []
    config, beam_args = make_dataset.parse_args(
        ["--input=x/*", "--output=y", "--scenario=high_res", *BEAM_FLAGS])
    assert beam_args == BEAM_FLAGS
    # Space-separated values too.
    assert beam_options.unknown_options(["--runner", "DataflowRunner", "--project", "p",
                                         "--direct_num_workers", "0"]) == []


def test_empty_glob_exits_non_zero_for_make_dataset(tmp_path):
    ran = _job("make_dataset", tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert f"no input matches {tmp_path}/none/*.png" in ran.stderr
    assert "0 in" not in ran.stdout and "Traceback" not in ran.stderr


def test_empty_glob_exits_non_zero_for_compress(tmp_path):
    from tests.sandwich_exports import export_sandwich

    model = export_sandwich("high_res", model_id="t", factor=1)
    ran = _job("compress", tmp_path, f"--model={model}")
    assert ran.returncode == 2, ran.stderr
    assert f"no input matches {tmp_path}/none/*.png" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_model_that_cannot_serve_the_job_exits_non_zero_with_its_reason(tmp_path):
    ran = _job("compress", tmp_path, f"--model={tmp_path}/no_model")
    assert ran.returncode == 2, ran.stderr
    assert f"{tmp_path}/no_model is neither an export dir" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_empty_glob_is_refused_by_every_run(tmp_path):
    """The check sits where every job's run passes (`jobs.run_pipeline`),
    before a pipeline is built."""
    config = jobs.JobConfig(input=f"{tmp_path}/*.png", output=str(tmp_path / "out"))
    built = []
    with pytest.raises(jobs.NoInputError, match="no input matches"):
        jobs.run_pipeline(lambda pipeline, config: built.append(config), config, [])
    assert not built
    (tmp_path / "a.png").write_bytes(b"")
    jobs.check_input(config.input)  # one file is enough

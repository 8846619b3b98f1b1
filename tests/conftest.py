"""Shared pytest fixtures."""
import pytest

from codec import precision
from tests import trainer_data
from tests.gcs_emulator import storage_emulator

# The test process runs every model at float32, as exported, whatever the
# CPU: the jobs' `auto` would otherwise move it to bfloat16 at the first
# shipped model it loads, and figures would depend on the order tests run
# in. bfloat16 is tested in processes of its own (tests/test_precision.py).
precision.use(precision.FLOAT32)


@pytest.fixture(scope="session")
def high_bit_depth_dataset(tmp_path_factory):
    """A 10-bit dataset dir as `pipelines.make_dataset` writes it (see `trainer_data`)."""
    return trainer_data.make(str(tmp_path_factory.mktemp("high_bit_depth")), "high_bit_depth")


@pytest.fixture(scope="session")
def high_res_dataset(tmp_path_factory):
    """An 8-bit x2 dataset dir as `pipelines.make_dataset` writes it."""
    return trainer_data.make(str(tmp_path_factory.mktemp("high_res")), "high_res")


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory):
    """A running Cloud Storage emulator, with its environment set for the module.

    Yields a google-cloud-storage client connected to it.
    """
    with storage_emulator(str(tmp_path_factory.mktemp("gcs"))) as env:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            from google.cloud import storage

            yield storage.Client()

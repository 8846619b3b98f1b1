"""Shared pytest fixtures."""
import pytest

from tests.gcs_emulator import storage_emulator


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

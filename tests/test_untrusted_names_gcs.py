"""A model in `gs://` is copied to the worker to be loaded; the copy must not
outlive the load (it used to stay in /tmp for every worker process).

Against the Cloud Storage emulator, through Beam's GCS filesystem, as on
Dataflow. (The emulator cannot store an object named with `..`, so names
that traverse are tested through the pipeline's own step in
`test_untrusted_input`.)
"""
import os
import tempfile

import numpy as np
import pytest

from pipelines import model_handler
from tests.sandwich_exports import export_sandwich
from tests.test_compress_gcs import _upload_dir

MODEL_ID = "hr-untrained"


@pytest.fixture(scope="module")
def bucket(gcs_emulator):
    bucket = gcs_emulator.create_bucket("untrusted")
    _upload_dir(bucket, export_sandwich("high_res", model_id=MODEL_ID), "models/hr")
    return bucket


def test_the_model_copy_is_deleted_after_loading(bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = model_handler.load("gs://untrusted/models/hr", tile=128, halo=32)
    assert model.spec.model_id == MODEL_ID
    assert model.preprocess(np.zeros((8, 8, 3), "uint8")).shape == (4, 4, 3)
    assert os.listdir(tmp_path) == []

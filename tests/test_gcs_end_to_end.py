"""`gs://` in and out, end to end, against a Cloud Storage emulator on 127.0.0.1.

The pipeline's worker processes inherit the emulator's environment, so every
read and write goes through Beam's GCS filesystem as it would on Dataflow.
TFDS reads `gs://` through `tf.io.gfile`, which cannot be pointed at an
emulator, so the output is downloaded with the storage client and read back
from a local copy.
"""
import collections
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from pipelines import jobs, make_dataset, patches, sample_data
from sandwich.specs import DATASET_SPEC_FILE, DatasetSpec
from tests import photos

PHOTOS = {"astronaut.png": os.path.join(sample_data.SAMPLES_DIR, "astronaut.png"),
          "nested/ihc.png": str(photos.SKIMAGE_DIR / "ihc.png"),
          "motorcycle.png": str(photos.SKIMAGE_DIR / "motorcycle_left.png")}


def test_gs_input_and_output(gcs_emulator, tmp_path):
    bucket = gcs_emulator.create_bucket("corpus")
    for name, path in PHOTOS.items():
        bucket.blob(f"photos/{name}").upload_from_filename(path)
    bucket.blob("photos/garbage.jpg").upload_from_string(b"\xff\xd8\xff garbage")

    spec = make_dataset.run([
        "--input=gs://corpus/photos/**", "--output=gs://corpus/datasets/hr",
        "--scenario=high_res", "--patch_size=64", "--patches_per_image=3",
        "--eval_fraction=0.5", "--direct_num_workers=2"])

    names = [b.name for b in gcs_emulator.list_blobs("corpus", prefix="datasets/hr/")]
    assert not [n for n in names if "/." in n or "beam-temp" in n], "temporary files left"
    local = tmp_path / "hr"
    local.mkdir()
    for name in names:
        bucket.blob(name).download_to_filename(local / os.path.basename(name))
    assert DatasetSpec.from_json((local / DATASET_SPEC_FILE).read_text()) == spec
    splits = collections.Counter(patches.split_of(name, 0.5) for name in PHOTOS)
    assert spec.sources == {"matched": 4, "used": 3, "dead_letters": 1,
                            "train": splits["train"], "eval": splits["eval"]}
    [letter] = [json.loads(line) for line in (local / jobs.DEAD_LETTER_FILE).open()]
    assert letter["path"] == "gs://corpus/photos/garbage.jpg"

    builder = tfds.builder_from_directory(str(local))
    sources = set()
    for split, count in spec.splits.items():
        if not count:
            continue
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert len(examples) == count
        assert all(e["image"].shape == (64, 64, 3) and e["image"].dtype == np.uint8
                   for e in examples)
        sources |= {e["source"].decode() for e in examples}
    assert sources == {f"gs://corpus/photos/{name}" for name in PHOTOS}
    assert sum(spec.splits.values()) == 3 * len(PHOTOS)

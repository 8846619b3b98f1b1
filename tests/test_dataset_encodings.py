"""The trainer reads both patch encodings a dataset dir may hold.

The dataset job writes raw patches (`patch_encoding: "raw"`); datasets
written before that hold PNGs and a spec without the field. Here a real
dataset is rewritten record by record into the old form, and the trainer
must read the very same patches from it.
"""
import json
import shutil

import numpy as np
import tensorflow as tf

from sandwich.specs import DATASET_SPEC_FILE
from trainer import data


def _as_png_dataset(dataset: str, directory) -> str:
    """A copy of `dataset` whose records hold PNG patches and whose spec
    predates `patch_encoding`."""
    copy = shutil.copytree(dataset, directory / "png")
    spec = json.loads((copy / DATASET_SPEC_FILE).read_text())
    assert spec.pop("patch_encoding") == "raw"
    (copy / DATASET_SPEC_FILE).write_text(json.dumps(spec))
    shape = [spec["patch_size"], spec["patch_size"], 3]
    for shard in copy.glob("*.tfrecord-*"):
        records = []
        for record in tf.data.TFRecordDataset(str(shard)):
            example = tf.train.Example.FromString(record.numpy())
            image = example.features.feature["image"].bytes_list
            pixels = np.frombuffer(image.value[0], np.uint16).reshape(shape)
            image.value[0] = tf.io.encode_png(pixels).numpy()
            records.append(example.SerializeToString())
        with tf.io.TFRecordWriter(str(shard)) as writer:
            for record in records:
                writer.write(record)
    return str(copy)


def test_png_datasets_of_earlier_versions_read_the_same_patches(high_bit_depth_dataset,
                                                                tmp_path):
    raw_spec = data.read_spec(high_bit_depth_dataset)
    png = _as_png_dataset(high_bit_depth_dataset, tmp_path)
    png_spec = data.read_spec(png)
    assert (raw_spec.patch_encoding, png_spec.patch_encoding) == ("raw", "png")
    for split in ("train", "eval"):
        raw = data.load(high_bit_depth_dataset, raw_spec, split, 1000)
        assert raw.dtype == np.uint16 and raw.max() < 1024 and len(np.unique(raw)) > 256
        np.testing.assert_array_equal(data.load(png, png_spec, split, 1000), raw)

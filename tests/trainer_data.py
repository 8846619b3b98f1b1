"""Small scenario datasets and run helpers for the trainer's tests.

The Beam job (`pipelines.make_dataset`) takes tens of seconds to start its
worker processes; the trainer's tests need a few dozen patches in a second.
This writer produces the same directory through the pipeline's own pieces
(its feature connectors, TFRecord framing, TFDS metadata and spec), so what
the trainer reads here is byte for byte what the pipeline writes.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np

from pipelines import tfds_writer
from pipelines.make_dataset import dataset_features
from sandwich import samples
from sandwich.specs import DATASET_SPEC_FILE, DatasetSpec


def patches(scenario: str, patch_size: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` random patches of the bundled photos at the scenario's depth.

    10-bit patches sum 2x2 blocks of 8-bit pixels (0..1020), as the
    pipeline's provenance note for synthesised high bit depth says.
    """
    rng = np.random.default_rng(seed)
    photos = samples.load_all()
    scale = 2 if scenario == "high_bit_depth" else 1
    side = patch_size * scale
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y = rng.integers(0, photo.shape[0] - side + 1)
        x = rng.integers(0, photo.shape[1] - side + 1)
        crop = photo[y:y + side, x:x + side]
        out.append(samples.block_sum(crop, scale) if scale > 1 else crop)
    return np.stack(out) if out else np.zeros((0, patch_size, patch_size, 3), np.uint8)


def write(directory: str, scenario: str = "high_res", patch_size: int = 16,
          splits: dict[str, int] | None = None, shards: int = 2, seed: int = 0) -> DatasetSpec:
    """Writes a dataset directory and returns its spec."""
    from tensorflow_datasets.core import example_serializer

    splits = splits if splits is not None else {"train": 32, "eval": 8}
    bit_depth = 10 if scenario == "high_bit_depth" else 8
    factor = 1 if scenario == "high_bit_depth" else 2
    features = dataset_features(patch_size, bit_depth)
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    os.makedirs(directory, exist_ok=True)
    name = f"sandwich_{scenario}"
    infos = []
    for split_index, (split, count) in enumerate(sorted(splits.items())):
        images = patches(scenario, patch_size, count, seed + split_index)
        for shard in range(shards):
            records = [serializer.serialize_example(features.encode_example(
                {"image": image, "bit_depth": bit_depth, "source": f"sample_{i}.png"}))
                for i, image in enumerate(images) if i % shards == shard]
            with open(tfds_writer.shard_path(directory, name, split, shard, shards), "wb") as f:
                for record in records:
                    f.write(tfds_writer.tfrecord_frame(record))
            infos.append(tfds_writer.ShardInfo(split, shard, shards, len(records),
                                               sum(map(len, records))))
    tfds_writer.write_metadata(directory, name, "0.1.0", features, "trainer test data", infos)
    spec = DatasetSpec(scenario=scenario, bit_depth=bit_depth, patch_size=patch_size,
                       factor=factor, splits=dict(splits), provenance="tests.trainer_data",
                       seed=seed, version="0.1.0")
    with open(os.path.join(directory, DATASET_SPEC_FILE), "w") as f:
        f.write(spec.to_json())
    return spec


# A model and a run small enough for a shared 2-core machine.
TINY = ["--batch_size", "4", "--unet_widths", "4,8", "--mlp_widths", "8", "--eval_patches", "8",
        "--refit_patches", "4", "--learning_rate", "3e-3", "--summary_every", "1",
        "--image_every", "10", "--refit_every", "10", "--seed", "0"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(args, env=None, **kwargs) -> subprocess.Popen:
    """`python -m trainer.task ARGS` in its own process (its own TF devices)."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.task", *args], cwd=REPO, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def summaries(log_dir: str) -> dict[str, dict[int, np.ndarray]]:
    """Everything a run logged for TensorBoard: `{tag: {step: value}}`."""
    import tensorflow as tf

    logged = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                logged.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return logged


def scalars(log_dir: str, tag: str) -> list[float]:
    """The values a run logged under `tag`, in step order."""
    values = summaries(log_dir).get(tag, {})
    return [float(values[step]) for step in sorted(values)]

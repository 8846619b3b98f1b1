"""The trainer's input: a dataset dir's spec and its TFRecord shards as tf.data.

The directory is what `pipelines/make_dataset` writes (TFDS layout plus
`dataset_spec.json`). Records are parsed here rather than through
`tfds.builder(...).as_dataset`, which refuses to shard a split of fewer
files than there are workers; here a split of few shards falls back to
sharding by record. Everything goes through `tf.io.gfile`, so `gs://` works.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from sandwich.specs import DATASET_SPEC_FILE, DatasetSpec, SpecError

SHUFFLE_BUFFER = 1024
MAX_PARALLEL_FILES = 16


class DataError(ValueError):
    """The dataset's records are missing, unreadable or do not fit its spec."""


def read_spec(data_dir: str) -> DatasetSpec:
    """The dataset's spec; a clear `SpecError` when missing or malformed."""
    path = f"{data_dir.rstrip('/')}/{DATASET_SPEC_FILE}"
    if not tf.io.gfile.exists(path):
        raise SpecError(f"{path} not found: is {data_dir} a dataset dir written by "
                        "pipelines.make_dataset?")
    with tf.io.gfile.GFile(path, "rb") as f:
        return DatasetSpec.from_json(f.read())


def shard_paths(data_dir: str, split: str) -> list[str]:
    """The split's shard files that hold records. `make_dataset` places each
    source in a shard by its name, so a split of few sources can have empty
    shards; a pipeline given only those would have nothing to read."""
    paths = sorted(tf.io.gfile.glob(f"{data_dir.rstrip('/')}/*-{split}.tfrecord-*"))
    return [path for path in paths if tf.io.gfile.stat(path).length > 0]


def _parse(spec: DatasetSpec):
    dtype = tf.as_dtype(spec.dtype)
    shape = [spec.patch_size, spec.patch_size, 3]
    features = {"image": tf.io.FixedLenFeature([], tf.string),
                "bit_depth": tf.io.FixedLenFeature([], tf.int64)}

    def decode(data):
        if spec.patch_encoding == "png":
            return tf.io.decode_png(data, channels=3, dtype=dtype)
        # A record of the wrong length fails the reshape: a clear InvalidArgumentError.
        return tf.reshape(tf.io.decode_raw(data, dtype), shape)

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        image = decode(example["image"])
        checks = [tf.debugging.assert_equal(
            example["bit_depth"], tf.constant(spec.bit_depth, tf.int64),
            message=f"a record's bit_depth differs from the spec's {spec.bit_depth}")]
        with tf.control_dependencies(checks):
            return tf.ensure_shape(image, shape)

    return parse


def records(data_dir: str, split: str, input_context=None, shuffle=True) -> tf.data.Dataset:
    """The split's serialised records, this input pipeline's share of them.

    Shards are read in parallel (interleaved); with as many shards as input
    pipelines each pipeline reads whole shards, otherwise every pipeline
    reads all shards and keeps every n-th record.
    """
    paths = shard_paths(data_dir, split)
    if not paths:
        raise DataError(f"no {split} shards in {data_dir}")
    files = tf.data.Dataset.from_tensor_slices(paths)
    pipelines = input_context.num_input_pipelines if input_context else 1
    by_file = pipelines > 1 and len(paths) >= pipelines
    # Keeping every n-th record splits the records only if every pipeline
    # reads them in the same order.
    by_record = pipelines > 1 and not by_file
    if by_file:
        files = files.shard(pipelines, input_context.input_pipeline_id)
    if shuffle and not by_record:
        files = files.shuffle(len(paths))
    dataset = files.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), MAX_PARALLEL_FILES),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=by_record or not shuffle)
    if by_record:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    return dataset


def train_dataset(data_dir: str, spec: DatasetSpec, batch_size: int,
                  input_context=None, seed: int | None = None,
                  augment: bool = True) -> tf.data.Dataset:
    """Shuffled, repeated batches of `batch_size` patches, for one replica,
    each patch in one of its 8 orientations if `augment` (`reorient`)."""
    dataset = records(data_dir, "train", input_context)
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed).repeat()
    parse = _parse(spec)
    if augment:
        dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.random(seed=seed))
        transform = lambda record, draw: reorient(parse(record), draw)  # noqa: E731
    else:
        transform = parse
    return (dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def reorient(patch: tf.Tensor, draw: tf.Tensor) -> tf.Tensor:
    """`patch` [h, w, c] turned by `draw % 4` quarter turns and, if bit 2 of
    `draw` is set, mirrored: the 8 symmetries of a square.

    A photo's statistics do not depend on which way up it was shot, so each
    stored patch serves as 8 (the quality benchmark's corpus is 12 photos).
    Patches are square and a multiple of the 16-pixel JPEG macroblock,
    so the codec sees the same block grid in every orientation.
    """
    draw = tf.cast(draw, tf.int32)
    turned = tf.image.rot90(patch, k=draw % 4)
    return tf.cond(tf.equal((draw // 4) % 2, 1), lambda: tf.reverse(turned, [1]), lambda: turned)


def load(data_dir: str, spec: DatasetSpec, split: str, count: int) -> np.ndarray:
    """The first `count` patches of a split, in file order, as NumPy.

    Every worker reads the same patches: the rate model refitted on them and
    the evaluation are then identical on every worker.
    """
    dataset = records(data_dir, split, shuffle=False).take(count).map(_parse(spec))
    try:
        patches = [image.numpy() for image in dataset]
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise DataError(f"unreadable {split} record in {data_dir}: {e.message}") from e
    if not patches:
        raise DataError(f"the {split} split of {data_dir} holds no records")
    return np.stack(patches)


def eval_patches(data_dir: str, spec: DatasetSpec, count: int,
                 eval_dir: str | None = None) -> np.ndarray:
    """The patches the trainer measures itself on with the real codec (and
    refits its rate model to): the first `count` of `eval_dir`'s eval split
    when given, else of the training dataset's, else of its train split.

    A separate `eval_dir` lets the evaluation, and the choice of the weights
    to export that rests on it, see photographs the model never trains on
    even when the training set has too few photographs to spare a split.
    """
    if eval_dir:
        eval_spec = read_spec(eval_dir)
        fields = ("scenario", "bit_depth", "patch_size", "factor")
        differ = [f"{f} {getattr(eval_spec, f)} (training set: {getattr(spec, f)})"
                  for f in fields if getattr(eval_spec, f) != getattr(spec, f)]
        if differ:
            raise SpecError(f"{eval_dir} does not fit the training set: {', '.join(differ)}")
        data_dir, spec = eval_dir, eval_spec
    split = "eval" if spec.splits.get("eval", 0) else "train"
    return load(data_dir, spec, split, count)


def check(data_dir: str, spec: DatasetSpec, scenario: str | None = None) -> None:
    """Refuses a dataset that cannot train, before any model is built."""
    if scenario and scenario != spec.scenario:
        raise SpecError(f"{data_dir} holds a {spec.scenario} dataset, not {scenario}")
    if spec.splits.get("train", 0) < 1:
        raise DataError(f"{data_dir} has no training patches (splits {spec.splits})")
    load(data_dir, spec, "train", 1)

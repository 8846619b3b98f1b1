"""The dataset job end to end: real photographs and bad files in, TFDS out.

Each pipeline runs for real (the project's default FnApiRunner, worker
processes) on small images; the output is read back with nothing but TFDS.
"""
import collections
import io
import json
import operator
import os
import shutil

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import jobs, make_dataset, patches, sample_data, tfds_writer
from pipelines.beam_options import pipeline_options
from sandwich import samples
from sandwich.image_io import decode_image
from sandwich.specs import DATASET_SPEC_FILE, DatasetSpec, SpecError, container_dtype
from tests import photos
from tests.test_image_io import _png_header_only

GOOD = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "motorcycle_left.png",
        "ihc.png", "portrait.jpg", "gray.png", "deep.tif"]
BAD = {"truncated.png": ("decode", "truncated"), "empty.jpg": ("decode", "empty file"),
       "notes.png": ("decode", "not a PNG"), "bomb.png": ("decode", "decompression bomb"),
       "broken.tif": ("decode", "TIFF"), "tiny.png": ("fit", "too small")}
HIGH_RES_FLAGS = ["--scenario", "high_res", "--patch_size", "64", "--patches_per_image", "2",
                  "--eval_fraction", "0.4", "--seed", "7", "--num_shards", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real photographs in the formats the job reads, and one of each kind of bad file."""
    root = tmp_path_factory.mktemp("corpus")
    for name in GOOD[:4]:
        shutil.copy(os.path.join(sample_data.SAMPLES_DIR, name), root)
    for name in GOOD[4:6]:
        shutil.copy(photos.SKIMAGE_DIR / name, root)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown upright
    Image.open(photos.SKIMAGE_DIR / "rocket.jpg").save(root / "portrait.jpg", exif=exif)
    shutil.copy(photos.SKIMAGE_DIR / "camera.png", root / "gray.png")
    coffee = photos.load("coffee.png")
    tifffile.imwrite(root / "deep.tif", samples.block_sum(coffee, 2) << 6, photometric="rgb")
    (root / "truncated.png").write_bytes((root / "coffee.png").read_bytes()[:20000])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not a picture")
    (root / "bomb.png").write_bytes(_png_header_only(60000, 60000))
    (root / "broken.tif").write_bytes(b"II*\x00" + os.urandom(200))
    Image.fromarray(coffee[:40, :40]).save(root / "tiny.png")
    return root


@pytest.fixture(scope="module")
def high_res(corpus, tmp_path_factory):
    """One run on two worker processes; returns (output dir, spec, printed account)."""
    output = tmp_path_factory.mktemp("high_res")
    capture = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", capture)
        spec = make_dataset.run([f"--input={corpus}/*", f"--output={output}",
                                 "--direct_num_workers=2", *HIGH_RES_FLAGS])
    return output, spec, capture.getvalue()


def _read_split(output, split):
    builder = tfds.builder_from_directory(str(output))
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_tfds_reads_the_dataset_back(high_res):
    output, spec, _ = high_res
    builder = tfds.builder_from_directory(str(output))
    assert set(builder.info.splits) == {"train", "eval"}
    assert builder.info.features["image"].dtype == np.uint8
    by_split = {split: _read_split(output, split) for split in ("train", "eval")}
    for split, examples in by_split.items():
        assert len(examples) == spec.splits[split] == builder.info.splits[split].num_examples > 0
        assert builder.info.splits[split].num_shards == 2
        for example in examples:
            assert example["image"].shape == (64, 64, 3) and example["image"].dtype == np.uint8
            assert example["bit_depth"] == 8
    sources = {split: collections.Counter(e["source"].decode() for e in examples)
               for split, examples in by_split.items()}
    assert not set(sources["train"]) & set(sources["eval"])
    used = sources["train"] + sources["eval"]
    assert sorted(os.path.basename(p) for p in used) == sorted(GOOD)
    assert set(used.values()) == {2}  # patches_per_image from every source


def test_patches_are_the_seeded_crops_at_full_resolution(high_res, corpus):
    output, spec, _ = high_res
    path = str(corpus / "astronaut.png")
    examples = [e for split in ("train", "eval") for e in _read_split(output, split)
                if e["source"].decode() == path]
    pixels = decode_image((corpus / "astronaut.png").read_bytes()).pixels
    origins = patches.crop_origins(512, 512, 64, 2, "random", 7, "astronaut.png")
    expected = {pixels[y:y + 64, x:x + 64].tobytes() for y, x in origins}
    assert {e["image"].tobytes() for e in examples} == expected


def test_bad_files_become_dead_letters_and_the_account_adds_up(high_res, corpus):
    output, spec, printed = high_res
    letters = [json.loads(line) for line in (output / jobs.DEAD_LETTER_FILE).open()]
    assert {os.path.basename(d["path"]): d["step"] for d in letters} == {
        name: step for name, (step, _) in BAD.items()}
    for letter in letters:
        assert BAD[os.path.basename(letter["path"])][1] in letter["reason"]
    splits = collections.Counter(patches.split_of(name, 0.4) for name in GOOD)
    assert spec.sources == {"matched": 15, "used": 9, "dead_letters": 6,
                            "train": splits["train"], "eval": splits["eval"]}
    assert splits["train"] and splits["eval"]  # both splits are exercised
    assert "sources: 15 in = 9 used" in printed and "+ 6 dead letters (decode 5, fit 1)" in printed
    assert not [f for f in os.listdir(output) if f.startswith(".") or "temp" in f]
    written = DatasetSpec.from_json((output / DATASET_SPEC_FILE).read_text())
    assert written == spec and (spec.scenario, spec.factor, spec.bit_depth) == ("high_res", 2, 8)


def test_same_seed_gives_the_same_bytes_on_one_worker(high_res, corpus, tmp_path):
    output, _, _ = high_res
    make_dataset.run([f"--input={corpus}/*", f"--output={tmp_path}",
                      "--direct_num_workers=1", *HIGH_RES_FLAGS])
    shards = sorted(f for f in os.listdir(output) if ".tfrecord-" in f)
    assert len(shards) == 4 and shards == sorted(f for f in os.listdir(tmp_path) if ".tfrecord-" in f)
    for name in shards + [DATASET_SPEC_FILE, "dataset_info.json", "features.json"]:
        assert (output / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_high_bit_depth_keeps_10_bits_and_refuses_8_bit_sources(tmp_path):
    corpus = tmp_path / "corpus"
    sample_data.write_sample(str(corpus), block=2)
    twelve_bit = samples.block_sum(photos.load("motorcycle_left.png"), 4)
    tifffile.imwrite(corpus / "deep12.tif", twelve_bit << 4, photometric="rgb")
    shutil.copy(photos.SKIMAGE_DIR / "ihc.png", corpus / "photo8.png")
    output = tmp_path / "out"
    spec = make_dataset.run([
        f"--input={corpus}/*", f"--output={output}", "--scenario=high_bit_depth",
        "--bit_depth=10", "--patch_size=64", "--patch_mode=grid", "--patches_per_image=1000",
        "--eval_fraction=0.5", f"--provenance={sample_data.provenance(2)}"])
    assert (spec.bit_depth, spec.factor, spec.sources["dead_letters"]) == (10, 1, 1)
    assert spec.provenance.startswith("synthetic: 10-bit")
    [letter] = [json.loads(line) for line in (output / jobs.DEAD_LETTER_FILE).open()]
    assert letter["path"].endswith("photo8.png") and "8 bits" in letter["reason"]

    examples = _read_split(output, "train") + _read_split(output, "eval")
    images = np.stack([e["image"] for e in examples])
    assert images.dtype == np.uint16 and images.shape[1:] == (64, 64, 3)
    assert images.max() < 1024 and len(np.unique(images)) > 256
    assert np.any(images % 4), "the low bits must carry data, not padding"
    assert {int(e["bit_depth"]) for e in examples} == {10}
    # The 12-bit TIFF is rounded down to 10 bits; a grid cuts every whole tile.
    rows, cols = twelve_bit.shape[0] // 64, twelve_bit.shape[1] // 64
    top, left = (twelve_bit.shape[0] - rows * 64) // 2, (twelve_bit.shape[1] - cols * 64) // 2
    tiles = {(twelve_bit >> 2)[top + 64 * r:top + 64 * r + 64, left + 64 * c:left + 64 * c + 64]
             .tobytes() for r in range(rows) for c in range(cols)}
    assert len(tiles) == 2
    assert {e["image"].tobytes() for e in examples
            if e["source"].decode().endswith("deep12.tif")} == tiles
    assert sum(spec.splits.values()) == len(examples)


def test_impossible_settings_are_refused_before_running(tmp_path):
    with pytest.raises(SpecError, match="multiple of"):
        make_dataset.parse_args(["--input=x/*", f"--output={tmp_path}",
                                 "--scenario=high_res", "--patch_size=40"])
    with pytest.raises(SpecError, match="above 8"):
        make_dataset.parse_args(["--input=x/*", f"--output={tmp_path}",
                                 "--scenario=high_bit_depth", "--bit_depth=8"])
    config, beam_args = make_dataset.parse_args(
        ["--input=x/*", f"--output={tmp_path}", "--scenario=high_res", "--runner=DataflowRunner",
         "--project=p", "--setup_file=./setup.py"])
    assert config.factor == 2 and beam_args == ["--runner=DataflowRunner", "--project=p",
                                                "--setup_file=./setup.py"]


def test_local_runs_use_worker_processes_and_never_prism(monkeypatch):
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 2)
    default = pipeline_options([]).get_all_options()
    assert (default["runner"], default["direct_running_mode"]) == ("FnApiRunner", "multi_processing")
    given = pipeline_options(["--direct_num_workers=1", "--runner", "DataflowRunner"])
    assert given.get_all_options()["direct_num_workers"] == 1
    assert given.get_all_options()["runner"] == "DataflowRunner"


@pytest.mark.parametrize("beam_args, cores, mode", [
    ([], 2, "multi_processing"),
    ([], 1, "in_memory"),  # one worker: no process of its own
    (["--direct_num_workers=1"], 2, "in_memory"),
    (["--direct_num_workers", "1", "--direct_running_mode=multi_processing"], 2,
     "multi_processing"),  # the user's mode wins
    (["--direct_num_workers=3"], 1, "multi_processing"),
])
def test_a_single_local_worker_runs_in_the_runners_process(beam_args, cores, mode, monkeypatch):
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: cores)
    assert pipeline_options(beam_args).get_all_options()["direct_running_mode"] == mode


@pytest.mark.parametrize("files, megapixels, patch_size, cores, shards, workers", [
    (0, 2.4, 256, 2, 0, 1),
    (120, 2.4, 128, 2, 2, 1),  # shards: train 1 (259 MP), eval 1
    (120, 2.4, 256, 2, 3, 1),  # train 2 of 130 MP, eval 1: one worker may get both
    (120, 2.4, 256, 4, 3, 3),
    (528, 0.5, 256, 2, 9, 2),
    (1200, 2.4, 128, 2, 5, 2), (1200, 2.4, 128, 1, 5, 1),
    (1200, 2.4, 256, 16, 18, 9),  # 2 shards for the busiest of 9 workers, or of 16
])
def test_local_workers_are_those_the_megapixels_of_the_shards_repay(
        files, megapixels, patch_size, cores, shards, workers):
    config, _ = make_dataset.parse_args(["--input=x/*", "--output=o", "--scenario=high_res",
                                         f"--patch_size={patch_size}", "--patches_per_image=8"])
    sources = [megapixels] * files
    assert len(make_dataset.shard_megapixels(config, sources)) == shards
    assert sum(make_dataset.shard_megapixels(config, sources)) == pytest.approx(sum(sources))
    assert make_dataset.local_workers(config, sources, cores) == workers


@pytest.mark.parametrize("beam_args, chosen", [
    ([], True), (["--runner=DirectRunner"], True), (["--runner=DataflowRunner"], False),
    (["--direct_num_workers=2"], False), (["--direct_running_mode=multi_processing"], False),
])
def test_the_job_sizes_only_local_runs_the_user_did_not_size(beam_args, chosen, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    config, _ = make_dataset.parse_args([f"--input={tmp_path}/*", "--output=o",
                                         "--scenario=high_res"])
    flags = make_dataset.worker_flags(config, beam_args)
    assert flags == (["--direct_num_workers=1"] if chosen else [])


def test_group_into_shards_makes_every_shard_of_sorted_items():
    pipeline = test_pipeline.TestPipeline(options=pipeline_options(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    # A split never has more shards than examples: three at least in each.
    items = [("train", f"photo{i}") for i in range(7)] + [("eval", f"held_out{i}") for i in range(3)]
    shards = (pipeline
              | beam.Create(items)
              | tfds_writer.GroupIntoShards(
                  split_of=operator.itemgetter(0), key_of=operator.itemgetter(1),
                  examples_per_item=1, bytes_per_example=1, fixed=3)
              | beam.Map(lambda s: (s.split, s.index, s.num_shards, s.items)))
    expected = [(split, index, 3, tuple(sorted(
        i for i in items if i[0] == split and tfds_writer._shard_of(i[1], 3) == index)))
        for split in ("train", "eval") for index in range(3)]
    assert_that(shards, equal_to(expected))
    pipeline.run().wait_until_finish()


def _tfds_features(patch_size, bit_depth):
    """The records' features as TFDS objects: what the job's files must match."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(
            shape=(patch_size, patch_size, 3), dtype=container_dtype(bit_depth),
            encoding=tfds.features.Encoding.BYTES),
        "bit_depth": tfds.features.Scalar(dtype=np.int32),
        "source": tfds.features.Text(),
    })


@pytest.mark.parametrize("bit_depth", [8, 10, 16])
def test_examples_are_the_bytes_tfds_would_serialise(bit_depth):
    from tensorflow_datasets.core import example_serializer

    features = _tfds_features(16, bit_depth)
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    rng = np.random.default_rng(bit_depth)
    patch = rng.integers(0, 2 ** bit_depth, (16, 16, 3)).astype(features["image"].np_dtype)
    for source in ["photos/a.png", "gs://bucket/ünïcode/b.tif", ""]:
        example = {"image": patch, "bit_depth": bit_depth, "source": source}
        expected = serializer.get_tf_example(features.encode_example(example)).SerializeToString(
            deterministic=True)
        assert tfds_writer.example_bytes({"image": patch.tobytes(), "bit_depth": bit_depth,
                                          "source": source.encode()}) == expected


SHARD_INFOS = [tfds_writer.ShardInfo("train", 1, 2, 30, 3000),
               tfds_writer.ShardInfo("eval", 0, 1, 0, 0),  # every file a dead letter
               tfds_writer.ShardInfo("train", 0, 2, 12, 1200)]


@pytest.mark.parametrize("bit_depth, shards", [(8, SHARD_INFOS), (10, SHARD_INFOS), (8, [])])
def test_metadata_is_what_tfds_writes(bit_depth, shards, tmp_path):
    from tensorflow_datasets.core import dataset_info, naming, splits, utils

    name, description = "sandwich_high_res", "Patches of files matching ünïcode/*"
    template = naming.ShardedFileTemplate(data_dir=str(tmp_path), template=tfds_writer.TEMPLATE,
                                          dataset_name=name, filetype_suffix="tfrecord")
    split_infos = []
    for split in sorted({s.split for s in shards}):
        in_split = sorted((s for s in shards if s.split == split), key=lambda s: s.index)
        split_infos.append(splits.SplitInfo(
            name=split, shard_lengths=[s.num_examples for s in in_split],
            num_bytes=sum(s.num_bytes for s in in_split),
            filename_template=template.replace(split=split)))
    info = dataset_info.DatasetInfo(
        builder=dataset_info.DatasetIdentity(name=name, version=utils.Version("0.1.0"),
                                             data_dir=str(tmp_path), module_name=""),
        description=description, features=_tfds_features(64, bit_depth),
        split_dict=splits.SplitDict(split_infos))
    info.set_file_format("tfrecord")
    (tmp_path / "tfds").mkdir()
    (tmp_path / "ours").mkdir()
    info.write_to_directory(tmp_path / "tfds")
    tfds_writer.write_metadata(str(tmp_path / "ours"), name, "0.1.0",
                               make_dataset.features_json(64, bit_depth), description, shards)
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "tfds"))
    for filename in os.listdir(tmp_path / "tfds"):
        assert (tmp_path / "ours" / filename).read_bytes() == (
            tmp_path / "tfds" / filename).read_bytes(), filename


def test_shard_counts_follow_the_tfds_rule():
    from tensorflow_datasets.core.utils import shard_utils

    config = shard_utils.ShardConfig()
    for examples in (1, 3, 100, 5000, 10 ** 5, 10 ** 6, 10 ** 7):
        for bytes_per_example in (1, 1000, 196_608, 10 ** 6, 10 ** 8):
            size = examples * bytes_per_example
            expected = config.get_number_shards(size, examples, uses_precise_sharding=False)
            assert tfds_writer.number_of_shards(examples, size) == max(1, min(examples, expected))
    assert tfds_writer.number_of_shards(5, 10, fixed=3) == 3
    assert tfds_writer.number_of_shards(2, 10, fixed=3) == 2

r"""Turns image corpora into scenario datasets: TFRecord patches in the TFDS layout.

    python -m pipelines.make_dataset --input 'photos/*.png' --output data/high_res \
        --scenario high_res --patch_size 256 --patches_per_image 8

    sandwich-dataset --input 'gs://bucket/photos/*' --output gs://bucket/data/hbd \
        --scenario high_bit_depth --bit_depth 10 \
        --runner DataflowRunner --project P --region R \
        --temp_location gs://bucket/tmp --setup_file ./setup.py

Every file the glob matches is read and decoded to sRGB (PNG and TIFF of 8
to 16 bits, JPEG, WebP, AVIF; see `sandwich.image_io`), fitted to the
scenario's bit depth, and cut into patches at full resolution; whole
sources go to `train` or `eval` by a hash of their path. The output
directory then holds the shards, `dataset_info.json`/`features.json` (so
`tfds.builder_from_directory(output)` reads it), `dataset_spec.json` (the
`sandwich.specs.DatasetSpec` the trainer checks) and `dead_letters.jsonl`:
every file that could not be used, with the reason. The job ends by
printing the account: sources in = used + dead letters.

Only file names cross a shuffle: each source goes to a shard of its split by
a hash of its path, and the worker that writes a shard reads, decodes and
cuts that shard's files itself, so no pixel travels between workers. A
source's patches are thus in one shard, spread through it in the order of
their hashed keys, and the job runs as many files at once as there are
shards: TFDS's rule gives one shard per 64 MiB - 1 GiB of patches;
`--num_shards` sets more for a small dataset on many workers.

Flags not listed by `--help` go to Beam's PipelineOptions; with no `--runner`
the job runs locally (see `beam_options`) on as many workers as the
megapixels of its shards repay the start-up of, at most one per core
(`local_workers`): a corpus of a few shards runs in the launcher's own
process.
"""
from __future__ import annotations

import dataclasses
import operator
import sys

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import sandwich
from pipelines import batch_jobs, beam_options, jobs, process_exit, tfds_writer
from pipelines import paths
from pipelines import patches as patch_lib
from pipelines.dead_letters import DEAD_LETTERS, Attempt, Rejected, TryFlatMap
from sandwich.image_io import DEFAULT_MAX_PIXELS, decode_image, fit_bit_depth
from sandwich.specs import (DATASET_SPEC_FILE, DEFAULT_BIT_DEPTH, DEFAULT_FACTOR, SCENARIOS,
                            DatasetSpec, container_dtype)


@dataclasses.dataclass(frozen=True)
class Config(jobs.JobConfig):
    """The job's own flags, validated; everything the workers need to know."""

    scenario: str
    bit_depth: int
    factor: int
    patch_size: int
    patches_per_image: int
    patch_mode: str
    eval_fraction: float
    seed: int
    max_pixels: int
    num_shards: int
    provenance: str

    @property
    def dataset_name(self) -> str:
        return f"sandwich_{self.scenario}"

    @property
    def patch_bytes(self) -> int:
        """The bytes of one patch's pixels, as a record holds them."""
        return self.patch_size ** 2 * 3 * np.dtype(container_dtype(self.bit_depth)).itemsize

    def spec(self, splits: dict[str, int], sources: dict[str, int]) -> DatasetSpec:
        return DatasetSpec(
            scenario=self.scenario, bit_depth=self.bit_depth, patch_size=self.patch_size,
            factor=self.factor, splits=splits, sources=sources, provenance=self.provenance,
            seed=self.seed, version=sandwich.__version__, patch_encoding=PATCH_ENCODING)


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """A matched source file: its path, its key (the path relative to the
    glob's base) and the split it goes to. All that crosses a shuffle."""

    path: str
    key: str
    split: str


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """A decoded source file: RGB pixels below 2**bit_depth."""

    file: SourceFile
    pixels: np.ndarray
    bit_depth: int


# Patches are stored as their raw bytes: a PNG encode cost about 10 ms a
# patch, most of the job's time, to save half of the bytes of
# photographs (docs/formats.md). TFDS reads both kinds back by itself.
PATCH_ENCODING = "raw"
NAMESPACE = "make_dataset"  # the job's Beam counters


def features_json(patch_size: int, bit_depth: int) -> dict:
    """`features.json` of the records the trainer reads (docs/formats.md,
    dataset spec): a TFDS `FeaturesDict` of the patch (a `Tensor` stored as
    its raw bytes), its bit depth (a `Scalar`) and its source path (`Text`).

    Written as TFDS writes it (a test checks it against TFDS's), so that
    workers need neither TensorFlow nor TFDS; they serialise the records
    with `tfds_writer.example_bytes`.
    """
    features = "tensorflow_datasets.core.features."
    return {"pythonClassName": features + "features_dict.FeaturesDict", "featuresDict": {
        "features": {
            "image": {"pythonClassName": features + "tensor_feature.Tensor", "tensor": {
                "dtype": np.dtype(container_dtype(bit_depth)).name, "encoding": "bytes",
                "shape": {"dimensions": [str(patch_size), str(patch_size), "3"]}}},
            "bit_depth": {"pythonClassName": features + "scalar.Scalar", "tensor": {
                "dtype": "int32", "encoding": "none", "shape": {}}},
            "source": {"pythonClassName": features + "text_feature.Text", "text": {}}}}}


class NameSource:
    """FileMetadata -> SourceFile; names that could escape the output are `Rejected`."""

    def __init__(self, config: Config):
        self._config = config
        self._base = paths.input_base(config.input)

    def __call__(self, metadata):
        key = paths.relative_path(metadata.path, self._base)
        yield SourceFile(metadata.path, key, patch_lib.split_of(key, self._config.eval_fraction))


class DecodeSource:
    """SourceFile -> DatasetSource; bad files raise `ImageDecodeError` (a
    `Rejected`) or `OSError`. Sources whose transparency was dropped are
    counted (`batch_jobs.ALPHA_DROPPED`); it runs on the bundle's thread."""

    def __init__(self, config: Config):
        self._config = config
        self._count_alpha_dropped = batch_jobs.CountAlphaDropped(NAMESPACE)

    def __call__(self, file: SourceFile):
        with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            image = decode_image(f.read(), max_pixels=self._config.max_pixels)
        self._count_alpha_dropped(image)
        yield DatasetSource(file, image.pixels, image.bit_depth)


class FitScenario:
    """DatasetSource -> itself at the dataset's bit depth; rejects what cannot fit."""

    def __init__(self, config: Config):
        self._config = config

    def __call__(self, source: DatasetSource):
        height, width, _ = source.pixels.shape
        patch_lib.check_size(height, width, self._config.patch_size)
        pixels = fit_bit_depth(source.pixels, source.bit_depth, self._config.bit_depth)
        yield dataclasses.replace(source, pixels=pixels, bit_depth=self._config.bit_depth)


class CutPatches:
    """DatasetSource -> (key, serialised example of `features_json`) of each of its patches."""

    def __init__(self, config: Config):
        self._config = config

    def __call__(self, source: DatasetSource):
        c, file = self._config, source.file
        height, width, _ = source.pixels.shape
        origins = patch_lib.crop_origins(
            height, width, c.patch_size, c.patches_per_image, c.patch_mode, c.seed, file.key)
        for index, (y, x) in enumerate(origins):
            patch = source.pixels[y:y + c.patch_size, x:x + c.patch_size]
            yield (patch_lib.example_key(c.seed, file.key, index), tfds_writer.example_bytes(
                {"image": patch.tobytes(), "bit_depth": source.bit_depth,
                 "source": file.path.encode()}))


@dataclasses.dataclass(frozen=True)
class WrittenShard:
    """A written shard's part of the account: its `ShardInfo`, the source
    files it was given, and how many of them were cut into patches (the
    others left as dead letters)."""

    info: tfds_writer.ShardInfo
    files: int
    used: int


class CutAndWriteShard(beam.DoFn):
    """`tfds_writer.Shard` of SourceFiles -> the `WrittenShard` it became.

    Every file of the shard is read, decoded, fitted and cut here, in one
    worker, so only file names cross the shuffle before it and no pixel
    ever travels between workers (on the local runner, every element
    between steps passes through the runner process). Side output: the
    dead letters of the files that could not be used.
    """

    def __init__(self, config: Config):
        self._config = config
        path_of = operator.attrgetter("path")
        self._decode = Attempt(DecodeSource(config), step="decode", path_of=path_of,
                               errors=(Rejected, OSError))
        self._fit = Attempt(FitScenario(config), step="fit",
                            path_of=lambda source: source.file.path, errors=(Rejected,))
        self._cut = CutPatches(config)

    def setup(self):
        process_exit.freeze_heap_at_exit()

    def process(self, shard: tfds_writer.Shard):
        examples, used = [], 0
        for file in shard.items:
            sources, letter = self._decode(file)
            if not letter:
                sources, letter = self._fit(sources[0])
            if letter:
                yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
                continue
            used += 1
            examples.extend(self._cut(sources[0]))
        info = tfds_writer.write_shard(self._config.output, self._config.dataset_name, shard,
                                       examples)
        yield WrittenShard(info, len(shard.items), used)


def _finalize(_, config: Config, shards: list[WrittenShard], unnamed: list, dead_letters: list):
    """Writes the dead letters, the TFDS metadata and then the dataset spec,
    the last file of a run; returns the spec's JSON.

    The account comes from the shards and the dead letters themselves:
    every matched file was either refused its name (`unnamed`) or given to
    a shard, where it was used or became one of `dead_letters`.
    """
    lines = sorted(letter.to_json() + "\n" for letter in [*unnamed, *dead_letters])
    batch_jobs.write_atomically(config.dead_letter_path, "".join(lines).encode())
    tfds_writer.write_metadata(
        config.output, config.dataset_name, sandwich.__version__,
        features_json(config.patch_size, config.bit_depth),
        f"Sandwiched-compression {config.scenario} patches. {config.provenance}",
        [s.info for s in shards])
    splits = {split: sum(s.info.num_examples for s in shards if s.info.split == split)
              for split in patch_lib.SPLITS}
    sources = {"matched": sum(s.files for s in shards) + len(unnamed),
               "used": sum(s.used for s in shards), "dead_letters": len(lines)}
    sources.update({split: sum(s.used for s in shards if s.info.split == split)
                    for split in patch_lib.SPLITS})
    spec = config.spec(splits, sources)
    batch_jobs.write_atomically(config.path(DATASET_SPEC_FILE), spec.to_json().encode())
    return spec.to_json()


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps.

    The closing step reads the shards' accounts and the dead letters as
    side inputs of a single element, so the run ends in one more step
    rather than in a count, a combine and a text sink of its own for each;
    on the local runner every step costs a bundle round trip to a worker.
    """
    files = pipeline | "MatchSources" >> fileio.MatchFiles(config.input)
    named, unnamed = files | "NameSources" >> TryFlatMap(
        NameSource(config), step="decode", path_of=operator.attrgetter("path"))
    written = (named
               | "GroupIntoShards" >> tfds_writer.GroupIntoShards(
                   split_of=operator.attrgetter("split"), key_of=operator.attrgetter("key"),
                   examples_per_item=config.patches_per_image,
                   bytes_per_example=config.patch_bytes, fixed=config.num_shards)
               | "CutAndWriteShards" >> beam.ParDo(CutAndWriteShard(config)).with_outputs(
                   DEAD_LETTERS, main="shards"))
    _ = (pipeline
         | "Finish" >> beam.Create([None])
         | "WriteMetadata" >> beam.Map(
             _finalize, config, shards=pvalue.AsList(written.shards),
             unnamed=pvalue.AsList(unnamed), dead_letters=pvalue.AsList(written[DEAD_LETTERS])))


def parse_args(argv=None) -> tuple[Config, list[str]]:
    parser = jobs.job_parser(
        __doc__, output_help="dataset directory, local or gs://",
        input_help="glob of source images, local or gs://; a directory: all files under it")
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument("--bit_depth", type=int, default=None,
                        help="bits per sample of the dataset (8 for high_res and gray, 10 for "
                             "high_bit_depth if not given); deeper sources are rounded "
                             "down, shallower ones dead-lettered")
    parser.add_argument("--factor", type=int, default=None,
                        help="downsampling factor of high_res (default 2) or gray (default "
                             "1); high_bit_depth uses 1")
    parser.add_argument("--patch_size", type=int, default=256,
                        help="patch side in source pixels; a multiple of 8 x factor")
    parser.add_argument("--patches_per_image", type=int, default=8,
                        help="patches cut from each source")
    parser.add_argument("--patch_mode", choices=patch_lib.PATCH_MODES, default="random",
                        help="random crops, or tiles of a grid (at most patches_per_image)")
    parser.add_argument("--eval_fraction", type=float, default=0.1,
                        help="share of sources (not patches) in the eval split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch positions")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are dead-lettered as decompression bombs")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="shards per split, also the job's parallelism; 0 sizes them as "
                             "TFDS does (64 MiB - 1 GiB)")
    parser.add_argument("--provenance", default="",
                        help="where the pixels come from, recorded in the spec")
    args, beam_args = parser.parse_known_args(argv)
    if args.patches_per_image < 1:
        parser.error("--patches_per_image must be at least 1")
    if not 0 <= args.eval_fraction <= 1:
        parser.error("--eval_fraction must be in [0, 1]")
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    config = Config(
        input=args.input, output=args.output.rstrip("/"), scenario=args.scenario,
        bit_depth=args.bit_depth or DEFAULT_BIT_DEPTH[args.scenario],
        factor=(1 if args.scenario == "high_bit_depth"
                else args.factor or DEFAULT_FACTOR[args.scenario]),
        patch_size=args.patch_size, patches_per_image=args.patches_per_image,
        patch_mode=args.patch_mode, eval_fraction=args.eval_fraction, seed=args.seed,
        max_pixels=args.max_pixels, num_shards=args.num_shards,
        provenance=args.provenance or f"files matching {args.input}")
    config.spec({}, {})  # Refuses an impossible scenario before any work is done.
    return config, beam_args


def account(spec: DatasetSpec, result, dead_letter_path: str) -> str:
    """The closing report: where every source went."""
    s = spec.sources
    by_step = batch_jobs.dead_letters_by_step(result)
    steps = ", ".join(f"{n} {by_step[n]}" for n in sorted(by_step) if n != "total")
    alpha = batch_jobs.counters(result, NAMESPACE).get(batch_jobs.ALPHA_DROPPED, 0)
    return (f"sources: {s['matched']} in = {s['used']} used (train {s['train']}, "
            f"eval {s['eval']}) + {s['dead_letters']} dead letters"
            f"{f' ({steps})' if steps else ''} -> {dead_letter_path}"
            f"{batch_jobs.alpha_line(alpha)}\n"
            f"patches: train {spec.splits['train']}, eval {spec.splits['eval']} "
            f"({spec.patch_size}x{spec.patch_size}, {spec.bit_depth}-bit)")


# The dataset job's work on the local runner, single-threaded in a worker and
# in the runner's process alike, from `benchmarks/make_dataset_throughput.py
# --photos 120 --megapixels 2.4` (PNGs) on 2 cores: 0.036 s a source
# megapixel in a worker process (its steady state), 0.031 s in the runner's
# own. A worker process adds 1.8 s of CPU before its first shard (a one-photo
# run: 5.6 s of CPU with two against 1.9 in the runner's process), 2 s of
# wall time for one and 3.6-5 s for two on 2 cores other work shared; taken
# as 2.5 s, two on free cores. A JPEG decodes in about a sixth of a PNG's
# time, so for JPEGs the rule errs toward processes, by at most their start.
LOCAL_COST = beam_options.LocalCost(start_seconds=2.5, seconds_per_megapixel=0.036,
                                    in_process_seconds_per_megapixel=0.031)


def shard_megapixels(config: Config, megapixels: list[float]) -> list[float]:
    """The expected source megapixels of every shard the job will make of
    files of `megapixels`: each split's share of the total (by
    `eval_fraction`; a file's split is a hash of its name), spread evenly
    over the split's shards (TFDS's rule, from the split's file count)."""
    files, total = len(megapixels), sum(megapixels)
    eval_files = round(files * config.eval_fraction)
    shards = []
    for split_files, share in ((files - eval_files, 1 - config.eval_fraction),
                               (eval_files, config.eval_fraction)):
        if split_files:
            count = tfds_writer.shards_of_items(split_files, config.patches_per_image,
                                                config.patch_bytes, config.num_shards)
            shards += [total * share / count] * count
    return shards


def local_workers(config: Config, megapixels: list[float], cores: int) -> int:
    """How many workers a local run of sources of `megapixels` uses:
    `beam_options.local_processes` of its shards, since a shard is the
    unit of parallel work (its worker reads, decodes and cuts all its
    files); 1 runs them in the runner's process."""
    return beam_options.local_processes(shard_megapixels(config, megapixels), cores,
                                        LOCAL_COST)


def worker_flags(config: Config, beam_args: list[str]) -> list[str]:
    """`--direct_num_workers` of `local_workers` for the files the input
    matches, when the job runs locally and the user sized no workers; else none."""
    return beam_options.local_worker_flags(beam_args, lambda: local_workers(
        config, jobs.source_megapixels(config.input), beam_options.usable_cores()))


def run(argv=None, save_main_session=False, test_pipeline=None) -> DatasetSpec:
    """Runs the job to completion, prints the account and returns the spec it wrote."""
    config, beam_args = parse_args(argv)
    beam_args = worker_flags(config, beam_args) + beam_args
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    with FileSystems.open(config.path(DATASET_SPEC_FILE)) as f:
        spec = DatasetSpec.from_json(f.read())
    print(account(spec, result, config.dead_letter_path))
    s = spec.sources
    if s["matched"] != s["used"] + s["dead_letters"]:
        raise RuntimeError(f"sources do not add up: {s}")
    return spec


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.make_dataset`, not from their own __main__.
    from pipelines import make_dataset

    sys.exit(make_dataset.main())

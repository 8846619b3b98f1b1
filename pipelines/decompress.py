r"""Batch decompression: sandwich bottleneck JPEGs -> PNGs at the source's size and bit depth.

    python -m pipelines.decompress --input 'bits/**/*.jpg' --model export/ --output restored/

    sandwich-decompress --input 'gs://bucket/bits/**.jpg' --model gs://bucket/export \
        --output gs://bucket/restored --runner DataflowRunner ...

Each bottleneck's comment segment (`bottleneck_format`) names the model that
made it and the source's size and bit depth. `--model` is the model set the
bottlenecks came from (as `pipelines.compress` takes it: one export dir,
several comma-separated, or a directory of them), loaded once per worker
process. A bottleneck of a model outside the set is refused (a
post-processor decodes only its own pre-processor's bottlenecks), as is any
file that is not a complete sandwich bottleneck; each goes to
`dead_letters.jsonl` with the reason.

Two kinds of file that a target-mode compression writes
(`codec.rate_control`) need no model: a fallback (plain JPEG, Pillow's or
jpegli's) is decoded as any viewer decodes it, and its pixels, unchanged,
are the PNG's; an identity file (a scenario's baseline) is decoded and run through its
scenario's fixed steps (`bottleneck_format.identity_reconstruction`: the
upsampling of its factor, the scale back of its bit depth, nothing at x1
and 8 bits), the very function compress measured it with, whichever
scenario it names, a model of it in the set or not.
Every other bottleneck is decoded, run through its model's post-processor
(RunInference, in tiles, told the step the file was coded at) and written to
`<output>/<relative path without .jpg>`, as a PNG: 8-bit, or 16-bit with an
`sBIT` chunk recording the true depth for high-bit-depth sources
(`a.png.jpg` -> `a.png`, `b.tif.jpg` -> `b.tif.png`).

Each PNG records, in a `tEXt` chunk, the model and the bottleneck (size and
mtime) it came from; `manifest.jsonl` lists every PNG; reruns skip complete
PNGs of this model and bottleneck and redo the others. Two bottlenecks that
would restore to one name (`x.jpg`, `x.png.jpg`) are never both written: all
but the first by path are dead letters. The header is checked against the
model's spec and the bottleneck's own size, and a claimed source above
`--max_pixels` is refused before anything is allocated. The job ends by
printing the account, inputs = outputs + dead letters.
"""
from __future__ import annotations

import dataclasses
import io
import json
import struct
import sys

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference
from PIL import Image

from codec import api, bottleneck_format, exported, shipped
from codec import precision as codec_precision
from pipelines import batch_jobs, beam_options, jobs, model_handler
from pipelines.dead_letters import Rejected, TryFlatMap
from pipelines.paths import input_pattern
from sandwich.image_io import (DEFAULT_MAX_PIXELS, encode_png16, insert_chunk_after_ihdr,
                               png_chunks)
from sandwich.specs import ModelSpec

NAMESPACE = "decompress"
_PNG_END = b"IEND\xaeB`\x82"
# The tEXt keyword under which a PNG records the model and bottleneck it came from.
_PROVENANCE_KEY = b"sandwich"
# zlib's fastest level (OpenCV's default too). Pillow's and libpng's default,
# 6, took 40% of the job's CPU with the default x2 model, 4x level 1's time,
# for files 11% smaller (docs/architecture.md); the pixels are the same.
DEFAULT_PNG_COMPRESSION = 1


@dataclasses.dataclass(frozen=True)
class Config(jobs.JobConfig):
    """The job's own flags, validated, and the model set's specs by model id."""

    models: tuple[str, ...]
    specs: dict[str, ModelSpec]
    tile: int
    halo: int
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Of the job on one machine, which share its cores (beam_options).
    worker_processes: int = 0
    png_compression: int = DEFAULT_PNG_COMPRESSION
    precision: str = codec_precision.AUTO

    def output_path(self, bottleneck_path: str) -> str:
        return batch_jobs.output_path(bottleneck_path, self.input, self.output, png_name)


def png_name(relative: str) -> str:
    """`a.png.jpg` -> `a.png`, `b.tif.jpg` -> `b.tif.png`: back to the source's name
    where it was a PNG, without ever giving two bottlenecks one output."""
    suffix = jobs.BOTTLENECK_SUFFIX
    stem = relative[:-len(suffix)] if relative.endswith(suffix) else relative
    return stem if stem.lower().endswith(".png") else stem + ".png"


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """A decoded bottleneck and its header; `size` is the source's (h, w)."""

    path: str
    header: bottleneck_format.Header
    pixels: np.ndarray
    stamp: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.header.height, self.header.width

    @property
    def qstep(self) -> float:
        return self.header.qstep


@dataclasses.dataclass(frozen=True)
class ReconstructionRecord:
    """One line of the manifest: a reconstruction and the bottleneck it came from."""

    bottleneck: str
    output: str
    height: int
    width: int
    bit_depth: int
    model_id: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def encode_png(pixels: np.ndarray, bit_depth: int, provenance: dict | None = None, *,
               compression: int = DEFAULT_PNG_COMPRESSION) -> bytes:
    """An 8-bit PNG, or a 16-bit one (`sBIT` = `bit_depth`) above 8 bits, at
    zlib level `compression` (0-9); with `provenance` as JSON in a `tEXt`
    chunk right after the header."""
    if bit_depth > 8:
        png = encode_png16(pixels, bit_depth, compression=compression)
    else:
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=compression)
        png = buffer.getvalue()
    if provenance is None:
        return png
    text = _PROVENANCE_KEY + b"\0" + json.dumps(provenance, sort_keys=True).encode("latin-1")
    return insert_chunk_after_ihdr(png, b"tEXt", text)


def _provenance(png_head: bytes) -> dict | None:
    """The provenance JSON of a PNG this job wrote, from its first bytes, or None."""
    for kind, body in png_chunks(png_head):
        if kind == b"tEXt" and body.startswith(_PROVENANCE_KEY + b"\0"):
            try:
                return json.loads(body[len(_PROVENANCE_KEY) + 1:])
            except ValueError:
                return None
    return None


class CompletedPng:
    """A PNG that ends with its IEND chunk was renamed into place whole. It
    is kept only if its provenance (`tEXt`) names this model and this very
    bottleneck (size and mtime); size and depth are read from the header
    chunks without decoding the pixels."""

    def __init__(self, config: Config):
        # A tuple: an untrusted id may be unhashable JSON (a list).
        self._model_ids = (*config.specs, *bottleneck_format.RESERVED_IDS)

    def __call__(self, bottleneck, existing: batch_jobs.ExistingOutput):
        head = existing.head
        if not (head.startswith(b"\x89PNG") and existing.tail.endswith(_PNG_END)):
            return None
        provenance = _provenance(head)
        if (not isinstance(provenance, dict) or set(provenance) != {"model_id", "bottleneck"}
                or provenance["model_id"] not in self._model_ids
                or provenance["bottleneck"] != batch_jobs.source_stamp(bottleneck)):
            return None
        chunks = dict(png_chunks(head))
        if len(chunks.get(b"IHDR", b"")) < 13:
            return None
        width, height, bit_depth = struct.unpack(">IIB", chunks[b"IHDR"][:9])
        if chunks.get(b"sBIT"):
            bit_depth = chunks[b"sBIT"][0]
        return ReconstructionRecord(bottleneck.path, existing.path, height, width, bit_depth,
                                    provenance["model_id"])


class ReadBottleneck:
    """ReadableFile -> Bottleneck of a model of the set, a fallback (plain
    JPEG or jpegli) or an identity file of a valid scenario; anything else
    is a `BottleneckError` (a `Rejected`)."""

    def __init__(self, config: Config):
        self._specs, self._max_pixels = config.specs, config.max_pixels

    def __call__(self, readable):
        header, pixels = bottleneck_format.decode(readable.read(), max_pixels=self._max_pixels)
        header.check_model(self._specs)
        yield Bottleneck(readable.metadata.path, header, pixels,
                         batch_jobs.source_stamp(readable.metadata))


class WritePng:
    """PredictionResult(Bottleneck, reconstruction) -> PNG written atomically ->
    ReconstructionRecord;
    a failed write is an `OSError`, so it makes a dead letter. It counts
    nothing (`batch_jobs.WriteOutputs`)."""

    def __init__(self, config: Config):
        self._config = config

    def __call__(self, result):
        bottleneck, header = result.example, result.example.header
        output = self._config.output_path(bottleneck.path)
        provenance = {"model_id": header.model_id, "bottleneck": bottleneck.stamp}
        batch_jobs.write_atomically(output, encode_png(
            result.inference, header.bit_depth, provenance,
            compression=self._config.png_compression))
        yield ReconstructionRecord(bottleneck.path, output, header.height, header.width,
                                   header.bit_depth, header.model_id)


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done, unnamed = batch_jobs.read_files(
        pipeline, config.input, NAMESPACE, config.output_path,
        batch_jobs.SkipCompleted(NAMESPACE, config.output_path, CompletedPng(config)))
    bottlenecks, unreadable = files | "ReadBottleneck" >> TryFlatMap(
        ReadBottleneck(config), step="read_bottleneck",
        path_of=jobs.path_of_file, errors=(Rejected, OSError))
    sandwiches, fallbacks = bottlenecks | "SplitFallbacks" >> beam.Partition(
        lambda bottleneck, _: int(bottleneck.header.is_fallback), 2)
    reconstructions = (
        sandwiches | "Postprocess" >> RunInference(model_handler.PostprocessHandler(
            config.models, tile=config.tile, halo=config.halo,
            worker_processes=config.worker_processes, precision=config.precision)),
        fallbacks | "DecodedAsIs" >> beam.Map(lambda fallback: PredictionResult(
            fallback, api.reconstruct({}, fallback.header, fallback.pixels)))) | "AllReconstructions" >> beam.Flatten()
    # The PNG writer (zlib and the file writes release the GIL) runs beside
    # the post-processor of the next images.
    written, unwritten = reconstructions | "Write" >> batch_jobs.WriteOutputs(
        NAMESPACE, WritePng(config), errors=(OSError,),
        threads=model_handler.writer_threads(config.worker_processes))
    _ = ((written, done)
         | "AllOutputs" >> beam.Flatten()
         | "WriteManifest" >> batch_jobs.WriteJsonLines(config.manifest_path))
    _ = ((unnamed, unreadable, unwritten)
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> batch_jobs.WriteJsonLines(config.dead_letter_path))


def parse_args(argv=None) -> tuple[Config, list[str]]:
    suffix = jobs.BOTTLENECK_SUFFIX
    parser = jobs.job_parser(
        __doc__, input_type=lambda value: input_pattern(value, "**" + suffix),
        input_help=f"glob of bottleneck JPEGs, local or gs://; a directory: all **{suffix} under it",
        output_help="PNG directory, local or gs://")
    parser.add_argument("--model", default=shipped.EVERY_MODEL,
                        help="export dir of the model that made them, or the model set: several, "
                             "comma-separated, or a directory of export dirs; by default every "
                             "model that ships with the package (codec.shipped)")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="bottlenecks claiming a larger source are dead-lettered as "
                             "decompression bombs")
    parser.add_argument("--png_compression", type=int, choices=range(10),
                        default=DEFAULT_PNG_COMPRESSION, metavar="0-9",
                        help="zlib level of the PNGs: 1 is the fastest that compresses, "
                             "9 the smallest files; the pixels are the same")
    jobs.add_model_flags(parser)
    jobs.add_precision_flag(parser)
    args, beam_args = parser.parse_known_args(argv)
    beam_args = beam_options.model_job_args(beam_args, lambda: jobs.count_files(args.input))
    models = model_handler.export_dirs(args.model)
    specs = model_handler.read_specs(models)
    args.tile, args.halo = exported.tile_layout([exported.layout_grid(s) for s in specs.values()],
                                                     args.tile, args.halo)
    return Config(args.input, args.output.rstrip("/"), models, specs,
                  args.tile, args.halo, args.max_pixels,
                  beam_options.worker_processes(beam_args), args.png_compression,
                  args.precision), beam_args


def run(argv=None, save_main_session=False, test_pipeline=None) -> dict:
    """Runs the job to completion, prints the account and returns the counts."""
    config, beam_args = parse_args(argv)
    result = jobs.run_pipeline(build, config, beam_args, save_main_session, test_pipeline)
    counts = batch_jobs.counters(result, NAMESPACE)
    print(batch_jobs.account(counts, config.dead_letter_path))
    return counts


def main(argv=None) -> int:
    return jobs.main(run, argv)


if __name__ == "__main__":
    # Run under the package's name, so that worker processes unpickle the
    # classes above from `pipelines.decompress`, not from their own __main__.
    from pipelines import decompress

    sys.exit(decompress.main())

r"""Batch decompression: sandwich bottleneck JPEGs -> PNGs at the source's size and bit depth.

    python -m pipelines.decompress --input 'bits/**/*.jpg' --model export/ --output restored/

    sandwich-decompress --input 'gs://bucket/bits/**.jpg' --model gs://bucket/export \
        --output gs://bucket/restored --runner DataflowRunner ...

Each bottleneck's comment segment (`bottleneck_format`) names the model that
made it and the source's size and bit depth. A bottleneck of another model
is refused (a post-processor decodes only its own pre-processor's
bottlenecks), as is any file that is not a complete sandwich bottleneck;
each goes to `dead_letters.jsonl` with the reason. The others are decoded,
run through the post-processor (RunInference, in tiles) and written to
`<output>/<relative path without .jpg>`, as a PNG: 8-bit, or 16-bit with an
`sBIT` chunk recording the true depth for high-bit-depth sources
(`a.png.jpg` -> `a.png`, `b.tif.jpg` -> `b.tif.png`).

`manifest.jsonl` lists every PNG; reruns skip complete PNGs, and the job
ends by printing the account, inputs = outputs + dead letters.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import struct
import sys

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference
from PIL import Image

from pipelines import batch_jobs, bottleneck_format, model_handler
from pipelines.beam_options import pipeline_options
from pipelines.compress import DEAD_LETTER_FILE, MANIFEST_FILE, SUFFIX, add_model_flags
from pipelines.dead_letters import Rejected, TryFlatMap, WriteDeadLetters
from pipelines.patches import input_pattern
from sandwich import logs, tiling
from sandwich.image_io import encode_png16
from sandwich.specs import ModelSpec

NAMESPACE = "decompress"
_PNG_END = b"IEND\xaeB`\x82"


@dataclasses.dataclass(frozen=True)
class Config:
    input: str
    output: str
    model: str
    spec: ModelSpec
    tile: int
    halo: int

    @property
    def manifest_path(self) -> str:
        return FileSystems.join(self.output, MANIFEST_FILE)

    @property
    def dead_letter_path(self) -> str:
        return FileSystems.join(self.output, DEAD_LETTER_FILE)

    def output_path(self, bottleneck_path: str) -> str:
        return batch_jobs.output_path(bottleneck_path, self.input, self.output, png_name)


def png_name(relative: str) -> str:
    """`a.png.jpg` -> `a.png`, `b.tif.jpg` -> `b.tif.png`: back to the source's name
    where it was a PNG, without ever giving two bottlenecks one output."""
    stem = relative[:-len(SUFFIX)] if relative.endswith(SUFFIX) else relative
    return stem if stem.lower().endswith(".png") else stem + ".png"


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """A decoded bottleneck and its header; `size` is the source's (h, w)."""

    path: str
    header: bottleneck_format.Header
    pixels: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.header.height, self.header.width


@dataclasses.dataclass(frozen=True)
class Record:
    """One line of the manifest: a reconstruction and the bottleneck it came from."""

    bottleneck: str
    output: str
    height: int
    width: int
    bit_depth: int
    model_id: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def encode_png(pixels: np.ndarray, bit_depth: int) -> bytes:
    """An 8-bit PNG, or a 16-bit one (`sBIT` = `bit_depth`) above 8 bits."""
    if bit_depth > 8:
        return encode_png16(pixels, bit_depth)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


class CompletedPng:
    """A PNG that ends with its IEND chunk was renamed into place whole; its
    size and depth are read from the header (IHDR, then the `sBIT` chunk that
    `encode_png16` puts right after it) without decoding the pixels."""

    def __init__(self, config: Config):
        self._model_id = config.spec.model_id

    def __call__(self, bottleneck: str, existing: batch_jobs.ExistingOutput):
        head = existing.head
        if not (head.startswith(b"\x89PNG") and existing.tail.endswith(_PNG_END)):
            return None
        width, height, bit_depth = struct.unpack(">IIB", head[16:25])
        if head[37:41] == b"sBIT":
            bit_depth = head[41]
        return Record(bottleneck, existing.path, height, width, bit_depth, self._model_id)


class ReadBottleneck:
    """ReadableFile -> Bottleneck of this model; anything else is `Rejected`."""

    def __init__(self, config: Config):
        self._model_id = config.spec.model_id
        self._jpeg_mode = config.spec.jpeg_mode

    def __call__(self, readable):
        try:
            header, pixels = bottleneck_format.decode(readable.read())
        except bottleneck_format.BottleneckError as e:
            raise Rejected(e.reason) from e
        if header.model_id != self._model_id:
            raise Rejected(f"made by model {header.model_id!r}, not by this model "
                           f"{self._model_id!r}: its post-processor cannot decode it")
        if header.jpeg_mode != self._jpeg_mode:
            raise Rejected(f"coded in JPEG mode {header.jpeg_mode!r}; this model's "
                           f"post-processor was trained for {self._jpeg_mode!r}")
        yield Bottleneck(readable.metadata.path, header, pixels)


class WritePng(beam.DoFn):
    """PredictionResult(Bottleneck, reconstruction) -> PNG written atomically -> Record."""

    def __init__(self, config: Config):
        self._config = config
        self._written = Metrics.counter(NAMESPACE, batch_jobs.WRITTEN)

    def process(self, result):
        bottleneck, header = result.example, result.example.header
        output = self._config.output_path(bottleneck.path)
        batch_jobs.write_atomically(output, encode_png(result.inference, header.bit_depth))
        self._written.inc()
        yield Record(bottleneck.path, output, header.height, header.width, header.bit_depth,
                     header.model_id)


def build(pipeline: beam.Pipeline, config: Config) -> None:
    """The job as a sentence of named steps."""
    files, done = batch_jobs.read_files(pipeline, config.input, batch_jobs.SkipCompleted(
        NAMESPACE, config.output_path, CompletedPng(config)))
    bottlenecks, dead_letters = files | "ReadBottleneck" >> TryFlatMap(
        ReadBottleneck(config), step="read_bottleneck",
        path_of=lambda readable: readable.metadata.path, errors=(Rejected, OSError))
    written = (bottlenecks
               | "Postprocess" >> RunInference(model_handler.PostprocessHandler(
                   config.model, tile=config.tile, halo=config.halo))
               | "EncodeAndWrite" >> beam.ParDo(WritePng(config)))
    _ = ((written, done)
         | "AllOutputs" >> beam.Flatten()
         | "WriteManifest" >> batch_jobs.WriteJsonLines(config.manifest_path))
    _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(config.dead_letter_path)


def parse_args(argv=None) -> tuple[Config, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     parents=[logs.flag()])
    parser.add_argument("--input", required=True, type=lambda value: input_pattern(value, "**" + SUFFIX),
                        help=f"glob of bottleneck JPEGs, local or gs://; a directory: all **{SUFFIX} under it")
    parser.add_argument("--model", required=True, help="export dir of the model that made them")
    parser.add_argument("--output", required=True, help="PNG directory, local or gs://")
    add_model_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    spec = model_handler.read_spec(args.model)
    tiling.check_layout(args.tile, args.halo, spec.factor)
    return Config(args.input, args.output.rstrip("/"), args.model.rstrip("/"), spec,
                  args.tile, args.halo), beam_args


def run(argv=None) -> dict:
    """Runs the job to completion, prints the account and returns the counts."""
    config, beam_args = parse_args(argv)
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    counts = batch_jobs.counters(result, NAMESPACE)
    print(batch_jobs.account(counts, config.dead_letter_path))
    return counts


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logs.set_up(argv)
    run(argv)
    return 0


if __name__ == "__main__":
    from pipelines import decompress

    sys.exit(decompress.main())

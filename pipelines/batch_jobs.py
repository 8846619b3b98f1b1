"""What the compress and decompress jobs share: file naming, reruns, the closing account.

Both map every input file to one output file under `--output` at the input's
path relative to the glob's fixed directory (`photos/a/b.png` read with
`photos/*/*` lands at `<output>/a/b.png.jpg`), so the output tree mirrors
the input tree.

Input names are untrusted (`paths.relative_path` refuses any that could
land outside `--output`), and two inputs that would share an output keep
only the first: the others are dead letters, never overwritten outputs.

A rerun must neither redo finished work nor trust unfinished work: before an
input is read, `SkipCompleted` looks for its output, and a complete one (as
the job's own test of the output's first and last bytes decides, e.g. "a
JPEG with its end marker, this model's header and this source's size and
mtime") is passed on as done; a missing, partial or stale one is (re)done.
Outputs are written to a temporary name and renamed, so a crash leaves no
partial output under the final name.

Every input ends in exactly one of three counters (`written`, `skipped`,
dead letters), which `account` adds up at the end.

Also here, since every job writes files: `write_atomically` and
`WriteJsonLines` (manifests, dead letters, measurements).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import uuid
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics, MetricsFilter

from pipelines import dead_letters
from pipelines.dead_letters import Rejected, TryFlatMap
from pipelines.paths import input_base, relative_path

INPUTS, WRITTEN, SKIPPED, REDONE = "inputs", "written", "skipped", "redone"
# Inputs whose transparency decoding dropped (`sandwich.image_io`): counted,
# and said in the account.
ALPHA_DROPPED = "alpha_dropped"
DONE = "done"
# Enough for any header we read (a JPEG's markers up to the scan, a PNG's
# IHDR and sBIT) and any end marker.
HEAD_BYTES, TAIL_BYTES = 1 << 16, 16


def output_path(path: str, input_pattern: str, output: str, rename: Callable[[str], str]) -> str:
    """Where the output of the input file `path` goes: its relative path, renamed.

    An input whose name could place its output outside `output` is `Rejected`
    (`paths.relative_path` is the rule).
    """
    return FileSystems.join(output, rename(relative_path(path, input_base(input_pattern))))


def source_stamp(metadata: FileMetadata) -> str:
    """A digest of an input file's size and modification time: what an
    output records of its source, so that a rerun redoes it when the source
    changed. Ten hex digits: it travels in every bottleneck, and a chance
    match of a changed source is one in a trillion."""
    stamp = f"{metadata.size_in_bytes}:{metadata.last_updated_in_seconds or 0:.6f}"
    return hashlib.sha256(stamp.encode()).hexdigest()[:10]


def write_atomically(path: str, data: bytes | Iterable[bytes]) -> None:
    """Writes `data` (bytes, or chunks of them) to `path` under a temporary
    name in its directory, then renames it, so a crash never leaves a
    partial file under the final name."""
    directory, name = FileSystems.split(path)
    temp = FileSystems.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    with FileSystems.create(temp) as f:
        for chunk in [data] if isinstance(data, bytes) else data:
            f.write(chunk)
    FileSystems.rename([temp], [path])


@dataclasses.dataclass(frozen=True)
class ExistingOutput:
    """An output already there: its size and its first and last bytes, which
    say whether it is complete without reading (maybe 100 MB of) the rest."""

    path: str
    size: int
    head: bytes
    tail: bytes


def existing_output(path: str) -> ExistingOutput | None:
    """The output at `path` if there is one (without reading all of it).

    Looked up by its exact name: `FileSystems.match` would read `[`, `?` and
    `*` in an output's name as a glob and find another file.
    """
    filesystem = FileSystems.get_filesystem(path)
    if not filesystem.exists(path):
        return None
    size = filesystem.size(path)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        head = f.read(HEAD_BYTES)
        if size > HEAD_BYTES + TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
        tail = f.read()[-TAIL_BYTES:] if size > len(head) else head[-TAIL_BYTES:]
    return ExistingOutput(path, size, head, tail)


# Declared: Beam would infer a union with the tagged output and refuse it as
# ReadMatches' input.
@beam.typehints.with_output_types(FileMetadata)
class SkipCompleted(beam.DoFn):
    """FileMetadata -> itself to do, or (tagged `done`) the record of its complete output.

    `target(path)` names the output of an input; `done(metadata,
    ExistingOutput)` returns the record of a complete output made from this
    very source, or None for a partial or stale one, which is then redone.
    An output that cannot be read (a directory, no permission) is redone
    too, and writing it then makes the dead letter.
    """

    def __init__(self, namespace: str, target: Callable[[str], str],
                 done: Callable[[FileMetadata, ExistingOutput], object | None]):
        self._target, self._done = target, done
        self._skipped = Metrics.counter(namespace, SKIPPED)
        self._redone = Metrics.counter(namespace, REDONE)

    def process(self, metadata):
        try:
            existing = existing_output(self._target(metadata.path))
        except OSError:
            existing = None
        if existing is None:
            yield metadata
            return
        record = self._done(metadata, existing)
        if record is None:
            self._redone.inc()
            yield metadata
        else:
            self._skipped.inc()
            yield pvalue.TaggedOutput(DONE, record)


class WriteJsonLines(beam.PTransform):
    """Writes records with a `to_json` method to one JSON-lines file (empty if
    there are none): manifests, dead letters, measurements."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, records):
        return (records
                | "ToJson" >> beam.Map(lambda record: record.to_json())
                | "Write" >> beam.io.WriteToText(self._path, num_shards=1, shard_name_template=""))


class _Counted:
    """`element -> element`, counted under `namespace`/`name`."""

    def __init__(self, namespace: str, name: str):
        self._counter = Metrics.counter(namespace, name)

    def __call__(self, element):
        self._counter.inc()
        return element


class CountAlphaDropped:
    """A decoded source (`codec.Source`, `sandwich.image_io.DecodedImage`)
    -> itself; counts it under `namespace`/`ALPHA_DROPPED` when its file's
    transparency was dropped."""

    def __init__(self, namespace: str):
        self._counter = Metrics.counter(namespace, ALPHA_DROPPED)

    def __call__(self, source):
        if source.alpha_dropped:
            self._counter.inc()
        return source


class WriteOutputs(beam.PTransform):
    """PredictionResults -> (records, dead letters): `write` (one result ->
    its output file, written atomically -> its record) on a pool of
    `threads` threads, beside the model of the steps before it; the records
    counted as written. `write` must count nothing itself: Beam's metrics
    count only on the bundle's thread. Its `errors` are dead letters."""

    def __init__(self, namespace: str, write: Callable, errors: tuple[type[Exception], ...],
                 threads: int):
        super().__init__()
        self._namespace, self._write, self._errors, self._threads = (namespace, write, errors,
                                                                     threads)

    def expand(self, results):
        written, unwritten = results | "EncodeAndWrite" >> TryFlatMap(
            self._write, step="write", path_of=lambda result: result.example.path,
            errors=self._errors, threads=self._threads)
        return written | "CountWritten" >> beam.Map(_Counted(self._namespace, WRITTEN)), unwritten


def counters(result, namespace: str) -> dict[str, int]:
    """The job's counters of `namespace`, plus `dead_letters`, from a finished run."""
    counts = {name: 0 for name in (INPUTS, WRITTEN, SKIPPED, REDONE)}
    for name, value in _query(result, namespace).items():
        counts[name] = counts.get(name, 0) + value
    by_step = dead_letters_by_step(result)
    counts["dead_letters"] = by_step.pop("total", 0)
    counts["dead_letters_by_step"] = by_step
    return counts


def _query(result, namespace: str) -> dict[str, int]:
    # Summed by name: a counter such as dead letters' `total` is kept per step.
    totals = collections.Counter()
    for r in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]:
        totals[r.key.metric.name] += r.committed
    return dict(totals)


def dead_letters_by_step(result) -> dict[str, int]:
    """The dead letters of a finished run per step, and their `total`."""
    return _query(result, dead_letters.METRICS_NAMESPACE)


def account(counts: dict, dead_letter_path: str, outputs: str = WRITTEN) -> str:
    """The closing line, and a `RuntimeError` if an input went missing;
    `outputs` names what the job made of an input. A second line counts
    the inputs whose transparency was dropped, if any (`alpha_line`)."""
    steps = ", ".join(f"{n} {v}" for n, v in sorted(counts["dead_letters_by_step"].items()))
    line = (f"inputs: {counts[INPUTS]} = {counts[WRITTEN]} {outputs} "
            f"({counts[REDONE]} of them redone) + {counts[SKIPPED]} already complete + "
            f"{counts['dead_letters']} dead letters{f' ({steps})' if steps else ''}"
            f" -> {dead_letter_path}")
    if counts[INPUTS] != counts[WRITTEN] + counts[SKIPPED] + counts["dead_letters"]:
        raise RuntimeError(f"inputs do not add up: {line}")
    return line + alpha_line(counts.get(ALPHA_DROPPED, 0))


def alpha_line(count: int) -> str:
    """The account's line on the inputs decoded with their transparency
    dropped ("" for none)."""
    return (f"\n{count} of them had transparency, dropped: their colour channels are "
            "used as stored (docs/formats.md, source images)") if count else ""


class NameOutput:
    """FileMetadata -> (output path, itself); counts the input, and `Rejected`
    an input whose name is unsafe as an output's."""

    def __init__(self, namespace: str, target: Callable[[str], str]):
        self._target = target
        self._inputs = Metrics.counter(namespace, INPUTS)

    def __call__(self, metadata):
        self._inputs.inc()
        yield self._target(metadata.path), metadata


def _one_per_output(group):
    """(output, [FileMetadata]) -> (FileMetadata, the input that keeps the output)."""
    _, inputs = group
    inputs = sorted(inputs, key=lambda metadata: metadata.path)
    return [(metadata, inputs[0].path) for metadata in inputs]


def _keep_first(pair):
    """Lets the first input of an output through; `Rejected` the others."""
    metadata, keeper = pair
    if metadata.path != keeper:
        raise Rejected(f"its output name is already that of {keeper}; rename one of them")
    yield metadata


def read_files(pipeline, pattern: str, namespace: str, target: Callable[[str], str],
               skip: SkipCompleted):
    """Matches the inputs and splits them into (to do: ReadableFiles, done:
    records, dead letters of the inputs with an unsafe or shared output name).

    Two inputs may map to one output (`x.jpg` and `x.png.jpg` both restore
    to `x.png`); the first by path keeps it, so a rerun decides the same.
    """
    matched = pipeline | "MatchFiles" >> fileio.MatchFiles(pattern)
    named, unsafe = matched | "NameOutputs" >> TryFlatMap(
        NameOutput(namespace, target), step="output_name", path_of=_path_of_metadata)
    unique, shared = (named
                      | "GroupByOutput" >> beam.GroupByKey()
                      | "OnePerOutput" >> beam.FlatMap(_one_per_output)
                      | "KeepFirst" >> TryFlatMap(_keep_first, step="output_collision",
                                                  path_of=lambda pair: pair[0].path))
    split = unique | "SkipCompleted" >> beam.ParDo(skip).with_outputs(DONE, main="todo")
    # Read bytes as stored: a `.gz` name must not make Beam decompress it.
    readable = split.todo | "ReadMatches" >> fileio.ReadMatches(
        compression=CompressionTypes.UNCOMPRESSED)
    dead_letters = (unsafe, shared) | "NameDeadLetters" >> beam.Flatten()
    return readable, split[DONE], dead_letters


def _path_of_metadata(metadata) -> str:
    return metadata.path

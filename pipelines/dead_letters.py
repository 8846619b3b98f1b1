"""Bad input never kills a job and is never silently dropped.

A step that may meet bad input is wrapped in `TryFlatMap`: the elements its
function rejects (by raising one of the given exceptions) leave through a
second output as `DeadLetter`s, each counted with Beam metrics under
`dead_letters`; the jobs write them as JSON lines (path, reason, step)
that a person can read and a script can retry.

`TryFlatMap(..., threads=n)` runs the function on a pool of threads beside
the steps fused before it, for work that releases the GIL (image encoders,
file writes) and would otherwise wait for the model in the same process.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from sandwich.errors import Rejected

METRICS_NAMESPACE = "dead_letters"
DEAD_LETTERS = "dead_letters"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    path: str
    reason: str
    step: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _reason(error: Exception) -> str:
    return getattr(error, "reason", None) or f"{type(error).__name__}: {error}"


class Attempt:
    """One step on one element: `fn(element)`'s results, or the counted
    `DeadLetter` of its rejection (one of `errors`).

    `TryFlatMap` runs it as a pipeline step; a DoFn that must run several
    steps on one element in place (the dataset job cuts and writes a whole
    shard without handing patches between workers) calls it directly.
    """

    def __init__(self, fn: Callable[[object], Iterable], *, step: str,
                 path_of: Callable[[object], str], errors: tuple[type[Exception], ...]):
        self._fn, self._step, self._path_of, self._errors = fn, step, path_of, errors
        self._total = Metrics.counter(METRICS_NAMESPACE, "total")
        self._per_step = Metrics.counter(METRICS_NAMESPACE, step)

    def __call__(self, element) -> tuple[list, DeadLetter | None]:
        return self.settle(element, self.outcome(element))

    def outcome(self, element) -> list | Exception:
        """`fn(element)`'s results, or its rejection; counts nothing, so it
        may run on any thread (Beam's metrics count only on the bundle's)."""
        try:
            # Materialise first so that a failure midway emits nothing partial.
            return list(self._fn(element))
        except self._errors as error:
            return error

    def settle(self, element, outcome: list | Exception) -> tuple[list, DeadLetter | None]:
        """An `outcome` as (results, None) or ([], its counted `DeadLetter`)."""
        if not isinstance(outcome, Exception):
            return outcome, None
        self._total.inc()
        self._per_step.inc()
        return [], DeadLetter(self._path_of(element), _reason(outcome), self._step)


class _TryFlatMapFn(beam.DoFn):
    def __init__(self, attempt: Attempt):
        self._attempt = attempt

    def process(self, element):
        results, letter = self._attempt(element)
        if letter:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        yield from results


class _BackgroundTryFlatMapFn(beam.DoFn):
    """`_TryFlatMapFn` with the attempts run on a pool of `threads` threads.

    An element's results leave with its own window, timestamp and pane once its
    attempt is done: during a later element's `process`, or at the end of the
    bundle, which waits for all. At most `threads` attempts wait beyond those
    running, so a slow function holds back the steps before it rather than
    gathering their elements (decoded images) in memory. Errors other than
    the attempt's own are raised on the bundle's thread, failing the bundle
    as they would without threads.
    """

    def __init__(self, attempt: Attempt, threads: int):
        self._attempt, self._threads = attempt, threads

    def setup(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads,
                                                           thread_name_prefix="try-flat-map")

    def start_bundle(self):
        self._pending = collections.deque()

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        self._pending.append((WindowedValue(element, timestamp, (window,), pane),
                              self._pool.submit(self._attempt.outcome, element)))
        while self._pending and (len(self._pending) > 2 * self._threads
                                 or self._pending[0][1].done()):
            yield from self._settle(*self._pending.popleft())

    def finish_bundle(self):
        while self._pending:
            yield from self._settle(*self._pending.popleft())

    def _settle(self, windowed: WindowedValue, future: concurrent.futures.Future):
        results, letter = self._attempt.settle(windowed.value, future.result())
        if letter:
            yield pvalue.TaggedOutput(DEAD_LETTERS, windowed.with_value(letter))
        for result in results:
            yield windowed.with_value(result)

    def teardown(self):
        self._pool.shutdown()


class TryFlatMap(beam.PTransform):
    """`FlatMap(fn)` whose failures on `errors` become dead letters.

    Returns a pair of PCollections `(outputs, dead_letters)`. `path_of` names
    the input an element came from, for the dead-letter record. With
    `threads`, `fn` runs on a pool of that many threads (`_BackgroundTryFlatMapFn`),
    where Beam's metrics do not count: count its outputs in a later step.
    """

    def __init__(self, fn: Callable[[object], Iterable], *, step: str,
                 path_of: Callable[[object], str],
                 errors: tuple[type[Exception], ...] = (Rejected,), threads: int = 0):
        super().__init__()
        attempt = Attempt(fn, step=step, path_of=path_of, errors=errors)
        self._dofn = _BackgroundTryFlatMapFn(attempt, threads) if threads else _TryFlatMapFn(
            attempt)

    def expand(self, pcoll):
        results = pcoll | beam.ParDo(self._dofn).with_outputs(DEAD_LETTERS, main="outputs")
        return results.outputs, results[DEAD_LETTERS]


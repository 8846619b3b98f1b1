"""Bad input never kills a job and is never silently dropped.

A step that may meet bad input is wrapped in `TryFlatMap`: the elements its
function rejects (by raising one of the given exceptions) leave through a
second output as `DeadLetter`s, each counted with Beam metrics under
`dead_letters`; the jobs write them as JSON lines (path, reason, step)
that a person can read and a script can retry.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

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
        try:
            # Materialise first so that a failure midway emits nothing partial.
            return list(self._fn(element)), None
        except self._errors as error:
            self._total.inc()
            self._per_step.inc()
            return [], DeadLetter(self._path_of(element), _reason(error), self._step)


class _TryFlatMapFn(beam.DoFn):
    def __init__(self, attempt: Attempt):
        self._attempt = attempt

    def process(self, element):
        results, letter = self._attempt(element)
        if letter:
            yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        yield from results


class TryFlatMap(beam.PTransform):
    """`FlatMap(fn)` whose failures on `errors` become dead letters.

    Returns a pair of PCollections `(outputs, dead_letters)`. `path_of` names
    the input an element came from, for the dead-letter record.
    """

    def __init__(self, fn: Callable[[object], Iterable], *, step: str,
                 path_of: Callable[[object], str],
                 errors: tuple[type[Exception], ...] = (Rejected,)):
        super().__init__()
        self._dofn = _TryFlatMapFn(Attempt(fn, step=step, path_of=path_of, errors=errors))

    def expand(self, pcoll):
        results = pcoll | beam.ParDo(self._dofn).with_outputs(DEAD_LETTERS, main="outputs")
        return results.outputs, results[DEAD_LETTERS]


"""Compress to a target: per image, the model and step (or plain JPEG) that serve it best.

`sandwich-compress --target_bpp B` asks, for each image, for the highest
PSNR whose file takes at most B bits per source pixel; `--target_psnr P`
for the fewest bits whose reconstruction reaches P dB. Every model of the
set is a candidate, and so is plain JPEG (Pillow: standard tables, 4:2:0,
optimised; `sandwich.alternatives`), each at its own best setting:

- a model's steps are searched by bisection with the real encoder, each
  probe a whole file, header included. Its pre-processor runs once per
  image, or once per probe if it reads the step
  (`ModelSpec.preprocessor_reads_qstep`). For a rate the file
  size alone decides, so the post-processor runs once, on the pick; for a
  PSNR each probe is decoded and post-processed. Either way the
  post-processor sees the file the real decoder reads, at the step it was
  coded at, exactly as `pipelines.decompress` will run it;
- plain JPEG is searched the same way over Pillow's qualities 1..100.

The job writes the candidate that serves the target best, so plain JPEG
wins wherever it reaches a higher PSNR within the budget (or the PSNR in
fewer bytes) than every model: no output is worse than the plain JPEG a
user would have made at its size, both files carrying the ~250-byte header
that a rerun and `decompress` read. Plain JPEG is a candidate for 8-bit
sources only: a deeper source's plain JPEG would lose its depth.

A target that no candidate meets is not a dead letter: the closest file is
written (the smallest for a rate, the best for a PSNR) and the manifest says
why (`missed`), as it does for a file more than 3% under its rate.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Sequence

import numpy as np

from pipelines import bottleneck_format, model_handler
from pipelines.bottleneck_format import Header
from sandwich import alternatives, jpeg, metrics
from sandwich.errors import Rejected

BPP, PSNR = "bpp", "psnr"
# A file this much under its rate is reported: the budget was not used.
RATE_SLACK = 0.03
# The header's range of steps; flat tables are integers, so one per integer.
MIN_QSTEP, MAX_QSTEP = 1, 255
QUALITIES = tuple(range(1, 101))  # Pillow's, cheapest file first


@dataclasses.dataclass(frozen=True)
class Target:
    """What a user asks for: `bpp` at most `value`, or `psnr` at least `value` dB."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in (BPP, PSNR) or not self.value > 0:
            raise ValueError(f"a target is a positive {BPP} or {PSNR}, got {self.kind}={self.value}")

    @property
    def label(self) -> str:
        """What the header and the manifest record: `bpp<=0.5`, `psnr>=36`."""
        return f"{self.kind}{'<=' if self.kind == BPP else '>='}{self.value:g}"

    @classmethod
    def parse(cls, label: str) -> "Target":
        kind, value = label.split("<=" if "<=" in label else ">=")
        return cls(kind, float(value))

    def budget_bits(self, pixels: int) -> int:
        return int(np.floor(self.value * pixels))

    def met(self, coded: "Coded") -> bool:
        if self.kind == BPP:
            return coded.bits <= self.budget_bits(coded.pixels)
        return coded.psnr >= self.value

    def rank(self, coded: "Coded") -> tuple:
        """Larger is better: files that meet the target first, then the best
        PSNR (for a rate) or the fewest bits (for a PSNR); below the target,
        the closest file."""
        if self.kind == BPP:
            return (True, coded.psnr, -coded.bits) if self.met(coded) else (
                False, -coded.bits, coded.psnr)
        return (True, -coded.bits, coded.psnr) if self.met(coded) else (
            False, coded.psnr, -coded.bits)


def missed(target: Target, bpp: float, psnr: float, bit_depth: int, model_id: str) -> str:
    """Why a file (made by `model_id`) does not meet its target (within
    `RATE_SLACK` under a rate), or "" if it does; a function of the
    manifest's own fields, so a rerun that skips the file says the same."""
    coders = "no model of the set" + (" nor plain JPEG" if bit_depth == 8 else "")
    if target.kind == PSNR:
        return "" if psnr >= target.value else (
            f"{coders} reaches {target.value:g} dB; the best file is {psnr:.2f} dB")
    if bpp > target.value:
        return f"{coders} codes it in {target.value:g} bpp; the smallest file is {bpp:.3f} bpp"
    if bpp < (1 - RATE_SLACK) * target.value:
        finer = ("plain JPEG's next quality" if model_id == bottleneck_format.FALLBACK
                 else f"{model_id}'s next finer step")
        return (f"{bpp:.3f} bpp, {100 * (1 - bpp / target.value):.1f}% under the target: "
                f"{finer} overshoots it, and no other file within it decodes better")
    return ""


@dataclasses.dataclass(frozen=True)
class Coded:
    """A file as it will be written, and the PSNR of its reconstruction."""

    header: Header
    data: bytes
    psnr: float

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def pixels(self) -> int:
        return self.header.height * self.header.width


def _recorded_psnr(reconstruction: np.ndarray, source: np.ndarray, bit_depth: int) -> float:
    """PSNR (dB) as the header records it: two decimals, at most `MAX_PSNR`
    (an identical reconstruction is infinitely good)."""
    psnr = float(metrics.psnr(reconstruction[None], source[None], bit_depth)[0])
    return round(min(psnr, bottleneck_format.MAX_PSNR), 2)


class _Coder:
    """One way to code an image, at settings ordered from the smallest file
    to the largest; each file and each PSNR is computed at most once.

    `header(setting)` is the file's header, `encode(header)` the file, and
    `reconstruct(header, file)` what a decoder makes of it. A probe's file carries
    the widest PSNR a header can hold, so the final file, which carries the
    measured one, is never larger than the file the search accepted.
    """

    def __init__(self, settings: Sequence[float], header: Callable[[float], Header],
                 encode: Callable[[Header], bytes],
                 reconstruct: Callable[[Header, bytes], np.ndarray],
                 source: np.ndarray, bit_depth: int):
        self._settings, self._header, self._encode = settings, header, encode
        self._reconstruct, self._source, self._bit_depth = reconstruct, source, bit_depth
        self._files: dict[int, bytes] = {}
        self._psnrs: dict[int, float] = {}

    def _probe(self, i: int) -> Header:
        return dataclasses.replace(self._header(self._settings[i]), psnr=bottleneck_format.MAX_PSNR)

    def _file(self, i: int) -> bytes:
        if i not in self._files:
            self._files[i] = self._encode(self._probe(i))
        return self._files[i]

    def bits(self, i: int) -> int:
        return 8 * len(self._file(i))

    def psnr(self, i: int) -> float:
        if i not in self._psnrs:
            self._psnrs[i] = _recorded_psnr(self._reconstruct(self._probe(i), self._file(i)),
                                            self._source, self._bit_depth)
        return self._psnrs[i]

    def pick(self, target: Target) -> Coded:
        """The best file for `target` by bisection (files grow and PSNRs rise
        along the settings): the largest within a rate, the smallest that
        reaches a PSNR; the nearest end of the range if none does."""
        n = len(self._settings)
        if target.kind == BPP:
            budget = target.budget_bits(self._source.shape[0] * self._source.shape[1])
            i = max(_first(n, lambda i: self.bits(i) > budget) - 1, 0)
        else:
            i = min(_first(n, lambda i: self.psnr(i) >= target.value), n - 1)
        psnr = self.psnr(i)
        header = dataclasses.replace(self._header(self._settings[i]), psnr=psnr)
        return Coded(header, self._encode(header), psnr)


def _first(n: int, predicate: Callable[[int], bool]) -> int:
    """The first index in `range(n)` where a monotone (False..., True...)
    `predicate` holds, or `n`; log2(n) probes."""
    low, high = 0, n
    while low < high:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle + 1
    return low


def qsteps(spec) -> np.ndarray:
    """A model's steps, coarsest (smallest file) first, over the steps it is
    meant for (`ModelSpec.qstep_bounds`: a rate-conditioned post-processor
    knows no others) within the header's 1..255: every integer for flat
    tables (the encoder rounds them; the nearest one if the range holds
    none), a geometric grid 1% apart for trained tables, which rescale
    continuously."""
    low, high = np.clip(spec.qstep_bounds, MIN_QSTEP, MAX_QSTEP)
    if spec.qtables is None:
        steps = np.arange(np.floor(high), np.ceil(low) - 1, -1, dtype=np.float64)
        return steps if len(steps) else np.array([float(np.clip(round(spec.qstep), MIN_QSTEP,
                                                                 MAX_QSTEP))])
    return np.geomspace(high, low, max(2, int(np.ceil(np.log(high / low) / np.log(1.01))) + 1))


def _model_coder(model: model_handler.ExportedSandwich, source, target: Target) -> _Coder:
    height, width = source.pixels.shape[:2]
    bottleneck = model.bottleneck_at(source.pixels)

    def header(qstep):
        return dataclasses.replace(
            Header.of(model.spec, qstep, height, width, source.source_bit_depth, source.stamp),
            target=target.label)

    def reconstruct(header, data):  # Our own file: no header to check, no size limit to apply.
        return model.postprocess(jpeg.decode(data), (height, width), header.qstep)

    return _Coder(qsteps(model.spec), header,
                  lambda h: bottleneck_format.encode(bottleneck(h.qstep), h,
                                                     model.spec.tables_at(h.qstep)),
                  reconstruct, source.pixels, model.spec.bit_depth)


def _plain_coder(source, target: Target) -> _Coder:
    height, width = source.pixels.shape[:2]

    def header(quality):
        return Header.fallback(int(quality), height, width, source.source_bit_depth,
                               source.stamp, target.label)

    return _Coder(QUALITIES, header, lambda h: bottleneck_format.encode(source.pixels, h),
                  lambda _, data: alternatives.pillow_decode(data), source.pixels, 8)


def choose(models: Iterable[model_handler.ExportedSandwich], source, target: Target, *,
           fallback: bool) -> Coded:
    """The file for `source` (a `jobs.ModelInput`) that serves `target` best
    among every model's pick and, with `fallback`, plain JPEG's.

    Models run one after another and only their picks are kept, so memory
    stays that of one model's tiled run, whatever the size of the set.
    """
    best = None
    coders = [functools.partial(_model_coder, model, source, target) for model in models]
    if fallback:
        coders.append(functools.partial(_plain_coder, source, target))
    for make in coders:
        coded = make().pick(target)
        if best is None or target.rank(coded) > target.rank(best):
            best = coded
    return best


class TargetHandler(model_handler.SandwichHandler):
    """ModelInput -> inference: the `Coded` file that serves the target
    best, or the `Rejected` reason the encoder gave (the write step turns it
    into a dead letter; RunInference has no way out for one element)."""

    processors = (model_handler.PREPROCESSOR, model_handler.POSTPROCESSOR)

    def __init__(self, model_dirs: Sequence[str], target: Target, *, fallback: bool,
                 tile: int | None = None, halo: int | None = None, worker_processes: int = 0):
        super().__init__(model_dirs, tile=tile, halo=halo, worker_processes=worker_processes)
        self._target, self._fallback = target, fallback

    def _infer(self, models, element):
        try:
            return choose(models.values(), element, self._target, fallback=self._fallback)
        except ValueError as e:  # Pillow's size limits, among others
            return Rejected(f"coding to {self._target.label}: {e}")

"""Compress to a target: per image, the file that serves it best, among the
models of the set, their scenarios' identities and plain JPEG.

`sandwich-compress --target_bpp B` asks, for each image, for the best file
within B bits per source pixel: of highest PSNR by default, or with
`--rank_by ms-ssim` of highest MS-SSIM, with `--rank_by butteraugli` of
lowest Butteraugli 3-norm (`sandwich.perceptual`), for a user who cares
about what people see more than about squared error. `--target_psnr P`
asks for the fewest bits whose reconstruction reaches P dB. The candidates,
each at its own best setting:

- every model of the set. Its steps are searched by bisection with the real
  encoder, each probe a whole file, header included. Its pre-processor
  runs once per image, or once per probe if it reads the step
  (`ModelSpec.preprocessor_reads_qstep`). For a rate the file size alone
  decides, so the post-processor runs once, on the pick; for a PSNR each
  probe is decoded and post-processed. Either way the post-processor sees
  the file the real decoder reads, at the step it was coded at, exactly as
  `pipelines.decompress` will run it;
- the identity of each distinct scenario of the set (its name, bit depth,
  factor and JPEG mode): the scenario's baseline, the same JPEG mode at a
  flat step with no networks (`bottleneck_format.identity_bottleneck` and
  `identity_reconstruction`, which `decompress` runs too). It is what an
  untrained model makes, and trained models fall below it where their
  training did not reach (an x1 model above about 0.6 bpp on photos it
  never saw): without it the job would write a worse file than it could
  have written with no networks at all. Searched the same way over every
  flat step 1..255;
- plain JPEG (Pillow: standard tables, 4:2:0, optimised;
  `sandwich.alternatives`), searched the same way over Pillow's qualities
  1..100. A candidate for 8-bit sources only: a deeper source's plain JPEG
  would lose its depth.

Within a candidate the search is always the rate's (or the PSNR's)
bisection: the largest file within the budget. The ranked metric other
than PSNR is measured once per candidate, on its pick, from the
reconstruction its PSNR is measured on. Candidates run one after another
and only their picks (a file and a few numbers) are kept, so memory stays
that of one model's tiled run, whatever the size of the set.

The job writes the candidate that serves the target best (`Target.rank`),
so no output is worse than the identity or the plain JPEG a user would
have made at its size, every file carrying the ~250-byte header that a
rerun and `decompress` read. A tie (an equal ranked value as the manifest
records it: PSNR to 0.01 dB, MS-SSIM to 1e-5, Butteraugli to 1e-3, bytes for
a PSNR target) goes to the file that needs least to decode
(`KIND_PREFERENCE`): plain JPEG, which any viewer shows as it is, then the
identity, which needs no model, then a model (the first of the set). An
untrained model is its identity exactly, so its files go to the identity.

The chosen file's `margins` say by how much it beat the best candidate of
each other kind (`Target.margin`): in dB of PSNR, in MS-SSIM or in
Butteraugli 3-norm for a rate target (the ranked metric's unit, positive
where the winner is better), in % of the other file's bytes saved for a
PSNR target; null where either file misses the target, since files that do
not both meet it are not compared like for like.

A target that no candidate meets is not a dead letter: the closest file is
written (the smallest for a rate, the best for a PSNR) and the manifest says
why (`missed`), as it does for a file more than 3% under its rate.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from codec import bottleneck_format, exported
from codec.bottleneck_format import FALLBACK, IDENTITY, MODEL, Header
from sandwich import alternatives, jpeg, metrics
from sandwich.jpeg import tables
from sandwich.errors import Rejected

BPP, PSNR = "bpp", "psnr"
MS_SSIM, BUTTERAUGLI = "ms-ssim", "butteraugli"
# What a rate target may rank its files by (`--rank_by`).
RANKINGS = (PSNR, MS_SSIM, BUTTERAUGLI)
# The decimals each ranked value is recorded (and so compared) to.
DIGITS = {PSNR: 2, MS_SSIM: 5, BUTTERAUGLI: 3}
# Ties go to the file that needs least to decode: a plain JPEG any viewer
# shows as it is, then an identity (the sandwich decoder, no model), then a
# model's file (its post-processor).
KIND_PREFERENCE = {FALLBACK: 2, IDENTITY: 1, MODEL: 0}
# A file this much under its rate is reported: the budget was not used.
RATE_SLACK = 0.03
QUALITIES = tuple(range(1, 101))  # Pillow's, cheapest file first
# An identity's steps: every flat one, coarsest first (it has no trained range).
# (Flat tables are integers in `tables.BASELINE_MIN_STEP..BASELINE_MAX_STEP`.)
IDENTITY_QSTEPS = tuple(float(q) for q in range(tables.BASELINE_MAX_STEP,
                                                tables.BASELINE_MIN_STEP - 1, -1))


@dataclasses.dataclass(frozen=True)
class Target:
    """What a user asks for: `bpp` at most `value`, the best file by
    `rank_by` within it; or `psnr` at least `value` dB in the fewest bits."""

    kind: str
    value: float
    rank_by: str = PSNR

    def __post_init__(self):
        if self.kind not in (BPP, PSNR) or not self.value > 0:
            raise ValueError(f"a target is a positive {BPP} or {PSNR}, got {self.kind}={self.value}")
        if self.rank_by not in RANKINGS:
            raise ValueError(f"a rate target ranks by one of {list(RANKINGS)}, not {self.rank_by!r}")
        if self.kind == PSNR and self.rank_by != PSNR:
            raise ValueError(f"a {PSNR} target ranks by bytes; {self.rank_by} ranks a {BPP} target")

    @property
    def label(self) -> str:
        """What the header and the manifest record: `bpp<=0.5`, `psnr>=36`,
        `bpp<=0.5 by ms-ssim` (so a rerun with another ranking redoes the file)."""
        ranking = f" by {self.rank_by}" if self.rank_by != PSNR else ""
        return f"{self.kind}{'<=' if self.kind == BPP else '>='}{self.value:g}{ranking}"

    @classmethod
    def parse(cls, label: str) -> "Target":
        goal, _, rank_by = label.partition(" by ")
        kind, value = goal.split("<=" if "<=" in goal else ">=")
        return cls(kind, float(value), rank_by or PSNR)

    def budget_bits(self, pixels: int) -> int:
        return int(np.floor(self.value * pixels))

    def met(self, coded: "Coded") -> bool:
        if self.kind == BPP:
            return coded.bits <= self.budget_bits(coded.pixels)
        return coded.psnr >= self.value

    def score(self, coded: "Coded") -> float:
        """The ranked value, larger is better: the PSNR, MS-SSIM or minus the
        Butteraugli 3-norm for a rate; minus the bits for a PSNR."""
        if self.kind == PSNR:
            return -coded.bits
        return {PSNR: coded.psnr, MS_SSIM: coded.ms_ssim,
                BUTTERAUGLI: None if coded.butteraugli is None else -coded.butteraugli}[self.rank_by]

    def rank(self, coded: "Coded") -> tuple:
        """Larger is better: files that meet the target first, then the
        ranked value (`score`), then on a tie the kind that needs least to
        decode (`KIND_PREFERENCE`), then the fewest bits (for a rate) or
        the best PSNR (for a PSNR); below the target, the closest file."""
        preference = KIND_PREFERENCE[coded.kind]
        if not self.met(coded):
            return ((False, -coded.bits, coded.psnr, preference) if self.kind == BPP
                    else (False, coded.psnr, -coded.bits, preference))
        return (True, self.score(coded), preference,
                -coded.bits if self.kind == BPP else coded.psnr)

    def margin(self, winner: "Coded", other: "Coded") -> float | None:
        """How much better `winner` serves the target than `other`, positive
        where it is better: in the ranked metric's unit for a rate (dB,
        MS-SSIM, Butteraugli 3-norm), in % of `other`'s bytes saved for a
        PSNR; None unless both meet the target."""
        if not (self.met(winner) and self.met(other)):
            return None
        if self.kind == PSNR:
            return round(100 * (other.bits - winner.bits) / other.bits, 2)
        return round(self.score(winner) - self.score(other), DIGITS[self.rank_by])


def missed(target: Target, bpp: float, psnr: float, bit_depth: int, model_id: str) -> str:
    """Why a file (made by `model_id`) does not meet its target (within
    `RATE_SLACK` under a rate), or "" if it does; a function of the
    manifest's own fields, so a rerun that skips the file says the same."""
    coders = ("neither a model of the set nor an identity"
              + (" nor plain JPEG" if bit_depth == 8 else ""))
    if target.kind == PSNR:
        return "" if psnr >= target.value else (
            f"{coders} reaches {target.value:g} dB; the best file is {psnr:.2f} dB")
    if bpp > target.value:
        return f"{coders} codes it in {target.value:g} bpp; the smallest file is {bpp:.3f} bpp"
    if bpp < (1 - RATE_SLACK) * target.value:
        finer = {FALLBACK: "plain JPEG's next quality",
                 IDENTITY: "the identity's next finer step"}.get(
                     model_id, f"{model_id}'s next finer step")
        return (f"{bpp:.3f} bpp, {100 * (1 - bpp / target.value):.1f}% under the target: "
                f"{finer} overshoots it, and no other file within it decodes better")
    return ""


@dataclasses.dataclass(frozen=True)
class Coded:
    """A file as it will be written, the PSNR of its reconstruction and,
    where a target ranks by them, its MS-SSIM or Butteraugli 3-norm; on the
    file `choose` picks, its `margins` over each other kind's best."""

    header: Header
    data: bytes
    psnr: float
    ms_ssim: float | None = None
    butteraugli: float | None = None
    margins: dict[str, float | None] | None = None

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def pixels(self) -> int:
        return self.header.height * self.header.width

    @property
    def kind(self) -> str:
        return self.header.kind


def _recorded_psnr(reconstruction: np.ndarray, source: np.ndarray, bit_depth: int) -> float:
    """PSNR (dB) as the header records it: two decimals, at most `MAX_PSNR`
    (an identical reconstruction is infinitely good)."""
    psnr = float(metrics.psnr(reconstruction[None], source[None], bit_depth)[0])
    return round(min(psnr, bottleneck_format.MAX_PSNR), 2)


def perceptual(rank_by: str, reconstruction: np.ndarray, source: np.ndarray,
               bit_depth: int) -> dict[str, float]:
    """The `Coded` field of a ranked metric other than PSNR, as recorded
    (`DIGITS`): `ms_ssim`, or `butteraugli` (the 3-norm, lower is better)."""
    from sandwich import perceptual as measures  # TensorFlow, libjxl's tool: only when asked

    if rank_by == MS_SSIM:
        return {"ms_ssim": round(float(measures.ms_ssim(source, reconstruction, bit_depth)),
                                 DIGITS[MS_SSIM])}
    _, pnorm3 = measures.butteraugli(source, reconstruction, bit_depth)
    return {"butteraugli": round(float(pnorm3), DIGITS[BUTTERAUGLI])}


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

    def _measure(self, i: int, rank_by: str = PSNR) -> dict:
        """The PSNR of setting `i` and, for another `rank_by`, that metric
        too, from one reconstruction."""
        if i in self._psnrs and rank_by == PSNR:
            return {"psnr": self._psnrs[i]}
        reconstruction = self._reconstruct(self._probe(i), self._file(i))
        self._psnrs[i] = _recorded_psnr(reconstruction, self._source, self._bit_depth)
        extra = ({} if rank_by == PSNR
                 else perceptual(rank_by, reconstruction, self._source, self._bit_depth))
        return {"psnr": self._psnrs[i], **extra}

    def psnr(self, i: int) -> float:
        return self._measure(i)["psnr"]

    def pick(self, target: Target) -> Coded:
        """The best file for `target` by bisection (files grow and PSNRs rise
        along the settings): the largest within a rate, the smallest that
        reaches a PSNR; the nearest end of the range if none does. For a
        rate, its ranked metric is measured on the reconstruction its PSNR
        is measured on."""
        n = len(self._settings)
        if target.kind == BPP:
            budget = target.budget_bits(self._source.shape[0] * self._source.shape[1])
            i = max(_first(n, lambda i: self.bits(i) > budget) - 1, 0)
            measured = self._measure(i, target.rank_by)
        else:
            i = min(_first(n, lambda i: self.psnr(i) >= target.value), n - 1)
            measured = self._measure(i)
        header = dataclasses.replace(self._header(self._settings[i]), psnr=measured["psnr"])
        return Coded(header, self._encode(header), **measured)


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
    bounds = tables.BASELINE_MIN_STEP, tables.BASELINE_MAX_STEP
    low, high = np.clip(spec.qstep_bounds, *bounds)
    if spec.qtables is None:
        steps = np.arange(np.floor(high), np.ceil(low) - 1, -1, dtype=np.float64)
        return steps if len(steps) else np.array([float(np.clip(round(spec.qstep), *bounds))])
    return np.geomspace(high, low, max(2, int(np.ceil(np.log(high / low) / np.log(1.01))) + 1))


def _model_coder(model: exported.ExportedSandwich, source, target: Target) -> _Coder:
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


def _identity_coder(spec, source, target: Target) -> _Coder:
    """The identity of `spec`'s scenario: its bottleneck made once, coded
    at every scale of the scenario's tables (flat, or the standard shape a
    model trained with them carries), decoded as `decompress` decodes it."""
    height, width = source.pixels.shape[:2]
    bottleneck = bottleneck_format.identity_bottleneck(spec, source.pixels)

    def header(qstep):
        return Header.identity(spec, qstep, height, width, source.source_bit_depth,
                               source.stamp, target.label)

    return _Coder(IDENTITY_QSTEPS, header,
                  lambda h: bottleneck_format.encode(
                      bottleneck, h, bottleneck_format.identity_tables(spec, h.qstep)),
                  lambda h, data: bottleneck_format.identity_reconstruction(h, jpeg.decode(data)),
                  source.pixels, spec.bit_depth)


def _plain_coder(source, target: Target) -> _Coder:
    height, width = source.pixels.shape[:2]

    def header(quality):
        return Header.fallback(int(quality), height, width, source.source_bit_depth,
                               source.stamp, target.label)

    return _Coder(QUALITIES, header, lambda h: bottleneck_format.encode(source.pixels, h),
                  lambda _, data: alternatives.pillow_decode(data), source.pixels, 8)


def identities(specs: Iterable) -> list:
    """One spec per distinct scenario of a set (name, bit depth, factor,
    JPEG mode, table shape), the first model's of each: what its identity
    is made of."""
    distinct = {}
    for spec in specs:
        distinct.setdefault((spec.scenario, spec.bit_depth, spec.factor, spec.jpeg_mode,
                             spec.table_shape), spec)
    return list(distinct.values())


def candidates(models: Sequence[exported.ExportedSandwich], source, target: Target, *,
               fallback: bool) -> Iterator[Coded]:
    """Each candidate's pick for `source` (a `codec.Source`), one after
    another: every model's, each identity's, and with `fallback` plain
    JPEG's. Each coder and what it holds (a model's bottleneck, its probes)
    is dropped once its pick is made."""
    for model in models:
        yield _model_coder(model, source, target).pick(target)
    for spec in identities(model.spec for model in models):
        yield _identity_coder(spec, source, target).pick(target)
    if fallback:
        yield _plain_coder(source, target).pick(target)


def check_measurable(target: Target, pixels: np.ndarray) -> None:
    """Refuses (`Rejected`) an image too small for the metric `target` ranks
    by (MS-SSIM's five scales need sides of 161 pixels, Butteraugli 8),
    before anything is coded: a file ranked by another metric than the one
    the user asked for would be the wrong file, silently."""
    from sandwich import perceptual as measures

    least = {MS_SSIM: measures.MS_SSIM_MIN_SIDE,
             BUTTERAUGLI: measures.BUTTERAUGLI_MIN_SIDE}.get(target.rank_by, 0)
    if min(pixels.shape[:2]) < least:
        raise Rejected(f"coding to {target.label}: {target.rank_by} needs sides of at least "
                       f"{least} pixels, this image is {pixels.shape[1]}x{pixels.shape[0]}")


def choose(models: Iterable[exported.ExportedSandwich], source, target: Target, *,
           fallback: bool) -> Coded:
    """The file for `source` (a `codec.Source`) that serves `target` best
    among the candidates (`candidates`), with its margins over the best
    candidate of each other kind (`Target.margin`).

    Only the best pick of each kind is kept, so memory stays that of one
    model's tiled run, whatever the size of the set.
    """
    if target.rank_by != PSNR:
        check_measurable(target, source.pixels)
    best: dict[str, Coded] = {}
    for coded in candidates(list(models), source, target, fallback=fallback):
        if coded.kind not in best or target.rank(coded) > target.rank(best[coded.kind]):
            best[coded.kind] = coded
    winner = max(best.values(), key=target.rank)
    return dataclasses.replace(winner, margins={
        kind: target.margin(winner, other) for kind, other in best.items() if kind != winner.kind})

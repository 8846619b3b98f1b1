"""Compress to a target: per image, the file that serves it best, among the
models of the set, their scenarios' identities, plain JPEG and jpegli.

`sandwich-compress --target_bpp B` asks, for each image, for the best file
within B bits per source pixel: of highest PSNR by default, or with
`--rank_by ms-ssim` of highest MS-SSIM, with `--rank_by butteraugli` of
lowest Butteraugli 3-norm (`sandwich.perceptual`), for a user who cares
about what people see more than about squared error. `--target_psnr P`
asks for the fewest bits whose reconstruction reaches P dB. The candidates,
each at its own best setting:

- every model of the set. Its steps are searched with the real encoder,
  each probe a whole file, header included. Its pre-processor runs once
  per image, or once per probe if it reads the step
  (`ModelSpec.preprocessor_reads_qstep`). For a rate the file size alone
  decides, so the post-processor runs once, on the pick; for a PSNR each
  probe is decoded and post-processed. Either way the post-processor sees
  the file the real decoder reads, at the step it was coded at, exactly as
  `pipelines.decompress` will run it;
- the identity of each distinct scenario of the set (`identities`: its
  name, bit depth, factor and JPEG mode, `identity_key`, and its tables'
  shape): the scenario's baseline, the same JPEG mode at a flat step with
  no networks (`bottleneck_format.identity_bottleneck` and
  `identity_reconstruction`, which `decompress` runs too). It is what an
  untrained model makes, and trained models fall below it where their
  training did not reach (an x1 model above about 0.6 bpp on photos it
  never saw): without it the job would write a worse file than it could
  have written with no networks at all. Searched the same way over every
  flat step 1..255;
- the fallbacks, plain JPEGs that any viewer shows as they are: Pillow's
  (standard tables, 4:2:0, optimised; `sandwich.alternatives`), searched
  the same way over Pillow's qualities 1..100, then jpegli's (Google's
  encoder, `pyjpegli`: adaptive quantisation, baseline 4:2:0), over its
  qualities 1..100, along Pillow's positions (`_quality_positions`; its
  own quality-to-distance scale would save half an encode). On crops of
  scikit-image's photographs jpegli's file was the better from about
  1-1.5 bpp up, by PSNR and by Butteraugli, and the worse below; its
  smallest (quality 1) is about 3 times Pillow's (0.33-0.45 bpp there),
  so at low rates it fits no budget. Candidates for 8-bit colour sources
  only (`exported.plain_jpeg_fits`): a deeper source's plain JPEG would
  lose its depth.

Within a candidate the search finds the rate's (or the PSNR's) boundary:
the largest file within the budget, or the smallest that reaches the PSNR,
as a bisection would where sizes and PSNRs rise with the setting (nearly
always: a byte or two's dip at the coarsest identity steps may stop either
at another file whose next is over the budget), in fewer probes
(`_first_reaching`: log bits, and PSNR, run nearly straight in the log of
the step, so each probe interpolates between the nearest ones; a model's
search starts at its identity's pick). On the shipped set that is 5-6
encodes for each fallback and each identity and 3-4 for a model, against
a bisection's 8-9. The ranked metric other than PSNR is measured once per
candidate, on its pick, from the reconstruction its PSNR is measured on.

The candidates run one after another, the cheap ones first (plain JPEG,
then jpegli, then the identities, then the models, the most promising
first), and only the best file so far and each kind's best (a file and a
few numbers) are kept, so memory stays that of one model's tiled run,
whatever the size of the set. A candidate is not measured where it cannot
win (`choose`):

- exactly: a file over the rate once another file meets it (its PSNR
  cannot matter), and, for a PSNR target, any file larger than the
  smallest that reaches it so far (the search stops at that size);
- by prediction, for a rate ranked by PSNR: a model whose PSNR cannot
  reach the best file so far even if it beats its identity, on this image
  at this rate, by its recorded gain over the scenario's baseline
  (`metrics["bd_psnr_vs_baseline"]`, the trainer's BD-PSNR over its step
  range) plus its slack (`gain_slack`). Neither its pre- nor its
  post-processor runs. A model without the figure always runs.

A shipped model's slack is what its release measured: the most its gain
over its identity, on one held-out photo at one of its points near the
target rate (per octave of rate), exceeded its recorded gain
(`release["gain_excess_db"]`, `benchmarks/release_models.py`), plus
`GAIN_MARGIN_DB` for photos it has not seen. The x2 models exceed it
most, at fine steps where their baseline saturates. A model without that
record (trained, not released) takes `GAIN_SLACK_DB`. A model that beats
its identity by more on some photo can lose it to a file a little worse:
`benchmarks/target_throughput.py --check` counts how often, and by how
many dB, on any photographs.

The job writes the candidate that serves the target best (`Target.rank`),
so no output is worse than the identity, the plain JPEG or the jpegli
JPEG a user would have made at its size, every file carrying the
~250-byte header that a rerun and `decompress` read. A tie (an equal
ranked value as the manifest records it: PSNR to 0.01 dB, MS-SSIM to
1e-5, Butteraugli to 1e-3, bytes for a PSNR target) goes to the file that
needs least to decode (`KIND_PREFERENCE`): plain JPEG, which any viewer
shows as it is, then
jpegli's, shown as it is too (Pillow's, the most common encoder's,
first), then the identity, which needs no model, then a model (the first
of the set). An untrained model is its identity exactly, so its files go
to the identity.

The chosen file's `margins` say by how much it beat the best candidate of
each other kind (`Target.margin`): in dB of PSNR, in MS-SSIM or in
Butteraugli 3-norm for a rate target (the ranked metric's unit, positive
where the winner is better), in % of the other file's bytes saved for a
PSNR target; null where either file misses the target, since files that do
not both meet it are not compared like for like, and where a candidate of
that kind that was not measured may have been its best (only that it lost
is known, not by how much).

A target that no candidate meets is not a dead letter: the closest file is
written (the smallest for a rate, the best for a PSNR) and the manifest says
why (`missed`), as it does for a file more than 3% under its rate.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from codec import bottleneck_format, exported
from codec.bottleneck_format import FALLBACK, IDENTITY, JPEGLI_FALLBACK, MODEL, Header
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
# shows as it is (Pillow's, then jpegli's), then an identity (the sandwich
# decoder, no model), then a model's file (its post-processor).
KIND_PREFERENCE = {FALLBACK: 3, JPEGLI_FALLBACK: 2, IDENTITY: 1, MODEL: 0}
# A file this much under its rate is reported: the budget was not used.
RATE_SLACK = 0.03
QUALITIES = tuple(range(1, 101))  # Pillow's and jpegli's, cheapest file first
# An identity's steps: every flat one, coarsest first (it has no trained range).
# (Flat tables are integers in `tables.BASELINE_MIN_STEP..BASELINE_MAX_STEP`.)
IDENTITY_QSTEPS = tuple(float(q) for q in range(tables.BASELINE_MAX_STEP,
                                                tables.BASELINE_MIN_STEP - 1, -1))
# A model's recorded PSNR gain over its scenario's baseline: the trainer's
# BD-PSNR over the model's step range (`trainer.training`), in its spec's `metrics`.
GAIN_FIGURE = "bd_psnr_vs_baseline"
# A released model's record (`release`) of how far its gain over its identity,
# on one held-out photo at one rate, exceeded `GAIN_FIGURE` (dB), per octave of
# rate (`[[upper bpp, dB], ...]`, the octave (upper / 2, upper]: the x2 models
# exceed it by about 1 dB up to 0.5 bpp, by 2.2-3.0 above, where their
# baseline saturates), and what is added to it for photos it has not seen.
GAIN_EXCESS = "gain_excess_db"
GAIN_MARGIN_DB = 0.25
# The same excess taken for a model without that record: on the bundled
# samples and scikit-image's photographs at 0.2-1.5 bpp the x1 models exceeded
# their figure by 0.8 dB at most (the x2 models by more on held-out photos).
GAIN_SLACK_DB = 1.0
# A search's slope before two probes give one, per unit of the log of the
# step: of the log of a file's bits (bits ~ step^-0.7 over the whole range:
# steeper at fine steps, flatter at coarse ones, where the header and the
# tables weigh), set on the bundled samples, and of its PSNR (6 dB per
# e-fold, about 4 per doubling).
SLOPES = {BPP: -0.7, PSNR: -6.0}
# A probe's header holds `MAX_PSNR`, at most this many bits longer than the
# final file's, which holds the measured PSNR (`_Coder`).
_PROBE_EXTRA_BITS = 8 * len(repr(bottleneck_format.MAX_PSNR))


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
              + (" nor plain JPEG nor jpegli" if bit_depth == 8 else ""))
    if target.kind == PSNR:
        return "" if psnr >= target.value else (
            f"{coders} reaches {target.value:g} dB; the best file is {psnr:.2f} dB")
    if bpp > target.value:
        return f"{coders} codes it in {target.value:g} bpp; the smallest file is {bpp:.3f} bpp"
    if bpp < (1 - RATE_SLACK) * target.value:
        finer = {FALLBACK: "plain JPEG's next quality",
                 JPEGLI_FALLBACK: "jpegli's next quality",
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
    `reconstruct(header, file)` what a decoder makes of it; `positions`, the
    log of each setting's step (`_quality_positions` for a quality), along
    which log bits and PSNR run nearly straight, so the search interpolates
    along them. A probe's file carries the widest PSNR a header can hold, so
    the final file, which carries the measured one, is never larger than the
    file the search accepted (and at most `_PROBE_EXTRA_BITS` smaller).
    """

    def __init__(self, settings: Sequence[float], positions: np.ndarray,
                 header: Callable[[float], Header], encode: Callable[[Header], bytes],
                 reconstruct: Callable[[Header, bytes], np.ndarray],
                 source: np.ndarray, bit_depth: int):
        self._settings, self._positions = settings, np.asarray(positions, np.float64)
        self._header, self._encode = header, encode
        self._reconstruct, self._source, self._bit_depth = reconstruct, source, bit_depth
        self._files: dict[int, bytes] = {}
        self._psnrs: dict[int, float] = {}

    def _nearest(self, setting: float) -> int:
        """The index of the setting nearest `setting` (in log)."""
        return int(np.argmin(np.abs(np.log(self._settings) - np.log(setting))))

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

    def _fitting(self, bits: int, start: int) -> int:
        """How many settings, from the first, have probes of at most `bits`
        (the search starting at index `start`)."""
        return _first_reaching(len(self._settings), lambda i: np.log(self.bits(i)), np.log(max(bits, 1)),
                               self._positions, strictly=True, slope=SLOPES[BPP], start=start)

    def pick(self, target: Target, *, start: float | None = None,
             beat: Coded | None = None) -> Coded | None:
        """The best file for `target` (files grow and PSNRs rise along the
        settings): the largest within a rate, the smallest that reaches a
        PSNR; the nearest end of the range if none does. The search starts
        at the setting nearest `start`. For a rate, its ranked
        metric is measured on the reconstruction its PSNR is measured on.

        With `beat`, a file that meets the target, None where this coder's
        file cannot rank above it, unmeasured: every file over the rate, or
        none that reaches the PSNR in as few bits (`_PROBE_EXTRA_BITS` to
        spare, so a final file a few bytes under `beat` is not missed).
        """
        n = len(self._settings)
        # Without a guess, the middle of the positions, where the line bends least.
        first = (self._nearest(start) if start is not None else int(np.argmin(np.abs(
            self._positions - (self._positions[0] + self._positions[-1]) / 2))))
        rival = beat is not None and target.met(beat)
        if target.kind == BPP:
            budget = target.budget_bits(self._source.shape[0] * self._source.shape[1])
            i = max(self._fitting(budget, first) - 1, 0)
            if rival and self.bits(i) - _PROBE_EXTRA_BITS > budget:
                return None
            measured = self._measure(i, target.rank_by)
        else:
            end = self._fitting(beat.bits + _PROBE_EXTRA_BITS, first) if rival else n
            i = _first_reaching(end, self.psnr, target.value, self._positions, strictly=False,
                                slope=SLOPES[PSNR], start=first)
            if i == end:
                if rival:
                    return None
                i = n - 1
            measured = self._measure(i)
        header = dataclasses.replace(self._header(self._settings[i]), psnr=measured["psnr"])
        return Coded(header, self._encode(header), **measured)


def _first_reaching(n: int, measure: Callable[[int], float], level: float,
                    positions: np.ndarray, *, strictly: bool, slope: float,
                    start: int | None = None) -> int:
    """The first index in `range(n)` whose `measure` reaches `level` (is
    above it if `strictly`), or `n`, for a `measure` that rises along the
    indices: what a bisection finds, in fewer probes where `measure` runs
    nearly straight along `positions` (falling, one per index).

    It probes `start` (default: the middle), then where the straight line
    through the two known probes nearest the boundary (or, with one, at
    `slope`) reaches `level`, rounded to the index that would be the
    boundary; where probes keep landing on one side of it, it steps past
    the estimate by 1, 3, 7... indices. A good line takes two to four
    probes; after as many as a bisection's worst (`n.bit_length()`) it
    bisects, so no measure takes more than twice that.
    """
    low, high = -1, n  # measure(low) below level, measure(high) at it (beyond the ends: assumed)
    if n == 0:
        return 0
    seen: dict[int, float] = {}
    i = n // 2 if start is None else min(max(start, 0), n - 1)
    run, last = 0, None
    while True:
        seen[i] = value = measure(i)
        reached = value > level if strictly else value >= level
        if reached:
            high = i
        else:
            low = i
        if high - low <= 1:
            return high
        run = run + 1 if reached == last else 1
        last = reached
        if len(seen) >= n.bit_length():  # as many probes as a bisection's worst: bisect
            i = (low + high) // 2
            continue
        i = _estimate(low, high, seen, level, positions, slope)
        if run >= 2:  # the line keeps falling short on one side
            i += -(2 ** (run - 1) - 1) if reached else 2 ** (run - 1) - 1
        i = min(max(i, low + 1), high - 1)


def _estimate(low: int, high: int, seen: dict[int, float], level: float,
              positions: np.ndarray, slope: float) -> int:
    """Where the line through the known probes nearest the bracket
    `(low, high)` reaches `level`: the first index at or past it."""
    ends = [j for j in (low, high) if j in seen]
    if len(ends) == 1:  # one side known: its two nearest probes, else the prior slope
        ends = sorted(seen, key=lambda j: abs(j - ends[0]))[:2]
    if len(ends) == 2 and seen[ends[0]] != seen[ends[1]]:
        (x0, v0), (x1, v1) = ((positions[j], seen[j]) for j in ends)
    elif len(ends) == 2:  # a flat stretch: no line to follow
        return (low + high) // 2
    else:
        x0, v0 = positions[ends[0]], seen[ends[0]]
        x1, v1 = x0 + 1.0, v0 + slope
    x = x0 + (level - v0) * (x1 - x0) / (v1 - v0)
    index = np.interp(-x, -positions, np.arange(len(positions)), left=-1.0,
                      right=float(len(positions)))
    return int(np.ceil(index - 1e-9))


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


def _quality_positions(qualities: Sequence[int]) -> np.ndarray:
    """The log of the scale libjpeg gives its standard tables at each
    Pillow quality (5000/q below 50, 200 - 2q from 50; at least 1), the
    quality's step in the sense of `_Coder`."""
    q = np.asarray(qualities, np.float64)
    return np.log(np.maximum(np.where(q < 50, 5000 / q, 200 - 2 * q), 1.0))


def _model_coder(model: exported.ExportedSandwich, source, target: Target) -> _Coder:
    height, width = source.pixels.shape[:2]
    bottleneck = model.bottleneck_at(source.pixels)

    def header(qstep):
        return dataclasses.replace(
            Header.of(model.spec, qstep, height, width, source.source_bit_depth, source.stamp),
            target=target.label)

    def reconstruct(header, data):  # Our own file: no header to check, no size limit to apply.
        return model.postprocess(jpeg.decode(data), (height, width), header.qstep)

    steps = qsteps(model.spec)
    return _Coder(steps, np.log(steps), header,
                  lambda h: bottleneck_format.encode(bottleneck(h.qstep), h,
                                                     model.spec.tables_at(h.qstep)),
                  reconstruct, source.pixels, model.spec.bit_depth)


def _identity_coder(spec, source, target: Target, bottleneck: np.ndarray) -> _Coder:
    """The identity of `spec`'s scenario, its `bottleneck`
    (`bottleneck_format.identity_bottleneck`) coded at every scale of the
    scenario's tables (flat, or the standard shape a model trained with
    them carries), decoded as `decompress` decodes it."""
    height, width = source.pixels.shape[:2]

    def header(qstep):
        return Header.identity(spec, qstep, height, width, source.source_bit_depth,
                               source.stamp, target.label)

    return _Coder(IDENTITY_QSTEPS, np.log(IDENTITY_QSTEPS), header,
                  lambda h: bottleneck_format.encode(
                      bottleneck, h, bottleneck_format.identity_tables(spec, h.qstep)),
                  lambda h, data: bottleneck_format.identity_reconstruction(h, jpeg.decode(data)),
                  source.pixels, spec.bit_depth)


def _fallback_coder(model_id: str, source, target: Target) -> _Coder:
    """A fallback's (`bottleneck_format.FALLBACKS`: plain JPEG or jpegli)
    file of the source at each quality, decoded as a viewer decodes it."""
    height, width = source.pixels.shape[:2]

    def header(quality):
        return Header.fallback(int(quality), height, width, source.source_bit_depth,
                               source.stamp, target.label, model_id=model_id)

    return _Coder(QUALITIES, _quality_positions(QUALITIES), header,
                  lambda h: bottleneck_format.encode(source.pixels, h),
                  lambda _, data: alternatives.pillow_decode(data), source.pixels, 8)


def identity_key(spec_or_header) -> tuple:
    """What makes an identity file (its header's
    `bottleneck_format.SPEC_FIELDS`), so what a model's spec must share with
    an identity's header for the identity to be its scenario's."""
    return tuple(getattr(spec_or_header, name) for name in bottleneck_format.SPEC_FIELDS)


def identities(specs: Iterable) -> list:
    """One spec per distinct scenario of a set (`identity_key` and the
    tables' shape, which the identity is coded with), the first model's of
    each: what its identity is made of."""
    distinct = {}
    for spec in specs:
        distinct.setdefault((*identity_key(spec), spec.table_shape), spec)
    return list(distinct.values())


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A candidate's outcome in `_contest`: its pick (`coded`), or None where
    it was not measured, its file known to rank below `bound` (a prefix of
    a `Target.rank`: `(True, -bits)` for a PSNR target's file larger than
    `bits`, `(True, psnr)` for a rate's predicted under `psnr`; None for
    one over the rate while another file meets it). `order`, its place in
    the listing (the models of the set, then the identities, then plain
    JPEG, then jpegli), breaks a tie within a kind."""

    kind: str
    order: int
    coded: Coded | None
    bound: tuple | None = None


def _gain_ceiling(model: exported.ExportedSandwich, identity: Coded | None,
                  target: Target) -> float | None:
    """The highest PSNR `model`'s pick is predicted to reach: its identity's
    at this rate plus its recorded gain (`GAIN_FIGURE`, at least 0) and its
    `gain_slack`; None where that predicts nothing (a PSNR target, a rate
    ranked by another metric, no figure, an identity over the rate)."""
    gain = model.spec.metrics.get(GAIN_FIGURE)
    if (target.kind != BPP or target.rank_by != PSNR or not isinstance(gain, (int, float))
            or identity is None or not target.met(identity)):
        return None
    return identity.psnr + max(float(gain), 0.0) + gain_slack(model.spec, target.value)


def gain_slack(spec, bpp: float) -> float:
    """How far `spec`'s model is taken to beat its identity beyond its
    recorded gain (dB) in a file of at most `bpp`: the most its release
    measured in the octaves of rate a pick at `bpp` falls in (down to
    `bpp / sqrt 2`; every octave's where it measured none there), plus
    `GAIN_MARGIN_DB`; `GAIN_SLACK_DB` for a model without the record."""
    bands = spec.release.get(GAIN_EXCESS)
    if not bands:
        return GAIN_SLACK_DB
    near = [excess for upper, excess in bands if upper >= bpp / math.sqrt(2) and upper / 2 < bpp]
    return max(max(near or [excess for _, excess in bands]), 0.0) + GAIN_MARGIN_DB


def _contest(models: Sequence[exported.ExportedSandwich], source, target: Target, *,
             fallback: bool, prune: bool) -> Iterator[_Entry]:
    """Each candidate's outcome for `source` (a `codec.Source`), one after
    another: with `fallback` plain JPEG's and jpegli's, each identity's,
    then every model's (with `prune`, the most promising first: `_gain_ceiling`).

    With `prune`, a candidate that cannot win is not measured (module
    docstring): each coder is told the best file so far (`_Coder.pick`'s
    `beat`), and a model whose `_gain_ceiling` is below that file's PSNR
    is not run at all. Each coder and what it holds (a model's bottleneck,
    its probes) is dropped once its pick is made; the identities of one
    scenario and factor share their bottleneck.
    """
    specs = identities(model.spec for model in models)
    leader: Coded | None = None

    def entry(kind: str, order: int, coded: Coded | None) -> _Entry:
        nonlocal leader
        if coded is not None and (leader is None or target.rank(coded) > target.rank(leader)):
            leader = coded
        # A PSNR target's coder is ruled out by the size of the file it could not undercut.
        return _Entry(kind, order, coded, (True, -leader.bits)
                      if coded is None and target.kind == PSNR else None)

    def rival() -> Coded | None:
        return leader if prune else None

    if fallback:
        for order, model_id in enumerate((FALLBACK, JPEGLI_FALLBACK), len(models) + len(specs)):
            yield entry(model_id, order,
                        _fallback_coder(model_id, source, target).pick(target, beat=rival()))
    bottlenecks, picks = {}, {}
    for order, spec in enumerate(specs, len(models)):
        key = identity_key(spec)
        if key not in bottlenecks:
            bottlenecks[key] = bottleneck_format.identity_bottleneck(spec, source.pixels)
        coded = _identity_coder(spec, source, target, bottlenecks[key]).pick(target,
                                                                             beat=rival())
        picks[key, spec.table_shape] = coded
        yield entry(IDENTITY, order, coded)
    bottlenecks.clear()
    identity = [picks[identity_key(model.spec), model.spec.table_shape] for model in models]
    ceilings = [_gain_ceiling(model, pick, target) if prune else None
                for model, pick in zip(models, identity)]
    for order in sorted(range(len(models)), key=lambda i: (
            ceilings[i] is not None, -(ceilings[i] or 0.0), i)):
        if (ceilings[order] is not None and leader is not None and target.met(leader)
                and ceilings[order] < leader.psnr):
            yield _Entry(MODEL, order, None, (True, ceilings[order]))
            continue
        start = None if identity[order] is None else identity[order].header.qstep
        yield entry(MODEL, order, _model_coder(models[order], source, target).pick(
            target, start=start, beat=rival()))


def candidates(models: Sequence[exported.ExportedSandwich], source, target: Target, *,
               fallback: bool) -> Iterator[Coded]:
    """Each candidate's pick for `source` (a `codec.Source`), one after
    another, none left out: with `fallback` plain JPEG's and jpegli's, each
    identity's, every model's."""
    for entry in _contest(list(models), source, target, fallback=fallback, prune=False):
        yield entry.coded


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
           fallback: bool, prune: bool = True) -> Coded:
    """The file for `source` (a `codec.Source`) that serves `target` best
    among the candidates (`candidates`), with its margins over the best
    candidate of each other kind (`Target.margin`); with `prune`, leaving
    unmeasured those that cannot win (`_contest`), without it measuring
    every one.

    Only the best pick of each kind is kept, so memory stays that of one
    model's tiled run, whatever the size of the set.
    """
    if target.rank_by != PSNR:
        check_measurable(target, source.pixels)
    best: dict[str, _Entry] = {}
    # Per kind, the highest rank one of its unmeasured candidates is known to be below.
    bounds: dict[str, tuple] = {}
    kinds: list[str] = []
    for entry in _contest(list(models), source, target, fallback=fallback, prune=prune):
        if entry.kind not in kinds:
            kinds.append(entry.kind)
        if entry.coded is None:
            if entry.bound is not None:
                bounds[entry.kind] = max(bounds.get(entry.kind, ()), entry.bound)
        elif entry.kind not in best or ((target.rank(entry.coded), -entry.order)
                                        > (target.rank(best[entry.kind].coded),
                                           -best[entry.kind].order)):
            best[entry.kind] = entry
    winner = max((entry.coded for entry in best.values()), key=target.rank)

    def margin(kind: str) -> float | None:
        if kind not in best or target.rank(best[kind].coded) < bounds.get(kind, ()):
            return None  # an unmeasured candidate may have been the kind's best
        return target.margin(winner, best[kind].coded)

    return dataclasses.replace(winner, margins={
        kind: margin(kind) for kind in kinds if kind != winner.kind})

"""Rate models: how many bits the real JPEG encoder will spend.

`LogRateModel` follows He & Mitra's observation that JPEG's bit count is
close to proportional to the number of nonzero quantised coefficients: each
nonzero AC coefficient pays a Huffman-coded (run, size) symbol, and its
magnitude bits grow as `log2(1 + |k|)`. Both terms are counted per table
slot. The count alone has no gradient, so it passes `d tanh(|k|) / dk`
back (`_nonzero`), which is largest for the +-1 coefficients that a
pre-processor can still zero; with the log term alone, a sandwich trained
for 20 minutes learned to trade large coefficients for many +-1s that the
log term rated cheap and libjpeg-turbo did not: its files at the finest
step were 10% over the model's estimate, against 3% for its baseline's
(with the count: 4%, measured on 400 training patches). Two more
refinements, both measured against libjpeg-turbo on photographs, keep it
within a few percent instead of tens: DC indices enter as differences from
the previous block (JPEG codes DC by DPCM, so a flat region costs nothing
however bright it is), and every block pays a fixed cost for its
end-of-block code. The scales
are fitted to the real encoder's bit counts *outside* the compiled training
step (per qstep, on a grid interpolated in log2 qstep), which keeps the step
free of host callbacks so it compiles for XLA, TPUs and multiple replicas.

`GaussianRateModel` is the textbook alternative: the high-rate entropy of a
Gaussian per coefficient position.

`proxy_roundtrip` is the proxy codec with its bits: `sandwich.jpeg.proxy`'s
decoded pixels and quantisation indices, and the rate model's estimate of
the file they make. It lives here, above both, so that the proxy needs
nothing of the rate model that is calibrated on it.

Run `python -m sandwich.rate` to recalibrate the default table on the bundled
photographs; it prints how far the model is from the real bit count.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
from typing import Sequence

import numpy as np
import tensorflow as tf
from scipy import optimize

from sandwich.jpeg import proxy, real, tables
from sandwich.jpeg.real import real_roundtrip

CALIBRATION_DIR = pathlib.Path(__file__).parent / "data"
# Per-slot AC features of `log_rate_features`: magnitudes, nonzeros, runs.
FEATURES = 3
# Bits per unit of log2(1 + |dDC|): a Huffman-coded size category plus the
# magnitude bits. Fixed rather than fitted: AC and DC activity rise together
# in photographs, so a joint fit trades one for the other and then fails on
# images with flat colour regions (held-out p90 error 70% fitted, 20% fixed).
DC_BITS_PER_LOG2 = 3.0


def _log_half_1p_abs(x: tf.Tensor) -> tf.Tensor:
    """`ln((1 + |x|) / 2)` elementwise, the summand of `_log2_sum`.

    Not `log1p`, nor `log(1 + y)`, which TensorFlow rewrites as `log1p`,
    which is not vectorised and took 10x as long.
    """
    return tf.math.log(0.5 + 0.5 * tf.abs(x))


def _log2_sum(logs: tf.Tensor, terms: float) -> tf.Tensor:
    """`sum log2(1 + |x|)` over `terms` terms, from their sum `logs` of
    `_log_half_1p_abs`: summed in `ln` and converted once, per image."""
    return logs / math.log(2.0) + terms


def _slots(x: tf.Tensor, counts: Sequence[int]) -> list:
    """`x` `[b, blocks, ...]` cut into each table slot's `counts` blocks."""
    return tf.split(x, counts, axis=1) if len(counts) > 1 else [x]


def _slot_sums(x: tf.Tensor, counts: Sequence[int]) -> list:
    """Each table slot's sum `[b]` of `x` `[b, blocks, ...]` over its own
    blocks (and any further axes).

    Every slot's blocks are summed as a tensor of their own, as a chain of
    ops per slot summed them: the features are the same to the bit, and the
    ops before the sums run once for all slots, half the dispatches on a CPU
    without XLA.
    """
    return [tf.reduce_sum(part, axis=list(range(1, x.shape.rank))) for part in _slots(x, counts)]


def _per_block(k: tf.Tensor, weights: np.ndarray) -> tf.Tensor:
    """`[b, n, 64] @ weights` -> `[b, n]` for `weights` `[64]`, or `[b, n, m]`
    for `[64, m]`, as one 2-D matmul (a batched one is several times slower
    on a CPU)."""
    matrix = weights if weights.ndim == 2 else weights[:, None]
    flat = tf.matmul(tf.reshape(k, [-1, k.shape[-1]]), matrix)
    return tf.reshape(flat, [-1, k.shape[1], *matrix.shape[1:weights.ndim]])


# JPEG codes a block's coefficients in zigzag order: ZIGZAG[i] is the
# natural (row-major) position of the i-th.
ZIGZAG = np.array(sorted(range(64), key=lambda p: (
    p // 8 + p % 8, (p // 8) if (p // 8 + p % 8) % 2 else (p % 8))), np.int32)
# The AC coefficients' positions in zigzag order, the DC's being 0.
AC_POSITIONS = np.arange(1, 64, dtype=np.float32)
# Natural order to the AC coefficients in zigzag order, as a product with a
# permutation matrix: its gradient is one more product, where a gather's
# (along the last axis) is two transposes and a segment sum; both are exact.
_TO_ZIGZAG_AC = np.eye(64, dtype=np.float32)[:, ZIGZAG[1:]]


def _shift_right(x: tf.Tensor, shift: int) -> tf.Tensor:
    """`x` moved `shift` places along its last axis, zeros coming in."""
    return tf.concat([tf.zeros_like(x[..., :shift]), x[..., :-shift]], axis=-1)


def _previous_nonzero(mask: tf.Tensor) -> tf.Tensor:
    """The zigzag position of the nonzero before each of the 63 AC
    coefficients of `mask` `[..., 63]`, or 0 (the DC's) where there is none.

    An exclusive running max of `mask * AC_POSITIONS`, by doubling: after
    rounds that take the max with copies shifted by 1, 2, 4, ..., 32, each
    position has seen the 63 before it. Six rounds on `[..., 63]` instead
    of a masked max over a `[..., 63, 63]` product took 2.5% off a training
    step on a CPU, with XLA and without (x1, batch 8 of 64x64); the values
    are the same, maxima of whole numbers.
    """
    previous = _shift_right(mask * AC_POSITIONS, 1)
    for shift in (1, 2, 4, 8, 16, 32):
        previous = tf.maximum(previous, _shift_right(previous, shift))
    return previous


def _run_bits(zigzag: tf.Tensor) -> tf.Tensor:
    """`log2(1 + run)` of each nonzero AC coefficient, 0 elsewhere, given
    their indicator `zigzag` `[b, n, 63]` (`_nonzero` of the indices, in
    zigzag order), `run` being the zeros before each.

    JPEG codes each nonzero AC coefficient as a Huffman (run, size) symbol,
    and the longer the run, the longer its code. A pre-processor trained
    without this term learned to leave isolated coefficients late in the
    zigzag: at 10,000 steps its held-out files at qstep 31 ran 9% over the
    magnitude-and-count estimate (the baseline's 0.5%). The runs are read
    from the hard nonzero mask; the gradient passes through each coefficient's
    own nonzero indicator (`_nonzero`) at its run's price.
    """
    mask = tf.stop_gradient(zigzag)  # The indicator's values are the hard mask's.
    runs = AC_POSITIONS - _previous_nonzero(mask)
    price = tf.math.log(runs) / math.log(2.0)  # log2(1 + run): runs counts 1 + run
    return zigzag * price


# The AC and the DC coefficients of a block, picked by products with these
# rather than by slices, whose gradients write zero-filled copies of all the
# indices.
_AC = np.array([0.0] + [1.0] * 63, np.float32)
_DC = np.array([1.0] + [0.0] * 63, np.float32)


@tf.custom_gradient
def _nonzero(k: tf.Tensor):
    """1 where an (integer) index is nonzero, else 0; its gradient is that
    of `tanh(|k|)`, which pulls +-1 toward zero and leaves large ones be.

    A gradient of its own: the forward pass needs no `tanh`, and the
    backward takes `tanh'(|k|) sign(k)` as `tanh'(k) sign(k)`, the same.
    """
    def grad(dy):
        return tf.raw_ops.TanhGrad(y=tf.tanh(k), dy=dy) * tf.sign(k)
    return tf.cast(tf.not_equal(k, 0.0), k.dtype), grad


def _dc_differences(dc: tf.Tensor) -> tf.Tensor:
    """The DC indices `dc` `[b, blocks]` of one slot, each less the previous
    block's (0 before the first): JPEG codes DC by DPCM."""
    return dc - tf.pad(dc[:, :-1], [[0, 0], [1, 0]])


def log_rate_features(indices: Sequence[tf.Tensor]):
    """Per-image `(ac, dc, blocks)`: `ac` `[b, FEATURES * slots]`, the AC
    coefficients' `log2(1 + |k|)` sums, one column per table slot (luma and
    chroma are fitted apart: their statistics differ), then their counts of
    nonzeros per slot, then their runs' `log2(1 + run)` sums per slot
    (`_run_bits`); `dc` `[b]` and `blocks` a number.

    `indices` is what `proxy_code` returns: `[b, blocks, 64]` per table slot,
    blocks in raster order plane after plane (so the DC predictor restarts at
    each plane, as in JPEG where each component has its own predictor). The
    slots' AC coefficients go through each op together and are summed apart.
    """
    counts = [k.shape[1] for k in indices]
    k = tf.concat(indices, axis=1) if len(indices) > 1 else indices[0]
    zigzag = _per_block(_nonzero(k), _TO_ZIGZAG_AC)
    magnitudes = _slot_sums(_per_block(_log_half_1p_abs(k), _AC), counts)
    ac = [_log2_sum(logs, n * float(_AC.sum())) for logs, n in zip(magnitudes, counts)]
    # Each slot's DC differences go through a chain of their own, and the
    # slots' sums are added one after the other, as before: with the slots
    # differenced together, or summed at once, the sum rounds differently
    # (with XLA, or as TensorFlow reorders a chain of additions).
    dc = 0.0
    for slot, n in zip(_slots(_per_block(k, _DC), counts), counts):
        dc += _log2_sum(tf.reduce_sum(_log_half_1p_abs(_dc_differences(slot)), axis=1), float(n))
    nonzero, runs = _slot_sums(zigzag, counts), _slot_sums(_run_bits(zigzag), counts)
    return tf.stack(ac + nonzero + runs, axis=-1), dc, float(sum(counts))


def _piecewise_linear(x: tf.Tensor, xp: tf.Tensor, fp: tf.Tensor) -> tf.Tensor:
    """np.interp for a scalar x on every column of `fp` `[points, columns]`
    at once, written as a sum of clamped ramps so it compiles under XLA and
    works for a table of one point."""
    steps = xp[1:] - xp[:-1]
    slopes = (fp[1:] - fp[:-1]) / tf.maximum(steps, 1e-6)[:, None]
    ramps = tf.clip_by_value(x - xp[:-1], 0.0, steps)
    return fp[0] + tf.linalg.matvec(slopes, ramps, transpose_a=True)


@dataclasses.dataclass
class Calibration:
    """A fitted table for one JPEG mode, one row per qstep, plus how well it fits.

    `qsteps` are table scales (`tables.scale`: the step, for flat tables);
    `ac_scale` has a column per feature of `log_rate_features`' `ac`: bits
    per unit of `log2(1 + |k|)` per table slot, then bits per nonzero
    coefficient per table slot, then bits per unit of `log2(1 + run)` per
    table slot.
    """

    mode: str
    qsteps: list[float]
    ac_scale: list[list[float]]
    dc_scale: list[float]
    block_bits: list[float]
    header_bits: list[float]
    median_error: list[float] = dataclasses.field(default_factory=list)
    p90_error: list[float] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


class LogRateModel(tf.Module):
    """bits = sum_s [a_s(q) * sum log2(1+|AC_s|) + n_s(q) * #(AC_s != 0)
                     + r_s(q) * sum_(AC_s != 0) log2(1+run)]
              + d * sum log2(1+|dDC|) + e(q) * blocks + h(q).

    s runs over the table slots (luma, chroma) and q is the tables' scale.
    a, n and r (`ac_scale`'s columns) are the non-negative least-squares fit to
    the real encoder; e and h are measured
    directly (the file size of a flat image per block, and of an 8x8 image);
    d is `DC_BITS_PER_LOG2`.
    The table lives in variables so a trainer can refresh it in place.
    """

    def __init__(self, calibration: Calibration, name=None):
        super().__init__(name=name)
        self.calibration = calibration
        as_var = lambda values, n: tf.Variable(np.asarray(values, np.float32), trainable=False, name=n)
        self.log2_qsteps = as_var(np.log2(calibration.qsteps), "log2_qsteps")
        self.ac_scale = as_var(calibration.ac_scale, "ac_scale")
        self.dc_scale = as_var(calibration.dc_scale, "dc_scale")
        self.block_bits = as_var(calibration.block_bits, "block_bits")
        self.header_bits = as_var(calibration.header_bits, "header_bits")

    @property
    def mode(self) -> tables.JpegMode:
        return tables.JpegMode.parse(self.calibration.mode)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def default(mode: tables.JpegMode = tables.DEFAULT_MODE) -> "LogRateModel":
        """The table fitted on the bundled photographs for `mode`.

        One shared instance per mode, so that tf.functions calling it create
        no variables; refit a model of your own rather than this one.
        """
        with tf.init_scope():  # Even when first asked for inside a tf.function.
            return LogRateModel(Calibration(**json.loads(calibration_path(mode).read_text())))

    def bits(self, indices: Sequence[tf.Tensor], qstep) -> tf.Tensor:
        """Estimated file bits `[b]` for `proxy_code`'s indices at `qstep`
        (a flat step or `[2, 64]` tables)."""
        ac, dc, blocks = log_rate_features(indices)
        q = tf.cast(qstep, tf.float32)
        x = tf.reduce_mean(tf.math.log(q)) / math.log(2.0)  # log2 of the tables' scale
        # Every column of the table at x in one interpolation. A single-plane
        # image has one slot: the luma columns of each feature.
        slots, fitted_slots = ac.shape[-1] // FEATURES, self.ac_scale.shape[1] // FEATURES
        used = [s for feature in range(FEATURES) for s in range(feature * fitted_slots,
                                                         feature * fitted_slots + slots)]
        columns = len(used)
        table = tf.concat([tf.gather(self.ac_scale, used, axis=1), self.dc_scale[:, None],
                           self.block_bits[:, None], self.header_bits[:, None]], axis=1)
        scales = _piecewise_linear(x, self.log2_qsteps, table)
        return (tf.linalg.matvec(ac, scales[:columns]) + scales[columns] * dc
                + scales[columns + 1] * blocks + scales[columns + 2])

    def refit(self, images, qsteps=None) -> Calibration:
        """Refits the table on `images` with the real encoder, in place:
        one uint8 batch for every row, or a list of one per row.

        `qsteps` gives each row its flat step or tables (a trainer's current
        ones); by default the rows keep their own grid. Returns the fit,
        errors included.
        """
        qsteps = self.calibration.qsteps if qsteps is None else list(qsteps)
        if len(qsteps) != len(self.calibration.qsteps):
            raise ValueError(f"this table has {len(self.calibration.qsteps)} rows, "
                             f"got {len(qsteps)} steps to refit it at")
        fitted = calibrate(images, qsteps, self.mode)
        self.calibration = fitted
        self.log2_qsteps.assign(np.log2(fitted.qsteps).astype(np.float32))
        for name in ("ac_scale", "dc_scale", "block_bits", "header_bits"):
            getattr(self, name).assign(np.asarray(getattr(fitted, name), np.float32))
        return fitted


class GaussianRateModel(tf.Module):
    """High-rate entropy of a Gaussian per coefficient position.

    For each image and each of the 64 positions, the spread of the
    quantisation indices across blocks gives the entropy of a uniformly
    quantised Gaussian, 0.5*log2(2*pi*e*sigma^2) bits per coefficient
    (floored at zero), summed over blocks. No fitting; it ignores JPEG's
    run-length coding, so it is an estimate of what an ideal coder would pay.
    """

    def bits(self, indices: Sequence[tf.Tensor], qstep=None) -> tf.Tensor:
        del qstep  # The indices are already in units of the step.
        total = 0.0
        for k in indices:
            _, variance = tf.nn.moments(k, axes=[1])
            per_position = 0.5 * tf.math.log(2 * math.pi * math.e * (variance + 1e-6)) / math.log(2.0)
            total += float(k.shape[1]) * tf.reduce_sum(tf.nn.relu(per_position), axis=1)
        return total


def proxy_roundtrip(images, qstep, *, color_mode: str = "ycbcr", subsampling: str = "420",
                    rate_model=None):
    """Differentiable stand-in for `real_roundtrip`.

    Args:
      images: float32 `[b, h, w, c]` in 0..255 (c = 1 or 3); any h and w.
      qstep: the flat quantisation step, a positive scalar (may be a
        variable), or `[2, 64]` quantisation tables (luma, chroma).
      color_mode, subsampling: the inner codec's mode (`sandwich.jpeg.tables`);
        by default YCbCr 4:2:0, as every JPEG encoder does.
      rate_model: maps the quantisation indices to bits; defaults to
        `LogRateModel.default(...)` for the mode, calibrated
        on the real encoder.

    Returns:
      `(decoded, bits)`: decoded float32 images like `images`, rounded and
      clipped as a decoder outputs them; bits, a float32 `[b]` estimate of each
      image's JPEG file size in bits.
    """
    decoded, indices = proxy.proxy_code(images, qstep, color_mode=color_mode,
                                        subsampling=subsampling)
    rate_model = rate_model or LogRateModel.default(tables.JpegMode(color_mode, subsampling))
    return decoded, rate_model.bits(indices, qstep)


def calibration_path(mode: tables.JpegMode) -> pathlib.Path:
    """Where the default table for `mode` is kept."""
    return CALIBRATION_DIR / f"log_rate_calibration_{mode.name}.json"


def _fixed_costs(height: int, width: int, channels: int, qstep, mode: tables.JpegMode):
    """Bits of a file with no content (header) and per empty block."""
    flat = np.full((height, width, channels), 128, np.uint8)
    header = 8 * len(real.encode(flat[:16, :16], qstep, **mode.kwargs()))
    _, indices = proxy.proxy_code(flat[None].astype(np.float32), qstep, **mode.kwargs())
    _, _, blocks = log_rate_features(indices)
    _, _, header_blocks = log_rate_features(
        proxy.proxy_code(flat[None, :16, :16].astype(np.float32), qstep, **mode.kwargs())[1])
    per_block = (8 * len(real.encode(flat, qstep, **mode.kwargs())) - header) / max(
        blocks - header_blocks, 1)
    return float(header - per_block * header_blocks), float(per_block)


def _fit_scales(x: np.ndarray, y: np.ndarray, shrink: float = 0.01) -> np.ndarray:
    """Non-negative scales `a` for `x a ~ y` (costs cannot be negative).

    The columns are correlated (luma and chroma activity, magnitudes and
    counts rise together in photographs), so a small ridge, relative to each
    column's own scale, keeps a scale from swinging on noise between
    neighbouring steps.
    """
    norms = np.maximum(np.linalg.norm(x, axis=0), 1e-9)
    ridge = np.sqrt(shrink) * np.eye(x.shape[1])
    scaled, _ = optimize.nnls(np.concatenate([x / norms, ridge]),
                              np.concatenate([y, np.zeros(x.shape[1])]))
    return scaled / norms


def calibrate(images, qsteps: Sequence, mode: tables.JpegMode = tables.DEFAULT_MODE
              ) -> Calibration:
    """Fits the log model on uint8 `[b, h, w, c]` images, one row per entry
    of `qsteps` (flat steps or `[2, 64]` tables), for the JPEG `mode`.
    `images` is one batch for every row, or a list of one batch per row (a
    step-conditioned pre-processor hands each step its own)."""
    per_row = list(images) if isinstance(images, (list, tuple)) else [images] * len(qsteps)
    if len(per_row) != len(qsteps):
        raise ValueError(f"{len(per_row)} batches of images for {len(qsteps)} steps")
    rows = {k: [] for k in ("ac_scale", "dc_scale", "block_bits", "header_bits",
                            "median_error", "p90_error")}
    for images, q in zip(per_row, qsteps):
        images = np.asarray(images)
        _, indices = proxy.proxy_code(images.astype(np.float32), q, **mode.kwargs())
        ac, dc, blocks = log_rate_features(indices)
        ac, dc = np.asarray(ac, np.float64), np.asarray(dc, np.float64)
        _, bits = real_roundtrip(images, q, **mode.kwargs())
        header, per_block = _fixed_costs(*images.shape[1:], q, mode)
        target = bits - header - per_block * blocks - DC_BITS_PER_LOG2 * dc
        ac_scale = _fit_scales(ac, target)
        predicted = ac @ ac_scale + DC_BITS_PER_LOG2 * dc + per_block * blocks + header
        error = np.abs(predicted - bits) / bits
        for key, value in zip(rows, (ac_scale.tolist(), DC_BITS_PER_LOG2, per_block, header,
                                     np.median(error), np.percentile(error, 90))):
            rows[key].append(value if isinstance(value, list) else float(value))
    return Calibration(mode=mode.name, qsteps=[tables.scale(q) for q in qsteps], **rows)


def main(argv=None) -> None:
    """Refits the default table on crops of the bundled photographs."""
    import argparse

    from sandwich import samples

    parser = argparse.ArgumentParser(description=main.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--crop", type=int, default=128, help="crop size in pixels")
    parser.add_argument("--qsteps", type=float, nargs="+",
                        default=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 255])
    parser.add_argument("--mode", choices=tables.MODE_NAMES, default=tables.DEFAULT_MODE.name,
                        help="the JPEG mode to calibrate")
    parser.add_argument("--output", help="default: the package's table for the mode")
    args = parser.parse_args(argv)
    mode = tables.JpegMode.parse(args.mode)
    output = args.output or str(calibration_path(mode))
    crops = samples.crops(samples.load_all(), args.crop)
    if mode.channels == 1:  # What a gray bottleneck codes: the photos' luma.
        from sandwich import scenarios

        crops = scenarios.codec_input(scenarios.make("gray").to_bottleneck(
            tf.cast(crops, tf.float32))).numpy()
    fitted = calibrate(crops, args.qsteps, mode)
    print(f"{'qstep':>6} {'log2 AC / nonzero AC / log2 run (per slot)':>44} {'dc':>5} {'block':>6} "
          f"{'header':>7} {'median':>7} {'p90':>7}")
    for i, q in enumerate(fitted.qsteps):
        ac = "/".join(f"{a:.2f}" for a in fitted.ac_scale[i])
        print(f"{q:6g} {ac:>44} {fitted.dc_scale[i]:5.1f} "
              f"{fitted.block_bits[i]:6.2f} {fitted.header_bits[i]:7.0f} "
              f"{100 * fitted.median_error[i]:6.1f}% {100 * fitted.p90_error[i]:6.1f}%")
    pathlib.Path(output).write_text(fitted.to_json())
    print(f"wrote {output} from {len(crops)} crops")


if __name__ == "__main__":
    main()

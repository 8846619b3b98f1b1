"""The precision the processors run at: float32 as exported, or bfloat16.

bfloat16 runs through oneDNN's automatic mixed precision, a TensorFlow
graph rewrite (grappler's `auto_mixed_precision_onednn_bfloat16`) that moves
convolutions and their neighbours to bfloat16 and keeps the rest in float32.
On a CPU with bfloat16 instructions (AVX512_BF16 or AMX) that halves the
memory the U-Nets' full-resolution activations stream through, which is what
bounds them; elsewhere oneDNN would emulate it, slower than float32.

A model runs at bfloat16 only where its spec says it may: `precisions`
records, per precision, what it changed in PSNR through the whole chain
(pre-processor, real JPEG, post-processor) against float32, measured by
`benchmarks/inference_precision.py --record` on photos outside the
held-out set. `auto` picks bfloat16 when the CPU has the instructions and
every model of the set lost at most `MAX_LOSS_DB`.

What a file holds depends on the precision that wrote it (the bottleneck,
and the PSNR a target's header records), and what it decodes to on the
decoder's precision; any pair stays within the recorded loss of float32's
(`--precision float32` on both sides for bit-exact runs across machines).

The rewrite is the process's, not a model's: TensorFlow applies it to the
functions it instantiates after it is turned on, and not to those already
run (nor to eager ops: the metrics stay float32). So it is set once, before
the first model loads, and a process runs every model at one precision (a
job's worker process, or one `codec.Codec`).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

from sandwich.specs import ModelSpec

FLOAT32, BFLOAT16, AUTO = "float32", "bfloat16", "auto"
CHOICES = (AUTO, FLOAT32, BFLOAT16)
# The most a faster precision may cost: mean PSNR through the chain, in dB.
MAX_LOSS_DB = 0.05
# The deepest samples bfloat16's 8-bit significand holds exactly (0..255): the
# rewrite reaches the processors' last clip and rounding, so a 10-bit model's
# output would come out in steps of 4 near its peak, and above it.
BFLOAT16_BITS = 8
# Element-wise ops the rewrite would otherwise move to bfloat16 when their
# inputs are: kept float32, the sums that form the bottleneck and the
# reconstruction (source or decoded image plus the residual) and their clip
# and rounding are exact again. x2's loss fell from 0.056 to 0.036 dB at the
# same speed (`python benchmarks/inference_precision.py --model hr-x2-r1`).
# TensorFlow reads the list from the environment when it rewrites a function.
KEEP_FLOAT32 = ("Add", "AddV2", "Sub", "Mul", "Minimum", "Maximum", "Floor")
_KEEP_FLOAT32_VARIABLE = "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_REMOVE"
# /proc/cpuinfo flags of the instructions oneDNN runs bfloat16 convolutions on.
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}

_in_use: str | None = None


def cpu_runs_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 instructions and TensorFlow's oneDNN
    kernels are on (`TF_ENABLE_ONEDNN_OPTS=0` turns them off)."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0":
        return False
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return bool(_BF16_FLAGS & set(flags))


def loss_db(spec: ModelSpec, precision: str) -> float | None:
    """What `precision` costs the model in mean PSNR (dB, positive: a loss),
    as its spec records it; None where it was never measured."""
    record = spec.precisions.get(precision)
    return None if record is None else -float(record["psnr_change_db"])


def choose(requested: str, specs: Iterable[ModelSpec], *,
           cpu_runs: Callable[[], bool] = cpu_runs_bfloat16) -> str:
    """The precision a set runs at: `requested` as given (bfloat16 on a CPU
    without the instructions is a `ValueError`), or for `auto` the one this
    process already runs at if it has loaded models, else bfloat16 where the
    CPU runs it and every model's recorded loss is within `MAX_LOSS_DB`."""
    if requested not in CHOICES:
        raise ValueError(f"unknown precision {requested!r}; choose one of {CHOICES}")
    if requested == FLOAT32:
        return FLOAT32
    if requested == AUTO and _in_use is not None:
        return _in_use
    runs = cpu_runs()
    specs = list(specs)
    if requested == BFLOAT16:
        if not runs:
            raise ValueError("bfloat16 needs a CPU with AVX512_BF16 or AMX and TensorFlow's "
                             "oneDNN kernels; this one would emulate it, slower than float32")
        deep = [spec.model_id for spec in specs if spec.bit_depth > BFLOAT16_BITS]
        if deep:
            raise ValueError(f"{', '.join(deep)} output more than {BFLOAT16_BITS} bits, which "
                             f"bfloat16 cannot hold (its integers are exact only to 256)")
        return BFLOAT16
    losses = [loss_db(spec, BFLOAT16) if spec.bit_depth <= BFLOAT16_BITS else None
              for spec in specs]
    fits = bool(losses) and all(loss is not None and loss <= MAX_LOSS_DB for loss in losses)
    return BFLOAT16 if runs and fits else FLOAT32


def use(precision: str) -> None:
    """Sets this process's precision before its first model loads; a second,
    different one is a `RuntimeError` (the first stays in force)."""
    global _in_use
    if precision not in (FLOAT32, BFLOAT16):
        raise ValueError(f"a process runs at {FLOAT32} or {BFLOAT16}, not {precision!r}")
    if _in_use not in (None, precision):
        raise RuntimeError(f"this process already runs its models at {_in_use}; run "
                           f"{precision} models in another process")
    if precision == BFLOAT16 and _in_use is None:
        import tensorflow as tf

        os.environ.setdefault(_KEEP_FLOAT32_VARIABLE, ",".join(KEEP_FLOAT32))
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True})
    _in_use = precision


def in_use() -> str:
    """The precision this process runs its models at (float32 until `use`)."""
    return _in_use or FLOAT32

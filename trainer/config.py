"""What a training run is asked to do: `Config`, which `trainer.task` builds
from the flags, and the names its fields take.

Free of TensorFlow, so that `sandwich-train --help` and a mistyped flag are
answered in a fraction of a second, without the seconds and hundreds of
megabytes TensorFlow costs to load; `trainer.training` imports it when a
run starts.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from sandwich.model_options import NetworkSize, network_size
from sandwich.specs import default_jpeg_mode

# `--strategy` (`trainer.strategy`): `auto` follows the machine.
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
# `--lr_schedule` (`trainer.training.learning_rate`).
LR_SCHEDULES = ("constant", "cosine")
# `--objective`: what the other loss flags default to. `psnr` is the recipe
# measured in docs/architecture.md. `perceptual` is the recipe that did
# best on Butteraugli and MS-SSIM at equal bytes on validation photos (x1;
# docs/ablation.md, "What the loss measures"): jpegli's tables (-8.0% and
# -10.3% against jpegli, where Annex K's gave -0.3% and +3.9%), and the
# bottleneck's own look weighted at half the reconstruction's. Mixing
# MS-SSIM into the distortion gained MS-SSIM but lost Butteraugli, so it is
# left out.
OBJECTIVES = {
    "psnr": {"distortion": "mse", "ms_ssim_weight": None, "view_weight": 0.0,
             "table_shape": "flat"},
    "perceptual": {"distortion": "mse", "ms_ssim_weight": None, "view_weight": 0.5,
                   "table_shape": "jpegli"},
}
# `--objective auto` (the default): the preset that won on validation photos
# for each scenario and factor, in the scenario's own JPEG mode; `psnr`
# elsewhere. At x1 `perceptual` matched `psnr` in PSNR (+1.38 against +1.32
# dB BD-PSNR over plain JPEG at equal steps) and beat it on what people see;
# at x2, against jpegli, it was -14.5% at equal Butteraugli and -28.3% at
# equal MS-SSIM, where `psnr` was -2.1% and -23.6%, for about 0.2 dB less
# PSNR (docs/ablation.md, "What the loss measures"). Unmeasured elsewhere:
# x3 and x4 have no matched step range for jpegli's tables, planes and gray
# code no 4:2:0 chroma for them to shape.
AUTO_OBJECTIVES = {("high_res", 1): "perceptual", ("high_res", 2): "perceptual"}


def objective_for(objective: str, scenario: str, factor: int, jpeg_mode: str | None) -> str:
    """`objective`, with `auto` resolved for a scenario at `factor` coded in
    `jpeg_mode` (None: the scenario's own): `AUTO_OBJECTIVES`' preset where
    the scenario codes in its own mode, else `psnr`."""
    if objective != "auto":
        return objective
    if jpeg_mode not in (None, default_jpeg_mode(scenario)):
        return "psnr"
    return AUTO_OBJECTIVES.get((scenario, factor), "psnr")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; `trainer.task` builds it from the flags."""

    data: str
    job_dir: str | None = None
    eval_data: str | None = None
    # None: no bound on steps; `max_train_minutes` alone ends the run.
    steps: int | None = 1000
    batch_size: int = 8
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    gamma: float | str = "auto"
    penalty_weight: float = 1.0
    size: str = "auto"
    unet_widths: tuple[int, ...] | None = None
    mlp_widths: tuple[int, ...] | None = None
    post_unet_widths: tuple[int, ...] | None = None
    qstep: float = 20.0
    # `--qstep_range`: (low, high), None (off: one step, `qstep`) or "auto",
    # which `trainer.training.settle` turns into the scenario's range.
    qstep_range: tuple[float, float] | Literal["auto"] | None = "auto"
    condition_preprocessor: str = "off"
    train_preprocessor: bool = True
    train_qstep: bool = True
    quantization: str = "flat"
    # None: the scenario's own (`specs.default_jpeg_mode`).
    jpeg_mode: str | None = None
    # What the loss measures (`OBJECTIVES`, or `auto`: `objective_for`);
    # None takes the objective's.
    objective: str = "auto"
    distortion: str | None = None
    ms_ssim_weight: float | None = None
    view_weight: float | None = None
    # The gray scenario's colour carriers' starting gain; None: the default.
    carrier_gain: float | None = None
    table_shape: str | None = None
    max_train_minutes: float | None = None
    model_id: str | None = None
    strategy: str = "auto"
    jit_compile: str = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    summary_every: int = 50
    image_every: int = 500
    refit_every: int = 500
    eval_every: int = 1000
    eval_patches: int = 64
    keep_best: bool = True
    ema_decay: float = 0.999
    augment: bool = True
    refit_patches: int = 16
    scenario: str | None = None
    checkpoint_dir: str | None = None
    log_dir: str | None = None
    export_dir: str | None = None
    seed: int | None = None

    def network(self) -> NetworkSize:
        preset = network_size(self.size)
        return NetworkSize(self.unet_widths or preset.unet_widths,
                           self.mlp_widths or preset.mlp_widths)

    def post_network(self) -> NetworkSize:
        """The post-processor's size: the pre-processor's, or its own U-Net widths."""
        size = self.network()
        return dataclasses.replace(size, unet_widths=self.post_unet_widths) if self.post_unet_widths else size

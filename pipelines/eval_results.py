"""What `sandwich-eval` writes into its results directory and
`pipelines.report` reads back: the files' names, the methods' names in
them, the metrics, and the per-image record (`Measurement`).

Apart from both, so that the report reads the evaluator's results without
importing the evaluator, and the evaluator calls the report at its end
without a circle of imports between them.
"""
from __future__ import annotations

import dataclasses
import json

from apache_beam.io.filesystems import FileSystems

SANDWICH = "sandwich"
LOSSLESS = "png16"  # The 16-bit PNG of a deeper source: its lossless size.
# A deeper source rounded to 8 bits and back, no codec: the best PSNR of any
# 8-bit representation, which no 8-bit JPEG can pass (`method_files.EightBitCeiling`).
CEILING = "8-bit-ceiling"
LEVELS = (LOSSLESS, CEILING)  # Measurements that are a level, not an RD point.
VIEW = "-view"  # `<model_id>-view`: a factor-1 8-bit bottleneck as a viewer shows it.
PER_IMAGE_FILE = "per_image.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "rd.png"
METRICS = ("psnr", "ms-ssim", "butteraugli")
PLOT_FILES = {"psnr": PLOT_FILE, "ms-ssim": "rd_ms-ssim.png",
              "butteraugli": "rd_butteraugli.png"}


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One image coded by one method at one step (or quality); `bits` is the
    whole file (for a sandwich model, the bottleneck with its header), so
    `bpp` is what the deployed file costs per source pixel. The perceptual
    fields are None where not measured: `ms_ssim` (linear), `butteraugli`
    (largest distance) and `butteraugli_3norm`."""

    method: str
    qstep: float
    image: str
    bits: int
    pixels: int
    psnr: float
    ms_ssim: float | None = None
    butteraugli: float | None = None
    butteraugli_3norm: float | None = None

    @property
    def bpp(self) -> float:
        return self.bits / self.pixels

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "bpp": self.bpp}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "Measurement":
        data = json.loads(line)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def read_measurements(results_dir: str) -> list[Measurement]:
    """The `Measurement`s of `per_image.jsonl` in `results_dir` (local or gs://)."""
    with FileSystems.open(FileSystems.join(results_dir, PER_IMAGE_FILE)) as f:
        return [Measurement.from_json(line) for line in f.read().decode().splitlines()]


def curves_by_image(measurements) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """image -> method -> its (bpp, PSNR) points on that image."""
    curves: dict = {}
    for m in measurements:
        curves.setdefault(m.image, {}).setdefault(m.method, []).append((m.bpp, m.psnr))
    return curves

r"""The evaluation as a page people look at: `report.html` beside `rd.png`.

    python -m pipelines.report results/ --models export/x1-g10 export/x2-g50

`pipelines.evaluate` measures and writes its numbers (`summary.json`,
`per_image.jsonl`, the RD plots); this module reads them and shows them, as
CompressAI keeps `eval_model` apart from its plots: re-rendering the page
never re-runs the evaluation. `sandwich-eval` calls `write_report` after
writing its results; the command above renders it again from a results
directory (with other `--photos` or `--bpp`, say).

The page, plain static HTML with inline CSS, no script and no external
resource, its images referenced by relative paths, so the results folder can
be copied or served as it is:

1. every RD plot the evaluator drew (`rd*.png`);
2. BD-rate and BD-PSNR (and any other BD metric in `summary["bd"]`) of every
   method against every reference, an undefined one with its reason;
3. for each of the first `MAX_PHOTOS` held-out photos (by name), one region
   of it side by side, at equal bytes: the source, plain JPEG, jpegli, the
   sandwich's reconstruction and, for a factor-1 8-bit model, its
   bottleneck as a plain viewer shows it (the same file without the
   post-processor, the evaluator's `<model_id>-view` row), each
   with its bytes, bpp, PSNR, MS-SSIM and Butteraugli of the whole image.

Equal bytes. One sandwich rate for all photos: the point of the sandwich
front (`summary`'s `sandwich` curve, means over the photos) nearest
`REFERENCE_BPP` in log rate; its model and step code every photo (one
model to load, and what a deployment at a fixed step does). Each
photo's sandwich file is made exactly as the evaluator makes it (header
with the source's stamp included, so its size is the one in
`per_image.jsonl`, and the page says if not), and plain JPEG and jpegli get
the largest quality whose file is at most that many bytes (found by
bisection over 1..100). So every column costs at most what the sandwich
costs, and differences in the pictures are differences in what the bytes
buy.

The region. `CROP` x `CROP` source pixels (the whole photo where smaller),
on JPEG's 8x8 block grid, where the source's luma has the most detail: the
largest sum of 8x8 blocks' variances, which is where a codec at a low rate
must throw detail away, so where blur, blocking and ringing show most (a
rule that misses banding in smooth gradients). The same region for every
column; crops are shown
at twice their size with nearest-neighbour scaling, so artefacts are
visible as pixels, not smoothed over.

Deeper sources (10-16 bits) are shown as 8-bit crops (their top 8 bits; no
browser shows more reliably); plain JPEG and jpegli code their 8-bit
ceiling, as in the evaluation, and every metric is taken at the source's
bit depth. The photos' coding runs on the machine that writes the report
(the evaluator's driver), which is why the photos are capped.
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import io
import json
import math
import posixpath
import re
import sys

import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from pipelines import batch_jobs, model_handler
from pipelines.eval_results import (LEVELS, METRICS, PER_IMAGE_FILE, PLOT_FILES, SANDWICH,
                                    SUMMARY_FILE, read_measurements)
from pipelines.method_files import EightBitCeiling, sandwich_files
from sandwich import alternatives, metrics
from sandwich.image_io import DEFAULT_MAX_PIXELS, decode_image, fit_bit_depth

REPORT_FILE = "report.html"
CROPS_DIR = "report"
MAX_PHOTOS = 8
REFERENCE_BPP = 0.5
CROP = 256
BLOCK = 8  # JPEG's block: crops start on its grid, so block edges fall where they do in the file
ZOOM = 2
PLOT_PATTERN = "rd*.png"
PLOT_ORDER = tuple(PLOT_FILES.values())  # PSNR first; others after, by name
COMPARED = ("jpeg", "jpegli")  # The alternatives coded at the sandwich's bytes.
LABELS = {"source": "source", "jpeg": "plain JPEG", "jpegli": "jpegli",
          SANDWICH: "sandwich", "view": "bottleneck as viewed"}


@dataclasses.dataclass(frozen=True)
class Operating:
    """The sandwich rate shown: a model and step, and the front's point it is."""

    model_id: str
    qstep: float
    bpp: float
    psnr: float


@dataclasses.dataclass
class Column:
    """One picture of a photo: what made it, its file's size, its pixels
    (the source's container and bit depth, for the metrics) and its scores."""

    kind: str
    setting: str
    nbytes: int
    pixels: np.ndarray
    quality: int | None = None
    crop_file: str = ""
    scores: dict = dataclasses.field(default_factory=dict)
    note: str = ""


@dataclasses.dataclass
class Photo:
    """One photo's row of the page: its size, the crop's region, its columns."""

    name: str
    height: int
    width: int
    bit_depth: int
    region: tuple[int, int, int, int]  # top, left, height, width
    columns: list[Column]
    notes: list[str]


def operating_point(summary: dict, reference_bpp: float = REFERENCE_BPP) -> Operating:
    """The PSNR front's point nearest `reference_bpp` (in log rate), as the
    model and step that measured it: the front is made of models' own points
    (`metrics.upper_envelope`), which it lists (`model`, `qstep`), or else
    which are found among the models' curves."""
    curves = {m["name"]: m["results"] for m in summary["methods"]}
    front = curves[SANDWICH]
    nearest = min(range(len(front["bpp"])),
                  key=lambda i: abs(math.log(front["bpp"][i] / reference_bpp)))
    bpp, psnr = front["bpp"][nearest], front["psnr"][nearest]
    if "model" in front and "qstep" in front:
        return Operating(front["model"][nearest], float(front["qstep"][nearest]), bpp, psnr)
    for model_id in sorted(summary["own_baseline"]):
        curve = curves[model_id]
        for qstep, b, p in zip(curve["qstep"], curve["bpp"], curve["psnr"]):
            if b == bpp and p == psnr:
                return Operating(model_id, float(qstep), bpp, psnr)
    raise ValueError(f"the front's point at {bpp} bpp is no model's point")


def detail_region(luma: np.ndarray, size: int = CROP, block: int = BLOCK) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the `size` x `size` window (the whole
    side where the photo is smaller) on the `block` grid whose blocks have
    the largest summed luma variance; the first such window in raster order."""
    height, width = luma.shape
    crop_h, crop_w = min(size, height), min(size, width)
    rows, cols = height // block, width // block
    win_h, win_w = crop_h // block, crop_w // block
    if win_h == 0 or win_w == 0:
        return 0, 0, crop_h, crop_w
    blocks = luma[:rows * block, :cols * block].astype(np.float64).reshape(
        rows, block, cols, block).var(axis=(1, 3))
    summed = np.zeros((rows + 1, cols + 1))
    summed[1:, 1:] = blocks.cumsum(0).cumsum(1)
    windows = (summed[win_h:, win_w:] - summed[:-win_h, win_w:] - summed[win_h:, :-win_w]
               + summed[:-win_h, :-win_w])
    top, left = np.unravel_index(np.argmax(windows), windows.shape)
    return int(top) * block, int(left) * block, crop_h, crop_w


def luma(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 luma of 8-bit RGB, what a JPEG encoder codes as Y."""
    return rgb8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def as_8bit(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """The top 8 bits of a deeper image (rounded down, as the baseline
    does); an 8-bit one as it is."""
    return fit_bit_depth(pixels, bit_depth, 8) if bit_depth > 8 else pixels.astype(np.uint8)


def scores(source: np.ndarray, image: np.ndarray, bit_depth: int,
           measured=METRICS) -> dict:
    """PSNR and those of MS-SSIM and Butteraugli (max, 3-norm) in `measured`
    (the evaluation's `--metrics`: a run that left Butteraugli out for its
    cost does not pay it here) of a whole image against its source; one that
    cannot be taken (MS-SSIM of a photo smaller than its five scales need,
    say) is None with the reason beside it."""
    from sandwich import perceptual

    out = {"psnr": float(metrics.psnr(image[None], source[None], bit_depth)[0])}
    if "ms-ssim" in measured:
        try:
            out["ms_ssim"] = float(perceptual.ms_ssim(source, image, bit_depth=bit_depth))
        except ValueError as e:
            out["ms_ssim"], out["ms_ssim_undefined"] = None, str(e)
    if "butteraugli" in measured:
        try:
            out["butteraugli"], out["butteraugli_3norm"] = map(
                float, perceptual.butteraugli(source, image, bit_depth=bit_depth))
        except (ValueError, FileNotFoundError) as e:  # too small; libjxl-devtools missing
            out["butteraugli"] = out["butteraugli_3norm"] = None
            out["butteraugli_undefined"] = out["butteraugli_3norm_undefined"] = str(e)
    return out


def _slug(path: str, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", posixpath.basename(path.rstrip("/")))[:60]
    return f"{index:02d}-{name}"


def _png(rgb8: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


class Coder:
    """Codes photos at the operating point: the model loaded once."""

    def __init__(self, model_dirs, point: Operating, model_bit_depth: int, *, tile=None,
                 halo=None, max_pixels: int = DEFAULT_MAX_PIXELS, measured=METRICS):
        by_id = {model_handler.read_spec(d).model_id: d for d in model_dirs}
        if point.model_id not in by_id:
            raise ValueError(f"model {point.model_id!r} is not among {sorted(by_id)}")
        self.model = model_handler.load(by_id[point.model_id], tile=tile, halo=halo)
        self.point, self.bit_depth, self.max_pixels = point, model_bit_depth, max_pixels
        self.metrics = tuple(measured)

    def photo(self, path: str, measured_bits: int | None) -> Photo:
        """The columns of one photo, their crops not yet written."""
        metadata = FileSystems.match([path])[0].metadata_list[0]
        with FileSystems.open(path) as f:
            data = f.read()
        image = decode_image(data, max_pixels=self.max_pixels)
        source = fit_bit_depth(image.pixels, image.bit_depth, self.bit_depth)
        depth = self.bit_depth
        height, width = source.shape[:2]
        spec, qstep = self.model.spec, self.point.qstep
        sandwich_file, reconstruction = next(sandwich_files(
            self.model, source, image.bit_depth, [qstep], batch_jobs.source_stamp(metadata),
            max_pixels=self.max_pixels))
        budget = len(sandwich_file)
        notes = []
        if measured_bits is not None and measured_bits != 8 * budget:
            notes.append(f"this sandwich file has {budget} bytes, the evaluation measured "
                         f"{measured_bits / 8:g}: the source or the model changed since")
        columns = [Column("source", f"{image.format.upper()} file, {image.bit_depth}-bit",
                          len(data), source)]
        ceiling = EightBitCeiling(depth) if depth > 8 else None
        rgb = source if ceiling is None else ceiling.rgb(source)
        for name in COMPARED:
            quality, file, pixels = alternatives.largest_quality_within(name, rgb, budget)
            column = Column(name, f"quality {quality}", len(file),
                            pixels if ceiling is None else ceiling.back(pixels, source.shape),
                            quality)
            if len(file) > budget:
                column.note = f"over budget: even quality 1 takes {len(file)} bytes"
            columns.append(column)
        columns.append(Column(SANDWICH, f"{spec.model_id}, step {qstep:g}", budget,
                              reconstruction))
        if spec.factor == 1 and spec.bit_depth == 8:
            columns.append(Column("view", "the same file, no post-processor", budget,
                                  alternatives.pillow_decode(sandwich_file)))
        elif spec.factor > 1:
            notes.append(f"the bottleneck ({spec.model_id}) is 1/{spec.factor} of the photo's "
                         "sides: a viewer shows a smaller picture, so it is not set beside "
                         "the others")
        else:
            notes.append(f"the bottleneck ({spec.model_id}) is the {spec.bit_depth}-bit source "
                         "rounded down to 8 bits for the codec: no reading of it compares with "
                         "the source's pixels, so it is not set beside the others")
        for column in columns[1:]:
            column.scores = scores(source, column.pixels, depth, self.metrics)
        region = detail_region(luma(as_8bit(source, depth)))
        return Photo(posixpath.basename(path), height, width, image.bit_depth, region, columns,
                     notes)


def _plots(output_dir: str) -> list[str]:
    """The RD plots' names beside the summary, `rd.png` first."""
    matched = FileSystems.match([FileSystems.join(output_dir, PLOT_PATTERN)])[0].metadata_list
    names = {FileSystems.split(m.path)[1] for m in matched}
    return sorted(names, key=lambda n: (PLOT_ORDER.index(n) if n in PLOT_ORDER
                                        else len(PLOT_ORDER), n))


def _bd_number(key: str, value) -> str:
    return f"{value:+.1f}%" if "rate" in key else f"{value:+.2f}"


_BD_HEADINGS = {"bd_rate": ("BD-rate", "% bits at equal PSNR"), "bd_psnr": ("BD-PSNR", "dB"),
                "bd_rate_ms_ssim": ("BD-rate", "% bits at equal MS-SSIM"),
                "bd_rate_butteraugli": ("BD-rate", "% bits at equal Butteraugli")}


def _bd_heading(key: str) -> str:
    """A BD metric's column heading: named for the known ones, else the key
    with its unit (a rate in %, anything else in the metric's own unit)."""
    name, unit = _BD_HEADINGS.get(key, (key.replace("_", "-"), "%" if "rate" in key else ""))
    return f"{html.escape(name)}<br><small>{html.escape(unit)}</small>"


def bd_tables(bd: dict) -> str:
    """One table per reference: a row per method, a column per BD metric
    (every key of the entries but the `*_undefined` reasons, in the order
    they first appear), an undefined one as 'undefined' with its reason
    as the cell's tooltip and in a note below."""
    parts = []
    for reference, compared in bd.items():
        keys = []
        for entry in compared.values():
            keys += [k for k in entry if not k.endswith("_undefined") and k not in keys]
        head = "".join(f"<th>{_bd_heading(k)}</th>" for k in keys)
        rows, reasons = [], {}
        for method, entry in compared.items():
            cells = []
            for key in keys:
                value = entry.get(key)
                if value is None:
                    reason = entry.get(f"{key}_undefined", "not measured")
                    mark = reasons.setdefault(reason, len(reasons) + 1)
                    cells.append(f'<td class="undef" title="{html.escape(reason)}">'
                                 f"undefined<sup>{mark}</sup></td>")
                else:
                    good = (value < 0) if "rate" in key else (value > 0)
                    cells.append(f'<td class="{"good" if good else "bad"}">'
                                 f"{_bd_number(key, value)}</td>")
            rows.append(f"<tr><th>{html.escape(method)}</th>{''.join(cells)}</tr>")
        notes = "".join(f"<li><sup>{n}</sup> {html.escape(r)}</li>" for r, n in reasons.items())
        parts.append(f"<div><h3>against {html.escape(reference)}</h3><table><tr><th>method</th>"
                     f"{head}</tr>{''.join(rows)}</table>"
                     + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</div>")
    return '<div class="row">' + "\n".join(parts) + "</div>"



# The scores of each column: key, heading, decimals, whether higher is better.
SCORES = (("psnr", "PSNR dB", 2, True), ("ms_ssim", "MS-SSIM", 4, True),
          ("butteraugli", "Butteraugli max", 2, False),
          ("butteraugli_3norm", "Butteraugli 3-norm", 2, False))


def _score(value, digits: int, reason: str = "") -> str:
    if value is None:
        return f'<span title="{html.escape(reason)}">n/a</span>'
    return "&infin;" if math.isinf(value) else f"{value:.{digits}f}"


def _size(column: Column, photo: Photo) -> str:
    return f"{column.nbytes:,} bytes, {8 * column.nbytes / (photo.height * photo.width):.3f} bpp"


def _photo_table(photo: Photo) -> str:
    """The columns' sizes and scores in one table, the best score of each
    metric in bold: the numbers compared at a glance, the crops below."""
    coded = [c for c in photo.columns if c.scores]
    shown = [row for row in SCORES if any(row[0] in c.scores for c in coded)]
    best = {}
    for key, _, _, higher in shown:
        values = [c.scores[key] for c in coded if c.scores.get(key) is not None]
        if values:
            best[key] = max(values) if higher else min(values)
    head = "".join(f"<th>{heading}</th>" for _, heading, _, _ in shown)
    rows = []
    for column in photo.columns:
        cells = []
        for key, _, digits, _ in shown:
            if not column.scores:
                cells.append("<td></td>")
                continue
            value = column.scores.get(key)
            text = _score(value, digits, column.scores.get(f"{key}_undefined", ""))
            cells.append(f"<td><b>{text}</b></td>" if value is not None and value == best.get(key)
                         else f"<td>{text}</td>")
        rows.append(f"<tr><th>{LABELS[column.kind]}</th>"
                    f'<td class="setting">{html.escape(column.setting)}</td>'
                    f"<td>{column.nbytes:,}</td>"
                    f"<td>{8 * column.nbytes / (photo.height * photo.width):.3f}</td>"
                    f"{''.join(cells)}</tr>")
    return (f'<table><tr><th>method</th><th class="setting">setting</th><th>bytes</th>'
            f"<th>bpp</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _figure(column: Column, photo: Photo) -> str:
    top, left, height, width = photo.region
    lines = [f"<b>{LABELS[column.kind]}</b>, {html.escape(column.setting)}", _size(column, photo)]
    if column.scores:
        lines[-1] += f", {_score(column.scores['psnr'], 2)} dB"
    if column.note:
        lines.append(f'<span class="warn">{html.escape(column.note)}</span>')
    data = f' data-method="{column.kind}" data-bytes="{column.nbytes}"' + (
        "" if column.quality is None else f' data-quality="{column.quality}"')
    return (f'<figure{data}><img src="{html.escape(column.crop_file)}" width="{ZOOM * width}" '
            f'height="{ZOOM * height}" alt="{LABELS[column.kind]}, crop of '
            f'{html.escape(photo.name)}"><figcaption>{"<br>".join(lines)}</figcaption></figure>')


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1800px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } tr > th:first-child, .setting { text-align: left; }
td.good { color: #0a6b2d; } td.bad { color: #a51d1d; } td.undef { color: #888; }
.notes { color: #666; font-size: .9em; margin-top: 0; } .warn { color: #a51d1d; }
.plots img { width: 600px; max-width: 100%; height: auto; border: 1px solid #eee;
             margin: .3em; }
.row { display: flex; flex-wrap: wrap; gap: 12px 28px; align-items: flex-start; }
.row .notes { max-width: 28em; }
figure { margin: 0; }
figure img { image-rendering: pixelated; display: block; border: 1px solid #bbb; }
figcaption { font-size: .85em; max-width: 512px; }
"""


def render(summary: dict, plots: list[str], photos: list[Photo], point: Operating | None,
           total_photos: int, reference_bpp: float, skipped: str = "") -> str:
    """The page's HTML."""
    esc = html.escape
    described = "".join(f"<li><b>{esc(m['name'])}</b>: {esc(m['description'])}</li>"
                        for m in summary["methods"])
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Sandwich evaluation</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>Sandwiched JPEG: rate-distortion evaluation</h1>",
        f"<p>{summary['images']} held-out images, {summary['bit_depth']}-bit; every rate is a "
        "real file's size over the source's pixels. Methods:</p>", f"<ul>{described}</ul>",
        "<h2>Rate-distortion curves</h2>",
        '<div class="plots">' + "".join(f'<img src="{esc(p)}" alt="{esc(p)}">' for p in plots)
        + "</div>",
        "<h2>Bj&oslash;ntegaard deltas</h2>",
        "<p>Of each method (row) against each reference, over the range both curves cover: "
        "BD-rate in % of the reference's bits (negative: fewer bits for the same quality), "
        "BD-PSNR in dB (positive: better at the same rate). Hover over an undefined one for "
        "its reason."
        + (" The sandwich row takes each metric on its own front (the models' envelope in "
           "that metric)." if any(m["name"].startswith(f"{SANDWICH}-")
                                  for m in summary["methods"]) else "") + "</p>",
        bd_tables(summary["bd"]),
        "<h2>Side by side at equal bytes</h2>",
    ]
    if skipped:
        parts.append(f"<p>{esc(skipped)}</p>")
    else:
        parts.append(
            f"<p>The sandwich front's point nearest {reference_bpp:g} bpp: model "
            f"<b>{esc(point.model_id)}</b> at step {point.qstep:g} ({point.bpp:.3f} bpp, "
            f"{point.psnr:.2f} dB over all images). Each photo is coded by it as the "
            "evaluator codes it; plain JPEG and jpegli are then at the largest quality whose "
            "file is at most the sandwich file's bytes. The crop is the "
            f"{CROP}&times;{CROP}-pixel region (the whole photo where smaller) of most detail: "
            "the largest summed variance of the source's 8&times;8 luma blocks. It is shown at "
            f"{ZOOM}&times; with no smoothing; scores are of the whole image against the "
            "source (Butteraugli: lower is better).</p>")
        if len(photos) < total_photos:
            parts.append(f"<p>The first {len(photos)} of {total_photos} photos (by name) are "
                         "shown: each is coded again to write this page.</p>")
        for photo in photos:
            top, left, height, width = photo.region
            parts.append(f"<h3>{esc(photo.name)}</h3><p>{photo.width}&times;{photo.height}, "
                         f"{photo.bit_depth}-bit; crop at x={left}, y={top}, "
                         f"{width}&times;{height}"
                         + ("" if photo.bit_depth == 8 else ", shown as its top 8 bits")
                         + "</p>")
            parts += [f'<p class="warn">{esc(n)}</p>' for n in photo.notes]
            parts.append(_photo_table(photo))
            figures = "".join(_figure(c, photo) for c in photo.columns)
            parts.append(f'<div class="row" data-photo="{esc(photo.name)}" '
                         f'data-region="{top},{left},{height},{width}">{figures}</div>')
    parts.append("<p class=\"notes\">Written by pipelines.report from the evaluator's "
                 f"{SUMMARY_FILE} and {PER_IMAGE_FILE}.</p></body></html>")
    return "\n".join(parts)


def write_report(output_dir: str, summary: dict, measurements, models, *, tile=None, halo=None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_photos: int = MAX_PHOTOS,
                 reference_bpp: float = REFERENCE_BPP) -> str:
    """Writes `report.html` and its crops (`report/`) into `output_dir`
    (local or gs://) from the evaluator's `summary` and `measurements`
    (`per_image.jsonl`'s `Measurement`s), coding the first `max_photos`
    photos again with the export dirs `models`; returns the page's path.

    The crops are written first and the page last, each atomically, so a
    page never names a crop that is not there.
    """
    images = sorted({m.image for m in measurements if m.method not in LEVELS})
    shown = images[:max_photos]
    point, photos, skipped = None, [], ""
    if not shown:
        skipped = "No photos to show (max_photos is 0)." if images else "No photos measured."
    else:
        point = operating_point(summary, reference_bpp)
        coder = Coder(models, point, summary["bit_depth"], tile=tile, halo=halo,
                      max_pixels=max_pixels, measured=summary.get("metrics", METRICS))
        measured = {m.image: m.bits for m in measurements
                    if m.method == point.model_id and m.qstep == point.qstep}
        for index, path in enumerate(shown):
            photo = coder.photo(path, measured.get(path))
            top, left, height, width = photo.region
            for column in photo.columns:
                crop = as_8bit(column.pixels[top:top + height, left:left + width],
                               summary["bit_depth"])
                column.crop_file = f"{CROPS_DIR}/{_slug(path, index)}-{column.kind}.png"
                batch_jobs.write_atomically(FileSystems.join(output_dir, column.crop_file),
                                            _png(crop))
                column.pixels = None  # The page needs only the crop; a large photo is freed.
            photos.append(photo)
    page = render(summary, _plots(output_dir), photos, point, len(images), reference_bpp,
                  skipped)
    path = FileSystems.join(output_dir, REPORT_FILE)
    batch_jobs.write_atomically(path, page.encode())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("results", help="sandwich-eval's --output directory, local or gs://")
    parser.add_argument("--models", nargs="+", required=True,
                        help="the export dirs (or directories of them) the evaluation ran")
    parser.add_argument("--photos", type=int, default=MAX_PHOTOS,
                        help="how many photos (by name) to show side by side")
    parser.add_argument("--bpp", type=float, default=REFERENCE_BPP,
                        help="the rate the side-by-side is shown near")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS)
    args = parser.parse_args(argv)
    results = args.results.rstrip("/")
    with FileSystems.open(FileSystems.join(results, SUMMARY_FILE)) as f:
        summary = json.loads(f.read())
    measurements = read_measurements(results)
    models = tuple(d for m in args.models for d in model_handler.export_dirs(m))
    print(write_report(results, summary, measurements, models, max_pixels=args.max_pixels,
                       max_photos=args.photos, reference_bpp=args.bpp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

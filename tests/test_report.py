"""The report page: written by the real evaluator, opened in a real headless Chromium.

The page is for people, so the checks are what a person would notice: an
image that does not load, a blank page, a "same bytes" comparison whose
JPEGs are in fact bigger, crops of different regions.
"""
import contextlib
import html.parser
import io
import json

import numpy as np
import pytest
from PIL import Image

from pipelines import evaluate, report
from sandwich import alternatives
from tests import browser, photos
from tests.sandwich_exports import export_sandwich

# A photo larger than the crop (so the region is chosen) and one no larger.
PHOTOS = {"motorcycle_left.png": (288, 352), "ihc.png": (256, 256)}


class _Page(html.parser.HTMLParser):
    """The page's <img> sources, and its side-by-side rows with their figures' data."""

    def __init__(self):
        super().__init__()
        self.images, self.rows = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
            if self.rows and self.rows[-1]["figures"]:
                self.rows[-1]["figures"][-1].setdefault("src", attrs["src"])
        elif tag == "div" and "data-photo" in attrs:
            region = tuple(int(v) for v in attrs["data-region"].split(","))
            self.rows.append({"photo": attrs["data-photo"], "region": region, "figures": []})
        elif tag == "figure" and self.rows:
            self.rows[-1]["figures"].append({k[5:]: v for k, v in attrs.items()
                                             if k.startswith("data-")})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The evaluator on two held-out crops with one factor-1 model (its
    processors perturbed, so the bottleneck differs from the reconstruction)."""
    held_out = tmp_path_factory.mktemp("held_out")
    for name, (height, width) in PHOTOS.items():
        Image.fromarray(photos.load(name)[:height, :width]).save(held_out / name)
    output = tmp_path_factory.mktemp("results")
    model = export_sandwich("high_res", model_id="x1-perturbed", factor=1, perturb=0.02, seed=1)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        summary = evaluate.run([
            "--models", model, f"--input={held_out}/*.png", f"--output={output}",
            "--qsteps", "12", "24", "48", "--baseline_qsteps", "8", "16", "32", "64",
            "--alternatives", "jpeg", "jpegli", "--qualities", "20", "50", "80",
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return held_out, output, summary, printed.getvalue()


@pytest.fixture(scope="module")
def page(evaluated):
    _, output, _, _ = evaluated
    parser = _Page()
    parser.feed((output / report.REPORT_FILE).read_text())
    return parser


def test_the_job_writes_the_report_and_says_where(evaluated, page):
    _, output, summary, printed = evaluated
    assert str(output / report.REPORT_FILE) in printed
    plots = sorted(p.name for p in output.glob("rd*.png"))
    assert "rd.png" in plots
    # Every plot, then five crops per photo: the x1 model's bottleneck is viewable.
    assert sorted(page.images[:len(plots)]) == plots
    assert len(page.images) == len(plots) + 5 * len(PHOTOS)
    assert [row["photo"] for row in page.rows] == sorted(PHOTOS)
    assert all([f["method"] for f in row["figures"]] == ["source", "jpeg", "jpegli", "sandwich",
                                                          "view"] for row in page.rows)
    assert summary["images"] == len(PHOTOS)


def test_every_image_loads_in_chromium_and_the_page_is_not_blank(evaluated, page, tmp_path):
    _, output, _, _ = evaluated
    shot = tmp_path / "report.png"
    loaded = browser.load((output / report.REPORT_FILE).as_uri(), shot)
    assert [i.src for i in loaded] == page.images
    assert all(i.loaded for i in loaded), [i.src for i in loaded if not i.loaded]
    with Image.open(shot) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 1000 and pixels.shape[1] >= browser.WINDOW[0] - 20
    # Photographs' crops and plots, not one flat colour.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_the_jpegs_beside_the_sandwich_cost_at_most_its_bytes(evaluated, page):
    """Re-encoded here at the qualities the page states: each file is the
    size the page says, at most the sandwich file's, and one quality more
    would not fit (the largest quality that does)."""
    held_out, output, _, _ = evaluated
    measured = [json.loads(line) for line in (output / evaluate.PER_IMAGE_FILE).open()]
    point = report.operating_point(json.loads((output / evaluate.SUMMARY_FILE).read_text()))
    for row in page.rows:
        figures = {f["method"]: f for f in row["figures"]}
        budget = int(figures["sandwich"]["bytes"])
        # The sandwich file is the evaluator's: the same bytes it measured.
        assert 8 * budget in {m["bits"] for m in measured
                              if m["method"] == point.model_id and m["qstep"] == point.qstep
                              and m["image"].endswith(row["photo"])}
        rgb = photos.load(row["photo"])[:PHOTOS[row["photo"]][0], :PHOTOS[row["photo"]][1]]
        for name in ("jpeg", "jpegli"):
            quality = int(figures[name]["quality"])
            data, _ = alternatives.code(name, rgb, quality)
            assert len(data) == int(figures[name]["bytes"]) <= budget
            if quality < 100:
                assert len(alternatives.code(name, rgb, quality + 1)[0]) > budget


def test_every_crop_is_the_same_region_of_its_photo(evaluated, page):
    _, output, _, _ = evaluated
    for row in page.rows:
        top, left, height, width = row["region"]
        source = photos.load(row["photo"])[:PHOTOS[row["photo"]][0], :PHOTOS[row["photo"]][1]]
        assert (height, width) == (min(report.CROP, source.shape[0]),
                                   min(report.CROP, source.shape[1]))
        crops = {}
        for figure in row["figures"]:
            with Image.open(output / figure["src"]) as crop:
                crops[figure["method"]] = np.asarray(crop)
        assert all(c.shape == (height, width, 3) for c in crops.values())
        np.testing.assert_array_equal(crops["source"],
                                      source[top:top + height, left:left + width])
        # The methods differ from the source and from one another.
        assert len({c.tobytes() for c in crops.values()}) == len(crops)


def test_the_crop_is_where_the_detail_is():
    """A flat photo with one noisy patch: the window covers the patch."""
    rng = np.random.default_rng(0)
    luma = np.full((600, 800), 128.0)
    luma[320:400, 480:560] += rng.normal(0, 40, (80, 80))
    top, left, height, width = report.detail_region(luma, size=128)
    assert (height, width) == (128, 128) and top % 8 == 0 and left % 8 == 0
    assert top <= 320 and top + 128 >= 400 and left <= 480 and left + 128 >= 560
    assert report.detail_region(luma[:100, :90], size=128) == (0, 0, 100, 90)


class _Cells(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells = []

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self.cells.append(dict(attrs))


def test_an_undefined_bd_metric_shows_its_reason():
    bd = {"jpeg": {"x1": {"bd_rate": -4.6, "bd_psnr": None,
                          "bd_psnr_undefined": "the curves share no rate range"}}}
    page = report.bd_tables(bd)
    parser = _Cells()
    parser.feed(page)
    assert [c.get("title") for c in parser.cells] == [None, "the curves share no rate range"]
    assert "-4.6%" in page and page.count("the curves share no rate range") == 2  # tooltip, note

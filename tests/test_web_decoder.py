"""The post-processor in the browser: `web/sandwich-decoder.mjs` in a real headless Chromium.

Perturbed factor-1 and factor-2 exports (their processors change pixels),
a crop of a bundled photograph coded by `codec.Codec`, the web exports
written by `codec.web_export`, and a page served from 127.0.0.1 (cross-
origin isolated, as `codec.web_export.serve` serves it) that draws each
file on a canvas: the canvas, read back as PNG, must match
`Codec.decompress` (which is `sandwich-decompress`'s PNG) within
`MIN_PSNR`. Files the page cannot decode (no header, an unknown model, the
crafted headers of `test_untrusted_input`) are drawn as the plain JPEG
they are, with a console warning and no uncaught error. The header reader
is held to the Python one case by case, and both read the shared fixture
`web/fixtures/sandwich-x2.jpg` to the same `sandwich-x2.header.json`.
"""
import base64
import dataclasses
import io
import json
import math
import os
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from codec import Codec, bottleneck_format, web_export
from codec.bottleneck_format import BottleneckError, Header
from sandwich import alternatives, metrics
from tests import browser
from tests.sandwich_exports import export_sandwich
from tests.test_untrusted_input import HEADER, _comment

MIN_PSNR = 45.0
QSTEP = 16  # not the models' trained 20: the step must reach the network
FIXTURE = web_export.WEB_DIR / "fixtures" / "sandwich-x2.jpg"
FIXTURE_HEADER = FIXTURE.with_name("sandwich-x2.header.json")
# A crop of the package's bundled held-out photo, odd on both sides (off
# the U-Net's 16-pixel grid and the factor's).
PHOTO = pathlib.Path(__file__).parent.parent / "sandwich" / "data" / "samples" / "coffee.png"
CROP = (slice(37, 240), slice(101, 402))
# Model id -> (scenario, factor): a gray model's one-component JPEG the
# browser decodes to R = G = B, and its graph reads one.
MODELS = {"web-x1": ("high_res", 1), "web-x2": ("high_res", 2), "web-gray": ("gray", 1)}
SCRIPT_TIMEOUT_S = 180
# The page: the module on `window`, every console warning and uncaught error kept.
PAGE = """<!doctype html><meta charset="utf-8"><canvas id="c"></canvas>
<script type="module">
window.logged = [];
for (const level of ["warn", "error"]) {
  const original = console[level];
  console[level] = (...args) => { window.logged.push([level, args.join(" ")]); original(...args); };
}
window.addEventListener("error", (e) => window.logged.push(["uncaught", String(e.message)]));
window.addEventListener("unhandledrejection", (e) => window.logged.push(["uncaught", String(e.reason)]));
import * as sandwich from "./sandwich-decoder.mjs";
window.sandwich = sandwich;
window.ready = true;
</script>"""
# Draws a file, then hands back the result and the canvas as a PNG.
DRAW = """
const [file, options, done] = arguments;
const canvas = document.getElementById("c");
sandwich.drawSandwich(canvas, file, options).then(
  (shown) => done({...shown, png: canvas.toDataURL("image/png")}),
  (error) => done({kind: "threw", reason: String(error)}));
"""
# Parses comments (base64) with the page's reader: the header, or the refusal.
PARSE = """
const [comments, done] = arguments;
done(comments.map((b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try { return {header: sandwich.parseHeader(bytes)}; }
  catch (e) { return {refused: e.message, name: e.name}; }
}));
"""


def _require_runtime():
    """Skips without onnxruntime-web or tf2onnx (fails on CI, which installs both)."""
    missing = []
    if not (web_export.RUNTIME_DIR / web_export.WASM_FILES[0]).exists():
        missing.append(f"onnxruntime-web (npm ci --prefix {web_export.WEB_DIR})")
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        missing.append("tf2onnx and onnxruntime (pip install -e '.[test]')")
    if missing:
        reason = f"the web decoder needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so these must be installed: {reason}")
        pytest.skip(reason)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(metrics.psnr(a[None], b[None], 8)[0])


@dataclasses.dataclass
class Site:
    """The served directory: module, runtime, web exports, files."""

    root: pathlib.Path
    codec: Codec  # both models
    expected: dict  # file name -> Codec.decompress's pixels
    models: list  # the web exports' paths below root


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _require_runtime()
    root = tmp_path_factory.mktemp("site")
    web_export.copy_runtime(str(root))
    (root / "index.html").write_text(PAGE)
    with Image.open(PHOTO) as image:
        crop = np.asarray(image.convert("RGB"))[CROP]
    expected = {}
    dirs = []
    for model_id, (scenario, factor) in MODELS.items():
        model_dir = export_sandwich(scenario, model_id=model_id, factor=factor, perturb=0.05)
        dirs.append(model_dir)
        web_export.export(model_dir, str(root / "models" / model_id))
        codec = Codec.load(model_dir)
        data = codec.compress(crop, qstep=QSTEP)
        (root / f"{model_id}.jpg").write_bytes(data)
        expected[f"{model_id}.jpg"] = codec.decompress(data)
    # The fallbacks (plain JPEG, jpegli) and an identity at x2: files that need no network.
    both = Codec.load(",".join(dirs))
    height, width = crop.shape[:2]
    fallback = bottleneck_format.encode(crop, Header.fallback(60, height, width, 8))
    jpegli = bottleneck_format.encode(crop, Header.fallback(
        60, height, width, 8, model_id=bottleneck_format.JPEGLI_FALLBACK))
    spec = both.specs["web-x2"]
    identity = bottleneck_format.encode(
        bottleneck_format.identity_bottleneck(spec, crop),
        Header.identity(spec, 24.0, height, width, 8))
    for name, data in {"fallback.jpg": fallback, "jpegli.jpg": jpegli,
                       "identity-x2.jpg": identity}.items():
        (root / name).write_bytes(data)
        expected[name] = both.decompress(data)
    return Site(root, both, expected, [f"models/{m}/" for m in MODELS])


@pytest.fixture(scope="module")
def page(site):
    """The page open in headless Chromium, served from 127.0.0.1."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.require()
    with web_export.serve(str(site.root)) as url, browser.chromium() as driver:
        driver.set_script_timeout(SCRIPT_TIMEOUT_S)
        driver.get(url + "index.html")
        WebDriverWait(driver, browser.TIMEOUT_S).until(
            lambda d: d.execute_script("return window.ready === true"))
        yield driver


def _draw(page, file: str, **options) -> tuple[dict, np.ndarray]:
    """What the page draws of `file`: its result and the canvas's RGB."""
    shown = page.execute_async_script(DRAW, file, {"numThreads": 1, **options})
    png = base64.b64decode(shown.pop("png", "data:,").split(",", 1)[1] or "")
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) if png else None
    return shown, pixels


def _logged(page) -> list:
    """The console warnings and uncaught errors so far; the log emptied."""
    return page.execute_script("const l = window.logged; window.logged = []; return l;")


def _uncaught(logged) -> list:
    return [message for level, message in logged if level == "uncaught"]


def test_the_web_exports_agree_with_the_savedmodels_on_the_photo(site):
    """onnxruntime (Python) on the photo's decoded bottleneck, whole, against
    `Codec.decompress`: within one level, as `web_export` checked it on
    synthetic images off the grid."""
    import onnxruntime

    for model_id in MODELS:
        web = json.loads((site.root / "models" / model_id / web_export.WEB_MODEL_FILE).read_text())
        assert (web["model_id"], (web["scenario"], web["factor"])) == (model_id, MODELS[model_id])
        assert max(web["agreement"]["max_abs_diff"].values()) <= web_export.TOLERANCE
        data = (site.root / f"{model_id}.jpg").read_bytes()
        header, _ = bottleneck_format.decode(data)
        session = onnxruntime.InferenceSession(
            str(site.root / "models" / model_id / web["postprocessor"]),
            providers=["CPUExecutionProvider"])
        # Decoded as a browser does: RGB, a gray JPEG as R = G = B.
        ours = session.run(None, {"decoded": alternatives.pillow_decode(data),
                                  "size": np.array([header.height, header.width], np.int32),
                                  "qstep": np.array(header.qstep, np.float32)})[0]
        expected = site.expected[f"{model_id}.jpg"]
        assert ours.shape == expected.shape
        assert np.abs(ours.astype(int) - expected).max() <= web_export.TOLERANCE


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_the_page_draws_what_python_decompresses(site, page, model_id):
    file = f"{model_id}.jpg"
    shown, pixels = _draw(page, file, models=site.models)
    expected = site.expected[file]
    assert shown["kind"] == "model", shown
    assert shown["header"]["model_id"] == model_id and shown["header"]["qstep"] == QSTEP
    assert pixels.shape == expected.shape
    # The network changes pixels: its scenario's identity (the JPEG, or its
    # Lanczos upsampling) drawn instead would not pass.
    header, decoded = bottleneck_format.decode((site.root / file).read_bytes())
    identity = bottleneck_format.identity_reconstruction(
        dataclasses.replace(header, model_id=bottleneck_format.IDENTITY), decoded)
    assert _psnr(identity, expected) < MIN_PSNR
    assert _psnr(pixels, expected) >= MIN_PSNR, np.abs(pixels.astype(int) - expected).max()
    assert not _uncaught(_logged(page))


def test_tiles_are_laid_out_as_in_python(site, page):
    """Tiles without a halo, whose seams show: the page agrees with the
    Python decoder's tiles only if it lays them out alike."""
    tile, halo = 64, 0
    data = (site.root / "web-x2.jpg").read_bytes()
    expected = Codec.load(export_sandwich("high_res", model_id="web-x2", factor=2, perturb=0.05),
                          tile=tile, halo=halo).decompress(data)
    assert np.abs(expected.astype(int) - site.expected["web-x2.jpg"]).max() > 8  # the seams
    shown, pixels = _draw(page, "web-x2.jpg", models=site.models, tile=tile, halo=halo)
    assert shown["kind"] == "model"
    assert np.abs(pixels.astype(int) - expected).max() <= web_export.TOLERANCE


@pytest.mark.parametrize("file, kind", [("fallback.jpg", "plain-jpeg"), ("jpegli.jpg", "jpegli"),
                                        ("identity-x2.jpg", "identity")])
def test_files_that_need_no_network_draw_as_python_decodes_them(site, page, file, kind):
    shown, pixels = _draw(page, file, models=site.models)
    assert shown["kind"] == kind, shown
    assert _psnr(pixels, site.expected[file]) >= MIN_PSNR
    assert not _logged(page)  # nothing to warn about


def test_a_headerless_jpeg_or_an_unknown_model_is_drawn_as_the_plain_jpeg(site, page):
    with Image.open(PHOTO) as image:
        rgb = np.asarray(image.convert("RGB"))[:90, :130]
    (site.root / "headerless.jpg").write_bytes(alternatives.plain_jpeg(rgb, 80))
    shutil.copyfile(FIXTURE, site.root / FIXTURE.name)  # model "fixture-x2": not in the set
    for file, reason in [("headerless.jpg", "not a sandwich bottleneck"),
                         (FIXTURE.name, "made by model 'fixture-x2', not by a model of the set")]:
        shown, pixels = _draw(page, file, models=site.models)
        assert (shown["kind"], shown["reason"][:len(reason)]) == ("plain", reason)
        plain = alternatives.pillow_decode((site.root / file).read_bytes())
        assert _psnr(pixels, plain) >= MIN_PSNR
        logged = _logged(page)
        assert [level for level, _ in logged] == ["warn"] and reason in logged[0][1]


def test_a_missing_file_or_web_export_is_a_warning_not_an_error(site, page):
    shown, _ = _draw(page, "missing.jpg", models=site.models)
    assert shown["kind"] == "failed" and "404" in shown["reason"]
    shown, pixels = _draw(page, "web-x1.jpg", models="models/missing/")
    assert shown["kind"] == "plain" and "404" in shown["reason"]
    assert pixels.shape == site.expected["web-x1.jpg"].shape
    logged = _logged(page)
    assert [level for level, _ in logged] == ["warn", "warn"], logged


def _bottleneck(header_comment: bytes, size=(10, 12)) -> bytes:
    """A 3-component JPEG of `size` with this comment."""
    return bottleneck_format.jpeg.encode(np.full((*size, 3), 99, np.uint8), 16,
                                         comment=header_comment)


# test_untrusted_input's crafted headers, then files whose header is fine
# but whose JPEG does not carry what it claims.
MALFORMED = {
    "deep nesting": b"[" * 32_000 + b"]" * 32_000,
    "height inf": _comment(height=1e400), "height 1e30": _comment(height=10**30),
    "height true": _comment(height=True), "height 20.5": _comment(height=20.5),
    "width string": _comment(width="24"), "qstep 0": _comment(qstep=0),
    "qstep nan": _comment(qstep=float("nan")), "bit_depth 64": _comment(bit_depth=64),
    "empty model_id": _comment(model_id=""), "sandwich true": _comment(sandwich=True),
}
OURS = dataclasses.replace(HEADER, model_id="web-x2")  # web-x2's fields, 20x24 on 10x12
BAD_FILES = {
    "covers less than it claims": _bottleneck(_comment(height=40, width=48)),
    "decompression bomb": _bottleneck(_comment(height=60000, width=60000),
                                      size=(30000 // 8, 12)),
    "truncated": _bottleneck(HEADER.to_comment())[:-2],
    "model of another set": _bottleneck(HEADER.to_comment()),
    # Header.check_model's refusals (test_untrusted_input's, and the
    # identity's and the fallback's).
    **{f"{field} {value} for web-x2": _bottleneck(
        dataclasses.replace(OURS, **{field: value}).to_comment(), size)
       for field, value, size in [("bit_depth", 10, (10, 12)), ("factor", 4, (5, 6)),
                                  ("scenario", "high_bit_depth", (10, 12)),
                                  ("jpeg_mode", "ycbcr-444", (10, 12))]},
    "identity of no scenario": _bottleneck(
        dataclasses.replace(OURS, model_id="identity", scenario="nonsense").to_comment()),
    "8-bit high_bit_depth identity": _bottleneck(dataclasses.replace(
        OURS, model_id="identity", scenario="high_bit_depth", factor=1, height=10,
        width=12).to_comment()),
    "gray identity in colour": _bottleneck(dataclasses.replace(
        OURS, model_id="identity", scenario="gray", factor=1, height=10,
        width=12).to_comment()),
    "colour identity in gray": _bottleneck(dataclasses.replace(
        OURS, model_id="identity", jpeg_mode="gray").to_comment()),
    "fallback at x2": _bottleneck(
        dataclasses.replace(Header.fallback(60, 20, 24, 8), factor=2).to_comment()),
    "jpegli fallback at x2": _bottleneck(dataclasses.replace(
        Header.fallback(60, 20, 24, 8, model_id=bottleneck_format.JPEGLI_FALLBACK),
        factor=2).to_comment()),
    "jpegli fallback of the plain JPEG's scenario": _bottleneck(dataclasses.replace(
        Header.fallback(60, 10, 12, 8, model_id=bottleneck_format.JPEGLI_FALLBACK),
        scenario=bottleneck_format.FALLBACK).to_comment()),
}


def test_crafted_headers_fall_back_to_the_plain_jpeg_without_a_page_error(site, page):
    files = {f"malformed-{i}.jpg": data for i, data in enumerate(
        [_bottleneck(comment) for comment in MALFORMED.values()] + list(BAD_FILES.values()))}
    for name, data in files.items():
        (site.root / name).write_bytes(data)
    for (case, data), name in zip([*MALFORMED.items(), *BAD_FILES.items()], files):
        with pytest.raises(BottleneckError):  # Python refuses it too
            site.codec.decompress(data)
        shown, pixels = _draw(page, name, models=site.models)
        logged = _logged(page)
        # A browser may still draw a JPEG without its end marker.
        assert shown["kind"] in (("plain", "failed") if case == "truncated" else ("plain",)), (
            case, shown)
        assert not _uncaught(logged), (case, logged)
        assert any(level == "warn" for level, _ in logged), case
        if case != "truncated":  # Flat grey (Pillow cannot open the first, its comment so long).
            plain = alternatives.pillow_decode(_bottleneck(b"", size=pixels.shape[:2]))
            assert _psnr(pixels, plain) >= MIN_PSNR, case


def _python_reads(comment: bytes) -> dict:
    try:
        return {"header": dataclasses.asdict(Header.from_comment(comment))}
    except BottleneckError as e:
        return {"refused": e.reason}


# Beyond test_untrusted_input's: numbers JSON writes as floats where an
# integer is due, strings Python calls unprintable, encodings, fields
# missing, unknown or repeated.
PARITY = [
    *MALFORMED.values(),
    HEADER.to_comment(),
    _comment(height=20.0), _comment(sandwich=2.0), _comment(sandwich=1), _comment(factor=0),
    _comment(qstep=255), _comment(qstep=255.5), _comment(qstep=-1), _comment(psnr=1000),
    _comment(target="bpp<=0.5", psnr=31.25), _comment(psnr=True), _comment(width=-0),
    _comment(model_id="a\u200bb"), _comment(model_id="tab\there"), _comment(model_id="é 日本"),
    _comment(model_id="\ud800"), _comment(model_id="x" * 256), _comment(model_id="x" * 257),
    _comment(model_id="😀" * 256), _comment(scenario=None), _comment(jpeg_mode="rgb"),
    _comment(source_stamp=""), _comment(extra={"nested": [1, 2.5, None]}),
    json.dumps({k: v for k, v in json.loads(HEADER.to_comment()).items()
                if k != "width"}).encode(),
    b"\xef\xbb\xbf" + HEADER.to_comment(), HEADER.to_comment() + b" \n",
    HEADER.to_comment()[:-1] + b',"height":21}', HEADER.to_comment()[:-1] + b",}",
    HEADER.to_comment().replace(b"20", b"020", 1), HEADER.to_comment() + b"{}",
    b'{"sandwich": 2, "height": NaN}', b"[2]", b"2", b"", b"\xff\xfe", b"null",
    HEADER.to_comment().replace(b'"m"', b'"\xc3\x28"'),
    HEADER.to_comment().replace(b'"m"', b'"\\u00e9\\ud83d\\ude00"'),
]


def test_the_header_reader_refuses_what_python_refuses(page):
    """Every case read by both: the same header, or refused by both with a
    reason of the same kind."""
    ours = page.execute_async_script(PARSE, [base64.b64encode(c).decode() for c in PARITY])
    for comment, js in zip(PARITY, ours):
        python = _python_reads(comment)
        shown = comment[:60]
        if "header" in python:
            assert js.get("header") == python["header"], (shown, js)
        else:
            assert js.get("name") == "HeaderError", (shown, python, js)
            kind = python["refused"].split(" ")[:2]
            assert js["refused"].split(" ")[:2] == kind, (shown, python, js)


def test_python_reads_the_shared_fixture_as_its_json_says():
    header = bottleneck_format.read_header(FIXTURE.read_bytes())
    assert dataclasses.asdict(header) == json.loads(FIXTURE_HEADER.read_text())
    assert header.target and header.psnr and header.source_stamp  # every optional field


def test_the_page_reads_the_shared_fixture_as_its_json_says(site, page):
    shutil.copyfile(FIXTURE, site.root / FIXTURE.name)
    read = page.execute_async_script(
        "const [file, done] = arguments; fetch(file).then((r) => r.arrayBuffer()).then("
        "(b) => done(sandwich.readHeader(new Uint8Array(b))), (e) => done(String(e)));",
        FIXTURE.name)
    assert read == json.loads(FIXTURE_HEADER.read_text())
    assert math.isclose(read["psnr"], 31.25)


def test_the_demo_page_shows_the_sandwich_beside_plain_jpeg_at_its_bytes(site, page):
    """`write_demo` as `make demo` runs it: both pictures drawn, the
    sandwich's what Python decompresses, the plain JPEG no larger."""
    from selenium.webdriver.support.ui import WebDriverWait

    with Image.open(PHOTO) as image:
        Image.fromarray(np.asarray(image.convert("RGB"))[CROP]).save(site.root / "crop.png")
    demo = site.root / "demo"
    shutil.copytree(site.root / "models" / "web-x1", demo / "model")
    web_export.write_demo(str(demo), str(site.root / "web-x1.jpg"), str(site.root / "crop.png"))
    page.get(page.current_url.replace("index.html", "demo/index.html"))
    try:
        status = WebDriverWait(page, SCRIPT_TIMEOUT_S).until(
            lambda d: (text := d.find_element("id", "status").text) != "decoding\u2026" and text)
        [plain] = browser.images(page)
        png = page.execute_script("return document.getElementById('sandwich').toDataURL()")
    finally:
        page.get(page.current_url.replace("demo/index.html", "index.html"))
        WebDriverWait(page, browser.TIMEOUT_S).until(
            lambda d: d.execute_script("return window.ready === true"))
    assert status.startswith("(model, decoded in"), status
    assert plain.loaded and (plain.natural_height, plain.natural_width) == (203, 301)
    assert (demo / plain.src).stat().st_size <= (site.root / "web-x1.jpg").stat().st_size
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
                        .convert("RGB"))
    assert _psnr(pixels, site.expected["web-x1.jpg"]) >= MIN_PSNR

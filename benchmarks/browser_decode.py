"""Decoding a sandwich file in the browser: milliseconds per megapixel, and what the page downloads.

A factor-1 and a factor-2 export (made as the tests make them, perturbed,
unless `--model` names exports), their web exports (`codec.web_export`),
and the bundled photographs plus a mosaic of them larger than one tile
(1.2 MP), each coded at the model's step. For every file, in one run on
one machine:

- `browser`: `drawSandwich` of `web/sandwich-decoder.mjs` in headless
  Chromium, onnxruntime-web on WASM with `--threads` threads (the page is
  cross-origin isolated, as `codec.web_export.serve` serves it): fetch from
  127.0.0.1, the browser's JPEG decode, the post-processor, the draw;
- `network`: the post-processor's part of it;
- `python`: `codec.Codec.decompress` on the same bytes (TensorFlow on all
  cores);
- `jpeg`: the browser's plain decode of the same file alone
  (`createImageBitmap` and a draw onto a canvas), what a page without the
  post-processor pays.

Each is the fastest of `--repeats` runs after one warm-up, in milliseconds
per source megapixel (the reconstruction's pixels, also for the x2 file's
quarter-size JPEG); the first decode of a page (runtime and model start)
is printed apart. Then the bytes the page fetched (the Resource Timing
API), as served and gzip-compressed (what a CDN serving it compressed
sends).

    python benchmarks/browser_decode.py [--model EXPORT_DIR ...] [--threads 2]
"""
import argparse
import gzip
import os
import pathlib
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from codec import Codec, exported, web_export  # noqa: E402
from sandwich import samples  # noqa: E402
from tests import browser  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from timing import fastest  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><canvas id="c"></canvas>
<script type="module">
import * as sandwich from "./sandwich-decoder.mjs";
window.sandwich = sandwich;
window.ready = true;
</script>"""
# One decode through the module: its timings.
DECODE = """
const [file, options, done] = arguments;
sandwich.drawSandwich(document.getElementById("c"), file, options).then(done);
"""
# The browser's plain JPEG decode of a file already fetched: milliseconds.
PLAIN = """
const [file, repeats, done] = arguments;
fetch(file).then((r) => r.blob()).then(async (blob) => {
  const times = [];
  for (let i = 0; i <= repeats; i++) {
    const start = performance.now();
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    context.getImageData(0, 0, 1, 1);  // the draw done
    bitmap.close();
    times.push(performance.now() - start);
  }
  done(times.slice(1));
});
"""
RESOURCES = """
return performance.getEntriesByType("resource").map(
  (e) => ({name: e.name, bytes: e.encodedBodySize || e.decodedBodySize}));
"""


def photos() -> dict[str, np.ndarray]:
    """The bundled photographs, and a 3x3 mosaic of crops of them (1.2 MP)."""
    images = {path.stem: samples.load(path) for path in samples.paths()}
    height = min(i.shape[0] for i in images.values())
    width = min(i.shape[1] for i in images.values())
    crops = [i[:height, :width] for i in images.values()]
    rows = [np.concatenate([crops[(3 * r + c) % len(crops)][:, ::1 - 2 * (c % 2)]
                            for c in range(3)], axis=1) for r in range(3)]
    images["mosaic"] = np.ascontiguousarray(np.concatenate(rows, axis=0))
    return images


def run(site: pathlib.Path, models: list[str], images: dict, args) -> None:
    web_export.copy_runtime(str(site))
    (site / "index.html").write_text(PAGE)
    rows, first = [], {}
    files = {}
    for model_dir in models:
        spec = exported.read_spec(model_dir)
        web_export.export(model_dir, str(site / spec.model_id))
        codec = Codec.load(model_dir)
        for name, pixels in images.items():
            data = codec.compress(pixels, qstep=spec.qstep)
            file = f"{spec.model_id}-{name}.jpg"
            (site / file).write_bytes(data)
            files[file] = (spec, pixels.shape[0] * pixels.shape[1] / 1e6)
            rows.append({"file": file, "factor": spec.factor,
                         "megapixels": files[file][1], "bytes": len(data),
                         "python": 1e3 * fastest(args.repeats, codec.decompress, data)})
    options = {"numThreads": args.threads, "executionProviders": ["wasm"]}
    with web_export.serve(str(site)) as url, browser.chromium() as driver:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.set_script_timeout(600)
        driver.get(url + "index.html")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.ready"))
        isolated = driver.execute_script("return crossOriginIsolated")
        for row in rows:
            spec = files[row["file"]][0]
            decode = {**options, "models": f"{spec.model_id}/"}
            runs = [driver.execute_async_script(DECODE, row["file"], decode)
                    for _ in range(args.repeats + 1)]
            assert all(r["kind"] == "model" for r in runs), runs[0]
            first.setdefault(spec.model_id, runs[0]["timings"]["total"])
            row["browser"] = min(r["timings"]["total"] for r in runs[1:])
            row["network"] = min(r["timings"]["network"] for r in runs[1:])
            row["jpeg"] = min(driver.execute_async_script(PLAIN, row["file"], args.repeats))
        fetched = driver.execute_script(RESOURCES)

    print(f"headless Chromium, onnxruntime-web WASM, {args.threads} threads "
          f"(cross-origin isolated: {isolated}); Python: TensorFlow on "
          f"{len(os.sched_getaffinity(0))} cores; fastest of {args.repeats}, "
          f"ms per source megapixel")
    print(f"{'file':32} {'MP':>5} {'bytes':>7} {'browser':>8} {'network':>8} {'python':>8} "
          f"{'jpeg':>6}")
    for row in rows:
        mp = row["megapixels"]
        print(f"{row['file']:32} {mp:5.2f} {row['bytes']:7d} {row['browser'] / mp:8.0f} "
              f"{row['network'] / mp:8.0f} {row['python'] / mp:8.0f} {row['jpeg'] / mp:6.0f}")
    for factor in sorted({row["factor"] for row in rows}):
        chosen = [row for row in rows if row["factor"] == factor]
        mp = sum(row["megapixels"] for row in chosen)
        figures = {key: sum(row[key] for row in chosen) / mp
                   for key in ("browser", "network", "python", "jpeg")}
        print(f"x{factor} all photos: " + ", ".join(f"{key} {value:.0f} ms/MP"
                                                    for key, value in figures.items()))
    for model_id, ms in first.items():
        print(f"first decode on the page ({model_id}: runtime and model start): {ms:.0f} ms")

    print("fetched by the page (bytes as served; gzip -9, as a CDN may send them):")
    groups = {}
    for entry in fetched:
        name = entry["name"].removeprefix(url)
        path = site / name
        if not path.is_file() or path.suffix not in (".mjs", ".js", ".wasm", ".onnx", ".json"):
            continue
        group = "runtime (JS + WASM)" if path.suffix in (".mjs", ".js", ".wasm") else (
            f"model {path.parent.name}")
        sizes = (path.stat().st_size, len(gzip.compress(path.read_bytes(), 9)))
        groups.setdefault(group, {})[name] = sizes
    for group, members in groups.items():
        for name, (raw, packed) in members.items():
            print(f"  {name:44} {raw / 1024:9.0f} KiB {packed / 1024:7.0f} KiB")
        raw, packed = (sum(sizes[i] for sizes in members.values()) for i in (0, 1))
        print(f"  = {group:42} {raw / 1024:9.0f} KiB {packed / 1024:7.0f} KiB")
    runtime = groups.get("runtime (JS + WASM)", {})
    for group, members in groups.items():
        if group.startswith("model"):
            raw, packed = (sum(sizes[i] for sizes in [*runtime.values(), *members.values()])
                           for i in (0, 1))
            print(f"a page showing {group.removeprefix('model ')}'s files downloads "
                  f"{raw / 2**20:.1f} MiB ({packed / 2**20:.1f} MiB gzip-compressed)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", nargs="*", help="export dirs (default: perturbed x1 and x2)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime-web WASM threads")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if browser.missing():
        sys.exit(browser.missing())
    models = args.model or [export_sandwich("high_res", model_id=f"bench-x{f}", factor=f,
                                            perturb=0.05) for f in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="browser-decode-") as site:
        run(pathlib.Path(site), models, photos(), args)

if __name__ == "__main__":
    main()

"""The post-processor for the browser: an export dir's post-processor as ONNX for onnxruntime-web.

    python -m codec.web_export --model EXPORT_DIR --output DIR
    python -m codec.web_export --serve DIR          # http://127.0.0.1:8000/, cross-origin isolated

A sandwich file is a plain JPEG, so any CDN serves it and any browser shows
its bottleneck; `web/sandwich-decoder.mjs` shows its reconstruction instead,
running the post-processor in the page on onnxruntime-web (WASM, WebGPU
where present) after the browser's own JPEG decoder. This module writes
what that script loads, one directory per model:

    DIR/
      web_model.json         the model spec's fields a decoder checks a header
                             against, the graphs' file names and their measured
                             agreement with the SavedModel (`WEB_MODEL_FILE`)
      postprocessor.onnx     decoded uint8 [h', w', 3], size int32 [2], qstep
                             float32 [] -> reconstruction [h, w, 3] (source dtype)
      identity.onnx          the scenario without networks (`identity` files):
                             decoded, size -> reconstruction

ONNX through tf2onnx, converted from the SavedModel's `serving_default`
signature, so the graph is the one `codec.exported` runs: upsampling,
the U-Net's padding to its pooling grid, rounding and clipping all inside
it, so the browser runs one call on a tile of any size and lays tiles out
as `codec.tiling` does. Not TF.js: the same post-processor ran 1.6-6x
longer on its WASM backend in headless Chromium, and its converter cannot
be installed beside TensorFlow 2.21 (docs/web.md).

tf2onnx converts TensorFlow's integer `FloorDiv` to ONNX `Div`, which
truncates towards zero: `-37 // 16` becomes -2, not -3, so the U-Net's
padding to a multiple of 16 (`-n % 16`) comes out negative and every size
but a multiple of 16 fails to run. `_floor_integer_divisions` rewrites each
integer division as an exact one of `a - (a mod b)` (ONNX `Mod` with
`fmod=0` is the floored remainder), which is the same on the non-negative
operands of tf2onnx's own shape arithmetic. Every export is then run on
onnxruntime beside TensorFlow at sizes off that grid and refused unless
they agree within `TOLERANCE` levels.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.server
import json
import os
import pathlib
import shutil
import sys
import tempfile
import threading

import numpy as np

from codec import bottleneck_format, exported
from sandwich.specs import ModelSpec, SpecError

WEB_MODEL_FILE = "web_model.json"
WEB_FORMAT_VERSION = 1
POSTPROCESSOR_FILE = "postprocessor.onnx"
IDENTITY_FILE = "identity.onnx"
# Opset 17 runs on every onnxruntime-web since 1.14 and covers every op the
# processors use.
OPSET = 17
# Levels (of the source's bit depth) by which onnxruntime may differ from
# TensorFlow on any pixel; float reassociation flips a rounding at most.
TOLERANCE = 1
# Source sizes the agreement is checked at: off the U-Net's 16-pixel grid,
# odd, and smaller than one pooling cell on one side.
CHECK_SIZES = ((37, 50), (20, 7))
# The web folder beside the package: the module, the page template, the
# pinned onnxruntime-web (`npm ci --prefix web`).
WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "web"
MODULE_FILE = "sandwich-decoder.mjs"
RUNTIME_DIR = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
# What the page fetches of the runtime: the WASM-only and the WebGPU ES
# modules, their Emscripten loaders and WebAssembly binaries.
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                "ort-wasm-simd-threaded.asyncify.wasm")
RUNTIME_FILES = WASM_FILES + WEBGPU_FILES


def _as_browser_decodes(shape):
    """A decoded bottleneck's shape as the browser gives it: `[h', w', 3]`.
    It decodes every JPEG to RGB, a one-component (gray) one as R = G = B,
    so the graphs take three channels and a gray model's read the first."""
    return shape[:-1] + [3] if shape.rank == 3 else shape


def _signature_function(directory: str, outputs: str):
    """The `serving_default` signature of a SavedModel as a `tf.function`
    with inputs named by their role (`decoded`, `size`, `qstep`, bound by
    dtype and rank as `codec.exported` binds them) and one output."""
    import tensorflow as tf

    loaded = tf.saved_model.load(directory)
    signature = loaded.signatures["serving_default"]
    roles = {3: "decoded", 1: "size", 0: "qstep"}
    named = sorted(((roles[spec.shape.rank], name, spec)
                    for name, spec in signature.structured_input_signature[1].items()),
                   key=lambda item: list(roles.values()).index(item[0]))
    input_signature = [tf.TensorSpec(_as_browser_decodes(spec.shape), spec.dtype, name=role)
                       for role, _, spec in named]

    def call(*tensors):
        result = signature(**{name: t[..., :1] if role == "decoded" and spec.shape[-1] == 1
                              else t for (role, name, spec), t in zip(named, tensors)})
        return {outputs: result[outputs]}

    function = tf.function(call, input_signature=input_signature)
    function._loaded = loaded  # its variables live as long as the function
    return function, input_signature


def _floor_integer_divisions(model):
    """Rewrites each integer `Div` of an ONNX model as the floored division
    TensorFlow's `FloorDiv` is (module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {info.name: info.type.tensor_type.elem_type
             for info in (*inferred.graph.value_info, *inferred.graph.input,
                          *inferred.graph.output)}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Div" or types.get(node.output[0]) not in (TensorProto.INT32,
                                                                       TensorProto.INT64):
            nodes.append(node)
            continue
        a, b = node.input
        remainder, exact = f"{node.name}/floor_mod", f"{node.name}/floor_exact"
        nodes += [helper.make_node("Mod", [a, b], [remainder], name=remainder, fmod=0),
                  helper.make_node("Sub", [a, remainder], [exact], name=exact),
                  helper.make_node("Div", [exact, b], list(node.output), name=node.name)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def _to_onnx(function, input_signature) -> bytes:
    """A `tf.function` as a serialised ONNX model, integer divisions floored."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(function, input_signature=input_signature,
                                             opset=OPSET)
    return _floor_integer_divisions(model).SerializeToString()


def identity_function(spec: ModelSpec):
    """The identity's reconstruction of `spec`'s scenario
    (`bottleneck_format.identity_reconstruction` untiled) as a `tf.function`
    of decoded uint8 `[h', w', 3]` (`_as_browser_decodes`) and size int32
    `[2]`."""
    import tensorflow as tf

    from sandwich import scenarios

    scenario = scenarios.from_spec(spec)
    signature = [tf.TensorSpec([None, None, 3], tf.uint8, name="decoded"),
                 tf.TensorSpec([2], tf.int32, name="size")]

    def call(decoded, size):
        if scenario.channels == 1:
            decoded = decoded[..., :1]
        return {"reconstruction": scenario.to_source(
            scenario.from_bottleneck(decoded[None], size))[0]}

    return tf.function(call, input_signature=signature), signature


def _check_agreement(onnx_model: bytes, reference, spec: ModelSpec, takes_qstep: bool) -> int:
    """The largest difference in levels between onnxruntime and `reference`
    (the TensorFlow function) over `CHECK_SIZES`; a `SpecError` above
    `TOLERANCE`."""
    import onnxruntime
    import tensorflow as tf

    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0
    for height, width in CHECK_SIZES:
        shape = (-(-height // spec.factor), -(-width // spec.factor), 3)
        # Smooth content with an edge: what a decoded photo looks like to the nets.
        ramp = np.add.outer(np.arange(shape[0]), 2 * np.arange(shape[1]))[..., None]
        decoded = ((ramp * 5 + rng.integers(0, 24, shape)) % 256).astype(np.uint8)
        feeds = {"decoded": decoded, "size": np.array([height, width], np.int32)}
        if takes_qstep:
            feeds["qstep"] = np.array(spec.qstep, np.float32)
        ours = session.run(None, feeds)[0]
        theirs = reference(*(tf.constant(v) for v in feeds.values()))["reconstruction"].numpy()
        if ours.shape != theirs.shape:
            raise SpecError(f"ONNX gives shape {ours.shape} where TensorFlow gives "
                            f"{theirs.shape} at {height}x{width}")
        worst = max(worst, int(np.abs(ours.astype(np.int64) - theirs).max()))
    if worst > TOLERANCE:
        raise SpecError(f"the ONNX graph differs from the SavedModel by {worst} levels "
                        f"(at most {TOLERANCE} allowed)")
    return worst


def web_model(spec: ModelSpec, agreement: dict) -> dict:
    """The `web_model.json` of an export: what a header is checked against
    (`Header.check_model`'s fields), the graphs, their measured agreement."""
    from sandwich import __version__

    return {"kind": "web_model", "format_version": WEB_FORMAT_VERSION,
            "model_id": spec.model_id, "scenario": spec.scenario, "bit_depth": spec.bit_depth,
            "factor": spec.factor, "jpeg_mode": spec.jpeg_mode, "qstep": spec.qstep,
            "postprocessor": POSTPROCESSOR_FILE, "identity": IDENTITY_FILE, "opset": OPSET,
            "agreement": agreement, "version": __version__}


def export(model_dir: str, output: str) -> str:
    """Writes the web export of one export dir into `output` (created;
    files of the same names replaced) and returns its path."""
    spec = exported.read_spec(model_dir)
    post, post_signature = _signature_function(
        os.path.join(model_dir, exported.POSTPROCESSOR), "reconstruction")
    identity, identity_signature = identity_function(spec)
    graphs = {POSTPROCESSOR_FILE: _to_onnx(post, post_signature),
              IDENTITY_FILE: _to_onnx(identity, identity_signature)}
    agreement = {
        "sizes": [list(size) for size in CHECK_SIZES],
        "max_abs_diff": {
            POSTPROCESSOR_FILE: _check_agreement(graphs[POSTPROCESSOR_FILE], post, spec, True),
            IDENTITY_FILE: _check_agreement(graphs[IDENTITY_FILE], identity, spec, False)}}
    os.makedirs(output, exist_ok=True)
    for name, data in graphs.items():
        _write(os.path.join(output, name), data)
    _write(os.path.join(output, WEB_MODEL_FILE),
           json.dumps(web_model(spec, agreement), indent=2, sort_keys=True).encode())
    return output


def export_set(model: str, output: str) -> list[str]:
    """`export` of every export dir `model` names (`exported.export_dirs`: a
    dir, a list, a set, a shipped name): one into `output` itself, several
    into `output/<model_id>`."""
    dirs = exported.export_dirs(model)
    specs = exported.read_specs(dirs)
    if len(dirs) == 1:
        return [export(dirs[0], output)]
    return [export(d, os.path.join(output, model_id)) for d, model_id in zip(dirs, specs)]


def _write(path: str, data: bytes) -> None:
    """Writes a file whole or not at all (a temporary sibling renamed)."""
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path) or ".", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)  # served as it is: readable by a web server's user
    os.replace(f.name, path)


def copy_runtime(output: str) -> list[str]:
    """Copies the decoder module and onnxruntime-web's files into
    `output` (the module beside `ort/`), as a page loads them; the names
    copied, relative to `output`."""
    missing = [name for name in RUNTIME_FILES if not (RUNTIME_DIR / name).exists()]
    if missing:
        raise FileNotFoundError(f"onnxruntime-web is not installed in {RUNTIME_DIR.parent} "
                                f"(missing {missing[0]}): run npm ci --prefix {WEB_DIR}")
    os.makedirs(os.path.join(output, "ort"), exist_ok=True)
    shutil.copyfile(WEB_DIR / MODULE_FILE, os.path.join(output, MODULE_FILE))
    for name in RUNTIME_FILES:
        shutil.copyfile(RUNTIME_DIR / name, os.path.join(output, "ort", name))
    return [MODULE_FILE, *(f"ort/{name}" for name in RUNTIME_FILES)]


def write_demo(output: str, bottleneck: str, source: str, model: str = "model/") -> str:
    """The demo page in `output`: the sandwich file `bottleneck` drawn by
    the decoder beside plain JPEG (`sandwich.alternatives`' `jpeg`) of
    `source` at the largest quality whose file is at most as large, as the
    report compares them, each with its size; the module and runtime copied
    beside it, the web export expected at `output/model`. Returns the
    page's path."""
    from PIL import Image

    from sandwich import alternatives

    data = pathlib.Path(bottleneck).read_bytes()
    header = bottleneck_format.read_header(data)
    with Image.open(source) as image:
        rgb = np.asarray(image.convert("RGB"))
    quality, plain, _ = alternatives.largest_quality_within("jpeg", rgb, len(data))
    names = {"sandwich": os.path.basename(bottleneck),
             "plain": os.path.splitext(os.path.basename(source))[0] + f".q{quality}.jpg"}
    os.makedirs(output, exist_ok=True)
    _write(os.path.join(output, names["sandwich"]), data)
    _write(os.path.join(output, names["plain"]), plain)
    copy_runtime(output)
    pixels = header.width * header.height
    page = (WEB_DIR / "demo.html").read_text()
    for key, value in {"SANDWICH": names["sandwich"], "SANDWICH_BYTES": str(len(data)),
                       "BPP": f"{8 * len(data) / pixels:.3f}", "PLAIN": names["plain"],
                       "PLAIN_BYTES": str(len(plain)), "PLAIN_BPP": f"{8 * len(plain) / pixels:.3f}",
                       "QUALITY": str(quality), "MODEL": model, "MODEL_ID": header.model_id,
                       "WIDTH": str(header.width), "HEIGHT": str(header.height)}.items():
        page = page.replace("{{" + key + "}}", html.escape(value)).replace(
            "{{" + key + "_JSON}}", json.dumps(value).replace("</", "<\\/"))
    path = os.path.join(output, "index.html")
    _write(path, page.encode())
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that make a page cross-origin isolated
    (so onnxruntime-web may run threads on a SharedArrayBuffer), ES
    modules and WebAssembly under their MIME types, nothing logged."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: str, port: int = 0, host: str = "127.0.0.1"):
    """Serves `directory` over HTTP on `host` from a thread; yields the base
    URL (`port` 0: a free one)."""
    handler = functools.partial(_Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m codec.web_export", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", help="an export dir, a set of them, or a shipped name")
    parser.add_argument("--output", help="the web export's directory (one per model of a set)")
    parser.add_argument("--demo", metavar="JPEG",
                        help="also write a demo page into --output: this sandwich file beside "
                             "a plain JPEG of --source at its bytes (the export goes to "
                             "OUTPUT/model)")
    parser.add_argument("--source", help="the source photo of --demo's file")
    parser.add_argument("--serve", metavar="DIR", help="serve DIR on 127.0.0.1, cross-origin "
                        "isolated, until interrupted (instead of exporting)")
    parser.add_argument("--port", type=int, default=8000, help="--serve's port")
    args = parser.parse_args(argv)
    if args.serve is None and not (args.model and args.output):
        parser.error("give --model and --output (or --serve DIR)")
    if bool(args.demo) != bool(args.source):
        parser.error("--demo and --source go together")
    return args


def main(argv=None) -> None:
    from sandwich import logs

    logs.quiet_native_logs()  # before TensorFlow is imported, as the jobs' commands do
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve is not None:
        with serve(args.serve, args.port) as url:
            print(f"serving {args.serve} at {url} (Ctrl-C stops)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        return
    model_output = os.path.join(args.output, "model") if args.demo else args.output
    for path in export_set(args.model, model_output):
        with open(os.path.join(path, WEB_MODEL_FILE)) as f:
            agreement = json.load(f)["agreement"]["max_abs_diff"]
        sizes = {name: os.path.getsize(os.path.join(path, name)) for name in agreement}
        described = ", ".join(f"{name} {size / 1024:.0f} KiB, within {agreement[name]} "
                              f"level(s) of TensorFlow" for name, size in sizes.items())
        print(f"web export: {path} ({described})")
    if args.demo:
        page = write_demo(args.output, args.demo, args.source)
        print(f"demo page: {page}\n  open it: {sys.executable} -m codec.web_export --serve "
              f"{args.output}  then http://127.0.0.1:{args.port}/")


if __name__ == "__main__":
    main()

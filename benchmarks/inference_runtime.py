"""The exported processors on each CPU inference runtime: speed, start-up, agreement.

The pre- and post-processor SavedModels of an export dir (`trainer.export`)
run on TensorFlow as exported (the reference, what the jobs run), on
TensorFlow with XLA (`jit_compile=True` around the same signature), on
LiteRT (converted by TensorFlow's TFLite converter, XNNPACK as LiteRT's
default CPU delegate) and on ONNX Runtime (converted by tf2onnx), each on
all cores, and at int8 on both: post-training quantisation, weights per
channel, activations calibrated on crops of photos that are neither held
out here nor by the shipped models (`CALIBRATION`): LiteRT's full-integer
conversion (ops without an int8 kernel stay float), ONNX Runtime's static
QDQ quantiser. A runtime that fails to convert says why and is left out.

On real held-out photographs (whole images, as the jobs run them below the
tile size) each runtime's chain, its pre-processor, the real JPEG encoder
and decoder, its post-processor, is scored by PSNR against the source, and
must agree with TensorFlow's within 0.01 dB to count (an int8 runtime,
which cannot, within `codec.precision.MAX_LOSS_DB`, what a lower precision
may cost the jobs). Speed is source
megapixels per second over the photographs, each timed on a second call
(the first pays each runtime's per-shape set-up: XLA compiles, LiteRT
allocates), and its ratio to TensorFlow's; `import s` is what importing the
runtime costs a fresh worker process, once. `--crop 32` crops the photos
to multiples of 32 pixels, where a converter that mishandles the
processors' own padding of other sizes still runs.

    pip install '.[runtimes]'
    python benchmarks/inference_runtime.py [--model EXPORT_DIR]

Without `--model`, an untrained slim `high_res` export is made (as the tests
make it, with perturbed output layers): its compute is a trained model's.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from codec import bottleneck_format, exported  # noqa: E402
from codec.precision import MAX_LOSS_DB  # noqa: E402
from sandwich import metrics, samples  # noqa: E402
from sandwich.image_io import decode_image  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from corpus import SKIMAGE_DIR  # noqa: E402

HELD_OUT = ("motorcycle_left.png", "ihc.png", "hubble_deep_field.jpg")
# int8 calibration: bundled samples (`sandwich/data/samples`; coffee is held out
# by the shipped models), cut into crops the size of a tile's core.
CALIBRATION = ("astronaut.png", "chelsea.png", "rocket.png")
CALIBRATION_CROP = 192
TOLERANCE_DB = 0.01
OUTPUTS = {exported.PREPROCESSOR: "bottleneck",
           exported.POSTPROCESSOR: "reconstruction"}
IMPORTS = {"TensorFlow": "tensorflow", "TensorFlow + XLA": "tensorflow",
           "LiteRT (XNNPACK)": "ai_edge_litert.interpreter", "ONNX Runtime": "onnxruntime",
           "LiteRT int8": "ai_edge_litert.interpreter", "ONNX Runtime int8": "onnxruntime"}
INT8 = ("LiteRT int8", "ONNX Runtime int8")


def bind(names_and_kinds, image, size, qstep) -> dict:
    """Signature inputs by kind, as `model_handler` binds them: the rank-3
    image, the rank-1 output size, a scalar qstep (where the signature has one)."""
    values = {3: image, 1: size and np.asarray(size, np.int32), 0: np.asarray(qstep, np.float32)}
    return {name: values[rank] for name, rank in names_and_kinds}


def tensorflow(directory: str, jit_compile: bool):
    import tensorflow as tf

    loaded = tf.saved_model.load(directory)  # Its variables live as long as it does.
    signature = loaded.signatures["serving_default"]
    inputs = [(name, spec.shape.rank)
              for name, spec in signature.structured_input_signature[1].items()]
    call = tf.function(lambda **kw: loaded.signatures["serving_default"](**kw),
                       jit_compile=True) if jit_compile else signature
    output = next(iter(signature.structured_outputs))
    return inputs, lambda feeds: call(**{k: tf.constant(v) for k, v in feeds.items()})[
        output].numpy()


def litert(directory: str, work: str, calibration=None):
    """LiteRT's runner of the processor in `directory`; with `calibration`
    (its feeds, as `bind` makes them), quantised to int8."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    # From the concrete function, which freezes the variables: converted from
    # the SavedModel they stay resource variables that LiteRT leaves
    # uninitialised, and the outputs are garbage.
    loaded = tf.saved_model.load(directory)
    signature = loaded.signatures["serving_default"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([signature], loaded)
    if calibration:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(calibration)  # by input name
    interpreter = Interpreter(model_content=converter.convert(), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("serving_default")
    details = runner.get_input_details()
    inputs = [(name, len(d["shape_signature"])) for name, d in details.items()]
    output = next(iter(runner.get_output_details()))
    return inputs, lambda feeds: runner(**feeds)[output]


def onnx_runtime(directory: str, work: str, calibration=None):
    """ONNX Runtime's runner of the processor in `directory`; with
    `calibration` (its feeds, as `bind` makes them), quantised to int8."""
    import onnxruntime

    path = os.path.join(work, os.path.basename(directory) + ".onnx")
    if not os.path.exists(path):
        done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model",
                               directory, "--signature_def", "serving_default", "--opset", "17",
                               "--output", path], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr.strip().splitlines()[-1])
    if calibration:
        path = _quantised(path, calibration)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = {i.name.split(":")[0]: i.name for i in session.get_inputs()}
    inputs = [(name, len(i.shape)) for name, i in
              ((n, next(x for x in session.get_inputs() if x.name == full))
               for n, full in names.items())]
    return inputs, lambda feeds: session.run(None, {names[k]: v for k, v in feeds.items()})[0]


def _quantised(path: str, calibration) -> str:
    """The ONNX model at `path` quantised to int8 (QDQ, weights per channel,
    activations from `calibration`); the new model's path."""
    import onnxruntime
    from onnxruntime import quantization

    names = {i.name.split(":")[0]: i.name
             for i in onnxruntime.InferenceSession(path).get_inputs()}

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{names[k]: v for k, v in feeds.items()} for feeds in calibration])

        def get_next(self):
            return next(self.feeds, None)

    output = path.replace(".onnx", "-int8.onnx")
    quantization.quantize_static(path, output, Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=True, activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return output


def runtimes(work: str, calibration):
    """Runtime name -> a loader of one processor's runner (from its export
    sub-directory); the int8 ones calibrate on `calibration[processor]`."""
    def int8(runtime):
        return lambda d: runtime(d, work, calibration[os.path.basename(d)])

    return {"TensorFlow": lambda d: tensorflow(d, False),
            "TensorFlow + XLA": lambda d: tensorflow(d, True),
            "LiteRT (XNNPACK)": lambda d: litert(d, work),
            "ONNX Runtime": lambda d: onnx_runtime(d, work),
            "LiteRT int8": int8(litert),
            "ONNX Runtime int8": int8(onnx_runtime)}


def _timed(fn, feeds) -> tuple[np.ndarray, float]:
    """`fn(feeds)` and the seconds of a second call on the same shapes: a
    large image's tiles share one shape, so what a runtime spends once per
    shape (XLA compiles, LiteRT allocates) is not what limits a job."""
    fn(feeds)
    start = time.perf_counter()
    result = fn(feeds)
    return result, time.perf_counter() - start


def chain(processors, spec, sources):
    """Each source through pre-processor, real JPEG and post-processor:
    (reconstructions, seconds of pre-processing, seconds of post-processing)."""
    (pre_inputs, pre), (post_inputs, post) = processors
    pre_seconds = post_seconds = 0.0
    results = []
    for source in sources:
        height, width = source.shape[:2]
        bottleneck, seconds = _timed(pre, bind(pre_inputs, source, None, spec.qstep))
        pre_seconds += seconds
        header = bottleneck_format.Header.of(spec, spec.qstep, height, width, spec.bit_depth)
        _, decoded = bottleneck_format.decode(
            bottleneck_format.encode(bottleneck, header, spec.tables_at(spec.qstep)))
        reconstruction, seconds = _timed(
            post, bind(post_inputs, decoded, (height, width), spec.qstep))
        post_seconds += seconds
        results.append(reconstruction)
    return results, pre_seconds, post_seconds


def calibration_feeds(model_dir: str, spec) -> dict:
    """Processor -> its feeds for int8 calibration: crops of `CALIBRATION`,
    at the ends and the centre of the model's steps, and the crops'
    bottlenecks (by the TensorFlow pre-processor and the real JPEG codec)."""
    (pre_inputs, pre), (post_inputs, _) = (tensorflow(os.path.join(model_dir, p), False)
                                           for p in OUTPUTS)
    qsteps = sorted({*(spec.qstep_range or ()), spec.qstep})
    feeds = {processor: [] for processor in OUTPUTS}
    side = CALIBRATION_CROP
    for name in CALIBRATION:
        photo = samples.load(os.path.join(samples.SAMPLES_DIR, name))
        crops = samples.crops([photo], side)
        crops = crops[::max(1, len(crops) // 4)][:4]
        for crop, qstep in ((c, q) for c in crops for q in qsteps):
            pre_feeds = bind(pre_inputs, crop, None, qstep)
            header = bottleneck_format.Header.of(spec, qstep, side, side, spec.bit_depth)
            _, decoded = bottleneck_format.decode(bottleneck_format.encode(
                pre(pre_feeds), header, spec.tables_at(qstep)))
            feeds[exported.PREPROCESSOR].append(pre_feeds)
            feeds[exported.POSTPROCESSOR].append(bind(post_inputs, decoded, (side, side), qstep))
    return feeds


def import_seconds(module: str) -> float:
    """Seconds a fresh interpreter takes to import `module`."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="export dir (default: a slim high_res export)")
    parser.add_argument("--crop", type=int, default=1,
                        help="crop the photos to multiples of this side (e.g. 32: the "
                             "U-Net's pooling grid, where converters handle padding)")
    args = parser.parse_args()
    model_dir = args.model or export_sandwich("high_res", model_id="bench", perturb=0.02)
    spec = exported.read_spec(model_dir)
    sources = [decode_image(open(os.path.join(SKIMAGE_DIR, name), "rb").read()).pixels
               for name in HELD_OUT]
    sources = [s[:s.shape[0] // args.crop * args.crop, :s.shape[1] // args.crop * args.crop]
               for s in sources]
    megapixels = sum(s.shape[0] * s.shape[1] for s in sources) / 1e6
    print(f"model {model_dir} ({spec.scenario} x{spec.factor}); held out: {', '.join(HELD_OUT)} "
          f"({megapixels:.1f} MP); {os.cpu_count()} cores")
    print(f"{'runtime':<18}{'import s':>9}{'pre MP/s':>10}{'x TF':>6}{'post MP/s':>11}"
          f"{'x TF':>6}{'max dPSNR dB':>14}  agrees")
    reference = None
    calibration = calibration_feeds(model_dir, spec)
    with tempfile.TemporaryDirectory() as work:
        for name, load in runtimes(work, calibration).items():
            try:
                processors = [load(os.path.join(model_dir, p)) for p in OUTPUTS]
                results, pre, post = chain(processors, spec, sources)
            except Exception as e:  # A runtime's refusal is a result, not a crash.
                reason = (str(e).strip().splitlines() or [""])[-1][:160]
                print(f"{name:<18} fails: {type(e).__name__}: {reason}")
                continue
            psnr = np.array([float(metrics.psnr(r[None], s[None], spec.bit_depth)[0])
                             for r, s in zip(results, sources)])
            if reference is None:
                reference = (psnr, pre, post)
            delta = float(np.abs(psnr - reference[0]).max())
            tolerance = MAX_LOSS_DB if name in INT8 else TOLERANCE_DB
            print(f"{name:<18}{import_seconds(IMPORTS[name]):>9.2f}{megapixels / pre:>10.2f}"
                  f"{reference[1] / pre:>6.2f}{megapixels / post:>11.2f}{reference[2] / post:>6.2f}"
                  f"{delta:>14.4f}  {'yes' if delta <= tolerance else 'NO'}"
                  f" (mean {float((psnr - reference[0]).mean()):+.3f} dB)")


if __name__ == "__main__":
    main()

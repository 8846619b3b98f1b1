"""What a photo costs: megapixels per second per core on each path, and core-hours per million photos.

A bucket job runs one worker process per core, each with one TensorFlow
thread (`codec.exported.share_cores`), so one core's rate times the cores
is the machine's. Here each path runs on one core, in a fresh process per
precision (`codec.precision`; bfloat16 only where the CPU runs it), on a
`--megapixels` photo (a bundled photo mirrored out to a phone camera's
4:3 frame), the fastest of `--repeats` calls after a first:

- sandwich compress at the model's step (pre-processor, JPEG encoder),
  its decompress (JPEG decoder, post-processor), and compress to
  `--target_bpp` over the whole set (`codec.rate_control`);
- plain JPEG (Pillow's libjpeg-turbo at quality 85, 4:2:0) encode and
  decode, and jpegli (pyjpegli) encode at the same quality, decoded by
  Pillow: what the user would run instead, on the same core.

Core-hours per 10^6 photos of 12 MP follow from each rate. Model loading and
interpreter start are left out (a job pays them once per worker:
`benchmarks/compress_throughput.py` measures them).

    python benchmarks/cost_per_image.py [--model hr-x1-r2] [--set shipped] [--megapixels 12]
"""
import argparse
import io
import json
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from codec import precision  # noqa: E402
from sandwich.samples import SAMPLES_DIR  # noqa: E402

from timing import fastest, fresh_worker, mirrored  # noqa: E402

PHOTO = os.path.join(SAMPLES_DIR, "astronaut.png")
QUALITY = 85
PHOTOS = 1e6
PHOTO_MEGAPIXELS = 12


def photo(megapixels: float) -> np.ndarray:
    """The bundled photo mirrored out to a 4:3 frame of `megapixels`."""
    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    return mirrored(np.asarray(Image.open(PHOTO).convert("RGB")), height,
                    int(round(height * 4 / 3)))


def one_core() -> None:
    """This process's TensorFlow on one thread, as in a worker per core."""
    from codec import exported

    exported.share_cores(len(os.sched_getaffinity(0)))


def sandwich_seconds(model: str, model_set: str, at: str, pixels: np.ndarray,
                     target_bpp: float, repeats: int) -> dict:
    import codec

    one_core()
    single = codec.load(model, precision=at)
    spec = next(iter(single.specs.values()))
    data = single.compress(pixels, qstep=spec.qstep)
    seconds = {"compress": fastest(repeats, lambda: single.compress(pixels, qstep=spec.qstep)),
               "decompress": fastest(repeats, lambda: single.decompress(data))}
    whole = codec.load(model_set, precision=at)
    seconds[f"compress to {target_bpp} bpp ({model_set})"] = fastest(
        repeats, lambda: whole.compress(pixels, target_bpp=target_bpp))
    return seconds


def codec_seconds(pixels: np.ndarray, repeats: int) -> dict:
    from sandwich import alternatives

    image = Image.fromarray(pixels)

    def pillow_encode():
        out = io.BytesIO()
        image.save(out, "JPEG", quality=QUALITY, subsampling=2, optimize=True)
        return out.getvalue()

    jpeg, jpegli = pillow_encode(), alternatives.code("jpegli", pixels, QUALITY)[0]
    return {"plain JPEG encode": fastest(repeats, pillow_encode),
            "plain JPEG decode": fastest(repeats, lambda: alternatives.pillow_decode(jpeg)),
            "jpegli encode": fastest(repeats, alternatives.code, "jpegli", pixels, QUALITY),
            "jpegli decode": fastest(repeats, lambda: alternatives.pillow_decode(jpegli))}


def worker(args) -> None:
    pixels = photo(args.megapixels)
    seconds = (codec_seconds(pixels, args.repeats) if args.worker == "codecs" else
               sandwich_seconds(args.model, args.set, args.worker, pixels, args.target_bpp,
                                args.repeats))
    print(json.dumps({"megapixels": pixels.shape[0] * pixels.shape[1] / 1e6,
                      "seconds": seconds}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="hr-x1-r2",
                        help="the model of the fixed-step and decompress rows")
    parser.add_argument("--set", default="shipped", help="the model set of the target row")
    parser.add_argument("--target_bpp", type=float, default=0.5)
    parser.add_argument("--megapixels", type=float, default=PHOTO_MEGAPIXELS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    passed = ["--model", args.model, "--set", args.set, "--target_bpp", str(args.target_bpp),
              "--megapixels", str(args.megapixels), "--repeats", str(args.repeats)]
    kinds = ["codecs", precision.FLOAT32] + (
        [precision.BFLOAT16] if precision.cpu_runs_bfloat16() else [])
    rows = {}
    for kind in kinds:
        measured = fresh_worker(__file__, kind, passed)
        for path, seconds in measured["seconds"].items():
            label = path if kind == "codecs" else f"sandwich {path}, {kind}"
            rows[label] = measured["megapixels"] / seconds
    print(f"one core of {os.cpu_count()}; a {args.megapixels:g}-MP photo; model {args.model}")
    print(f"| path | MP/s per core | x plain JPEG's | core-hours per 10^6 photos of "
          f"{PHOTO_MEGAPIXELS} MP |\n|---|---|---|---|")
    for label, rate in rows.items():
        reference = rows["plain JPEG decode" if "decode" in label or "decompress" in label
                         else "plain JPEG encode"]
        hours = PHOTOS * PHOTO_MEGAPIXELS / rate / 3600
        print(f"| {label} | {rate:.2f} | {rate / reference:.3f} | {hours:,.0f} |")


if __name__ == "__main__":
    main()

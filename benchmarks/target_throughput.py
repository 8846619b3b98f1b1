"""Compression to a target: its throughput against fixed-qstep mode, and what it buys.

The held-out photographs (scikit-image's, copied `--copies` times) go
through `pipelines.compress` on the local runner (worker processes,
start-up and model loading included), first at one model's trained step
(`--qstep` mode: pre-processor and encoder, nothing measured), then at each
`--targets` bpp over the whole model set (per image and model: the
pre-processor once, a bisection over steps with the real encoder, the
post-processor on the pick; plain JPEG's qualities likewise). Both modes
run in the same process, on the same images, one after the other, each
`--repeats` times, the fastest run counting (the CPU may be shared).

For each target it prints the throughput and its cost against fixed-qstep
mode, then what the files are worth: the mean bpp and PSNR of
sandwich-or-fallback, plain JPEG's PSNR at that mean bpp (its RD curve over
the same images at equal quality, interpolated in log rate), plain JPEG
held to the same target image by image (no header), the share of images each model
and the fallback took, and the targets missed.

    python benchmarks/target_throughput.py --model runs/models/ --targets 0.3 0.5 1.0

Without `--model`, two slim `high_res` exports (x1 and x2) with perturbed
output layers are made, as the tests make them: their compute is a trained
model's, their quality is not.
"""
import argparse
import collections
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines import compress, evaluate, jobs, model_handler, rate_control  # noqa: E402
from sandwich import metrics  # noqa: E402
from sandwich.image_io import decode_image  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from corpus import SKIMAGE_DIR, SKIMAGE_PHOTOS  # noqa: E402


def job(argv: list[str], output: str, workers: int, repeats: int) -> tuple[float, list[dict]]:
    """Seconds of the fastest of `repeats` runs of a compress job (each into
    an empty `output`: the CPU may be shared), and its manifest."""
    times = []
    for _ in range(repeats):
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            compress.run([*argv, f"--output={output}", "--direct_running_mode=multi_processing",
                          f"--direct_num_workers={workers}"])
        times.append(time.perf_counter() - start)
    seconds = min(times)
    with open(os.path.join(output, jobs.MANIFEST_FILE)) as f:
        return seconds, [json.loads(line) for line in f]


def plain_jpeg_sweep(images: list[np.ndarray]) -> np.ndarray:
    """Plain JPEG (no header) of every image at every Pillow quality:
    `[image, quality, (bits per pixel, PSNR)]`."""
    points = np.array([evaluate.measure_alternative("jpeg", image, 8, rate_control.QUALITIES)
                       for image in images])
    pixels = np.array([image.shape[0] * image.shape[1] for image in images], np.float64)
    points[..., 0] /= pixels[:, None]
    return points


def plain_jpeg_within(sweep: np.ndarray, bpp: float) -> tuple[float, float]:
    """Mean bpp and PSNR of plain JPEG rate-controlled per image as target
    mode does it: each image at its highest quality within `bpp` (its
    smallest file where none fits)."""
    picks = [image[max(np.searchsorted(image[:, 0], bpp, side="right") - 1, 0)]
             for image in sweep]
    return float(np.mean([p[0] for p in picks])), float(np.mean([p[1] for p in picks]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="a model set: export dirs, comma-separated, or a "
                                        "directory of them (default: two slim high_res exports)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.5, 1.0],
                        help="bpp targets")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per mode; the fastest counts")
    args = parser.parse_args()
    models = args.model or ",".join(
        export_sandwich("high_res", model_id=f"bench-x{factor}", factor=factor, perturb=0.02,
                        seed=factor) for factor in (1, 2))
    first = model_handler.export_dirs(models)[0]
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(f"{work}/photos")
        for copy in range(args.copies):
            for name in SKIMAGE_PHOTOS:
                shutil.copy(os.path.join(SKIMAGE_DIR, name), f"{work}/photos/{copy:02d}_{name}")
        images = [decode_image(open(os.path.join(f"{work}/photos", name), "rb").read()).pixels
                  for name in sorted(os.listdir(f"{work}/photos"))]
        megapixels = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
        print(f"{len(images)} held-out photographs, {megapixels:.1f} MP; model set "
              f"{', '.join(model_handler.read_specs(model_handler.export_dirs(models)))}; "
              f"{args.workers} worker process(es)")
        source = [f"--input={work}/photos", "--tile=1024", "--halo=128"]
        fixed, _ = job([*source, f"--model={first}"], f"{work}/fixed", args.workers, args.repeats)
        print(f"fixed qstep, one model ({model_handler.read_spec(first).model_id}): "
              f"{megapixels / fixed:6.2f} MP/s ({fixed:.0f} s)")
        sweep = plain_jpeg_sweep(images)
        curve = sweep[..., 0].mean(axis=0), sweep[..., 1].mean(axis=0)
        for target in args.targets:
            seconds, records = job([*source, f"--model={models}", f"--target_bpp={target}"],
                                   f"{work}/target-{target}", args.workers, args.repeats)
            bpp = float(np.mean([r["bpp"] for r in records]))
            psnr = float(np.mean([r["psnr"] for r in records]))
            plain = metrics.psnr_at(*curve, bpp)
            shares = collections.Counter(r["model_id"] for r in records)
            print(f"target {target:g} bpp: {megapixels / seconds:6.2f} MP/s ({seconds:.0f} s, "
                  f"{seconds / fixed:.1f}x fixed-qstep time)")
            print(f"  mean {bpp:.3f} bpp, {psnr:.2f} dB; plain JPEG at {bpp:.3f} bpp: "
                  + ("outside its curve" if plain is None else
                     f"{plain:.2f} dB ({psnr - plain:+.2f} dB)"))
            print("  plain JPEG within {:g} bpp per image: {:.3f} bpp, {:.2f} dB".format(
                target, *plain_jpeg_within(sweep, target)))
            print("  images per coder: " + ", ".join(
                f"{model} {100 * count / len(records):.0f}%" for model, count in sorted(shares.items()))
                + f"; {sum(bool(r['missed']) for r in records)} missed the target")
            for record in records:
                if record["missed"]:
                    print(f"    {os.path.basename(record['source'])}: {record['missed']}")


if __name__ == "__main__":
    main()

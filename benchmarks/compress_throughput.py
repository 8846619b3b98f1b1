"""Compression throughput: the whole job on 1 and 2 worker processes, against its parts.

Real photographs (the bundled samples and scikit-image's photos, copied
`--copies` times) go through `pipelines.compress` on the default local runner
(worker processes, start-up and model loading included), and, in this
process on the same images, through the pre-processor alone (tiled, model
already loaded) and the JPEG encoder alone (the bottleneck files exactly as
the job writes them). Every figure is source megapixels per second of wall
time. Then, on one model that changes pixels:

- tile seams: the largest pixel difference and the PSNR between tiled and
  untiled processing, for several halos;
- peak memory: the largest resident set of a one-process compress and
  decompress job on one `--peak_megapixels` image, against the same job on
  a small image (what the interpreter, TensorFlow and the model take alone).

    python benchmarks/compress_throughput.py --copies 2 --peak_megapixels 24

Without `--model`, an untrained slim `high_res` export is made (as the tests
make it, with perturbed output layers): its compute is a trained model's.
"""
import argparse
import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from pipelines import bottleneck_format, compress, model_handler, sample_data
from sandwich import metrics
from sandwich.image_io import decode_image

from corpus import SKIMAGE_DIR, make_corpus
from tests.sandwich_exports import export_sandwich

SEAM_HALOS = (0, 16, 32, 64, 128)


def parts(model_dir: str, images: list[np.ndarray], qstep: float) -> tuple[float, float]:
    """Seconds for the pre-processor alone and the JPEG encoder alone."""
    model = model_handler.ExportedSandwich.load(model_dir, (model_handler.PREPROCESSOR,))
    model.preprocess(images[0][:64, :64])  # The first call sets TensorFlow up.
    start = time.perf_counter()
    bottlenecks = [model.preprocess(image) for image in images]
    preprocess = time.perf_counter() - start
    start = time.perf_counter()
    for image, bottleneck in zip(images, bottlenecks):
        header = bottleneck_format.Header.of(model.spec, qstep, *image.shape[:2], 8)
        bottleneck_format.encode(bottleneck, header)
    return preprocess, time.perf_counter() - start


def job(pattern: str, model_dir: str, output: str, workers: int) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        compress.run([f"--input={pattern}", f"--model={model_dir}", f"--output={output}",
                      "--direct_running_mode=multi_processing",
                      f"--direct_num_workers={workers}"])
    return time.perf_counter() - start


def seams(model_dir: str, source: np.ndarray, tile: int) -> list[tuple[int, int, float]]:
    """(halo, max |difference|, PSNR dB) of tiled against untiled reconstruction."""
    whole = model_handler.ExportedSandwich.load(model_dir, tile=1 << 16, halo=0)
    reference = whole.postprocess(whole.preprocess(source), source.shape[:2], whole.spec.qstep)
    rows = []
    for halo in SEAM_HALOS:
        tiled = dataclasses.replace(whole, tile=tile, halo=halo)
        result = tiled.postprocess(tiled.preprocess(source), source.shape[:2], tiled.spec.qstep)
        diff = int(np.abs(result.astype(int) - reference).max())
        rows.append((halo, diff, float(metrics.psnr(result[None], reference[None])[0])))
    return rows


_MEASURE = """
import contextlib, importlib, io, resource, sys
with contextlib.redirect_stdout(io.StringIO()):
    importlib.import_module(sys.argv[1]).run(sys.argv[2:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(module: str, argv: list[str]) -> float:
    """Peak resident set (MB) of one job run in a fresh one-process interpreter."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, module, *argv,
                           "--direct_running_mode=in_memory", "--direct_num_workers=1"],
                          check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def peak_memory(model_dir: str, work: str, megapixels: float) -> list[tuple[str, float]]:
    """Peak RSS of compress and decompress jobs on a small and a large image."""
    photo = Image.open(os.path.join(sample_data.SAMPLES_DIR, "astronaut.png")).convert("RGB")
    width = int(round((megapixels * 1e6 * 3 / 2) ** 0.5))
    sizes = {"small": (320, 240), "large": (width, width * 2 // 3)}
    rows = []
    for name, size in sizes.items():
        os.makedirs(f"{work}/{name}")
        photo.resize(size, Image.Resampling.BICUBIC).save(f"{work}/{name}/image.png")
        for step, module, source in (("compress", "pipelines.compress", f"{work}/{name}/*.png"),
                                     ("decompress", "pipelines.decompress",
                                      f"{work}/{name}-bits/*.jpg")):
            output = f"{work}/{name}-{'bits' if step == 'compress' else 'restored'}"
            rss = peak_rss_mb(module, [f"--input={source}", f"--model={model_dir}",
                                       f"--output={output}"])
            rows.append((f"{step} {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP)", rss))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--model", help="export dir (default: a slim high_res export)")
    parser.add_argument("--peak_megapixels", type=float, default=24.0,
                        help="image size for the peak-memory run; 0 skips it")
    args = parser.parse_args()
    model_dir = args.model or export_sandwich("high_res", model_id="bench", perturb=0.02)
    qstep = model_handler.read_spec(model_dir).qstep
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(f"{work}/corpus")
        paths = make_corpus(f"{work}/corpus", args.copies)
        images = [decode_image(open(p, "rb").read()).pixels for p in paths]
        megapixels = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
        print(f"{len(paths)} photographs, {megapixels:.1f} MP, model {model_dir}")
        preprocess, encode = parts(model_dir, images, qstep)
        print(f"pre-processor alone (1 process, loaded): {megapixels / preprocess:7.2f} MP/s")
        print(f"JPEG encoder alone (1 process):          {megapixels / encode:7.2f} MP/s")
        for workers in (1, 2):
            seconds = job(f"{work}/corpus/*", model_dir, f"{work}/bits{workers}", workers)
            print(f"compress job, {workers} worker process(es):     "
                  f"{megapixels / seconds:7.2f} MP/s ({seconds:.0f} s incl. start-up)")
        print("tile seams, 128-pixel tiles, tiled vs untiled reconstruction (8-bit):")
        source = np.asarray(Image.open(os.path.join(
            SKIMAGE_DIR, "motorcycle_left.png")).convert("RGB"))
        for halo, diff, psnr in seams(model_dir, source[:384, :512], 128):
            print(f"  halo {halo:3d} px: max |diff| {diff:3d}, PSNR {psnr:6.2f} dB")
        if args.peak_megapixels:
            print("peak resident memory, one-process job:")
            for name, rss in peak_memory(model_dir, f"{work}/peak", args.peak_megapixels):
                print(f"  {name}: {rss:7.0f} MB")


if __name__ == "__main__":
    main()

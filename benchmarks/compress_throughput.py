"""Compress and decompress throughput: the whole jobs against their bound, and their parts.

Real photographs (the bundled samples and scikit-image's photos, copied
`--copies` times: 55 photographs at the default) go through
`pipelines.compress` and then `pipelines.decompress`, each run as a user
runs it (a fresh `python -m pipelines.<job>`: interpreter start, imports,
model loading and the runner included), with the default flags and on one
worker process per core. Each job's
bound is measured in this process on the same images, model loaded: for
compress the pre-processor (TensorFlow on all cores) plus the JPEG encoder
spread over all cores (it runs one image per core), for decompress the JPEG
decoder and the PNG writer spread over all cores plus the post-processor.
Every figure is source megapixels per second of wall time, with its ratio to
the bound. Start-up (a worker imports TensorFlow and loads the model) is a
fixed cost, so each job also runs on a corpus twice as large: the
difference of the two runs is the steady state, what a large corpus sees,
and what the small run spent beyond it is the start-up, printed beside.
Each job, and the bound, runs `--repeats` times and counts its fastest run.
Then, on one model that changes pixels:

- tile seams: the largest pixel difference and the PSNR between tiled and
  untiled processing, for several halos;
- peak memory: the largest resident set of a one-process compress and
  decompress job on one `--peak_megapixels` image, against the same job on
  a small image (what the interpreter, TensorFlow and the model take alone).

    python benchmarks/compress_throughput.py --copies 5 --peak_megapixels 24

Without `--model`, an untrained slim `high_res` export is made (as the tests
make it, with perturbed output layers): its compute is a trained model's.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from codec import bottleneck_format, exported  # noqa: E402
from pipelines import decompress, sample_data  # noqa: E402
from sandwich import metrics  # noqa: E402
from sandwich.image_io import decode_image  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from corpus import SKIMAGE_DIR, make_corpus  # noqa: E402

SEAM_HALOS = (0, 16, 32, 64, 128)
CORES = len(os.sched_getaffinity(0))


def bounds(model_dir: str, images: list[np.ndarray], qstep: float) -> tuple[float, float]:
    """Seconds the compress and decompress jobs' work takes in this process:
    the processors on all cores (TensorFlow's own threads), the codec work
    divided among the cores."""
    model = exported.ExportedSandwich.load(model_dir)
    model.postprocess(model.preprocess(images[0][:64, :64]), (64, 64), qstep)  # sets TF up
    start = time.perf_counter()
    bottlenecks = [model.preprocess(image, qstep) for image in images]
    preprocess = time.perf_counter() - start
    start = time.perf_counter()
    files = [bottleneck_format.encode(b, bottleneck_format.Header.of(
        model.spec, qstep, *image.shape[:2], 8), model.spec.tables_at(qstep))
        for image, b in zip(images, bottlenecks)]
    encode = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [bottleneck_format.decode(data)[1] for data in files]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    restored = [model.postprocess(d, image.shape[:2], qstep) for d, image in zip(decoded, images)]
    postprocess = time.perf_counter() - start
    start = time.perf_counter()
    for pixels in restored:
        decompress.encode_png(pixels, 8)
    write = time.perf_counter() - start
    print(f"bound's parts, one core each but the processors: preprocess {preprocess:.2f} s, "
          f"JPEG encode {encode:.2f} s, JPEG decode {decode:.2f} s, "
          f"postprocess {postprocess:.2f} s, PNG encode {write:.2f} s")
    return preprocess + encode / CORES, postprocess + (decode + write) / CORES


def job(module: str, argv: list[str]) -> float:
    """Seconds one run of a job takes as a user runs it: a fresh interpreter
    (`python -m pipelines.<job>`), imports and model loading included."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"pipelines.{module}", *argv], cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"pipelines.{module} {' '.join(argv)} failed ({done.returncode}):\n"
                         + "\n".join((done.stdout + done.stderr).splitlines()[-30:]))
    return seconds


def _row(label: str, seconds: float, megapixels: float, bound: float) -> None:
    if seconds <= 0:  # Only a difference of two runs can be: other work slowed the first.
        print(f"{label:<52}{seconds:>9.2f}  (other processes took the machine: rerun)")
        return
    rate = megapixels / seconds
    print(f"{label:<52}{seconds:>9.2f}{rate:>8.2f}{rate / bound:>9.2f}x")


def throughput(model_dir: str, work: str, copies: int, repeats: int) -> None:
    """The compress and decompress jobs against their bounds, printed."""
    corpora = {}
    for name, count in (("small", copies), ("large", 2 * copies)):
        os.makedirs(f"{work}/{name}")
        paths = make_corpus(f"{work}/{name}", count)
        corpora[name] = [decode_image(open(p, "rb").read()).pixels for p in paths]
    qstep = exported.read_spec(model_dir).qstep
    megapixels = {name: sum(i.shape[0] * i.shape[1] for i in images) / 1e6
                  for name, images in corpora.items()}
    runs_of_bounds = [bounds(model_dir, corpora["small"], qstep) for _ in range(repeats)]
    bound_seconds = [min(run[i] for run in runs_of_bounds) for i in range(2)]
    print(f"model {model_dir}; {CORES} cores; small corpus {len(corpora['small'])} photographs "
          f"({megapixels['small']:.1f} MP), large {len(corpora['large'])}")
    print(f"{'run':<52}{'seconds':>9}{'MP/s':>8}{'vs bound':>10}")
    processes = ["--direct_running_mode=multi_processing", f"--direct_num_workers={CORES}"]
    # Without runner flags a job sizes its workers by its inputs' megapixels
    # (`beam_options.model_job_args`): a small corpus runs in the runner's process.
    runs = {"default flags": [], f"{CORES} worker processes": processes}
    for index, step in enumerate(("compress", "decompress")):
        bound = megapixels["small"] / bound_seconds[index]
        print(f"{step + ' bound, 1 process, all cores':<52}{bound_seconds[index]:>9.2f}"
              f"{bound:>8.2f}{1:>9.2f}x")
        for label, flags in runs.items():
            seconds = {}
            for corpus in ("small", "large"):
                # Decompress reads what the default compress run wrote.
                inputs = (f"{work}/{corpus}/*" if step == "compress" else
                          f"{work}/{corpus}-compress-default flags/*.jpg")
                # The fastest of `repeats` runs: on a shared machine, the one that
                # lost the least to other processes. Each writes afresh (a rerun
                # into the same directory would skip the finished outputs).
                seconds[corpus] = min(job(step, [
                    f"--input={inputs}", f"--model={model_dir}",
                    f"--output={work}/{corpus}-{step}-{label}" + (f"-{r}" if r else ""),
                    *flags]) for r in range(repeats))
                _row(f"{step}, {label}, {corpus} corpus", seconds[corpus], megapixels[corpus],
                     bound)
            steady = seconds["large"] - seconds["small"]
            _row(f"{step}, {label}, steady state", steady,
                 megapixels["large"] - megapixels["small"], bound)
            # What the small run spent beyond its megapixels at the steady rate:
            # interpreter, imports, model loading, the runner's start and end.
            start_up = seconds["small"] - steady * megapixels["small"] / (
                megapixels["large"] - megapixels["small"])
            print(f"{f'{step}, {label}, start-up (fixed cost)':<52}{start_up:>9.2f}")


def seams(model_dir: str, source: np.ndarray, tile: int) -> list[tuple[int, int, float]]:
    """(halo, max |difference|, PSNR dB) of tiled against untiled reconstruction."""
    whole = exported.ExportedSandwich.load(model_dir, tile=1 << 16, halo=0)
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
    parser.add_argument("--copies", type=int, default=5,
                        help="copies of the 11 photographs in the small corpus; twice as many "
                             "in the large one")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each job; each figure is the fastest")
    parser.add_argument("--model", help="export dir (default: a slim high_res export)")
    parser.add_argument("--peak_megapixels", type=float, default=24.0,
                        help="image size for the peak-memory run; 0 skips it")
    args = parser.parse_args()
    model_dir = args.model or export_sandwich("high_res", model_id="bench", perturb=0.02)
    with tempfile.TemporaryDirectory() as work:
        throughput(model_dir, f"{work}/throughput", args.copies, args.repeats)
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

"""Throughput of the dataset job against decoding alone, whole runs and steady state.

Real photographs (the bundled samples and scikit-image's photos, each copied
under new names so every copy gets its own crops; with `--megapixels`,
resized to about that many megapixels each, as a camera's photos are, and
with `--jpeg` saved as JPEGs, as cameras save them) go
through the whole job (match, shuffle the names, read, decode, fit, cut,
serialise, write shards and metadata) on the local runner, each run as a
user runs it: a fresh `python -m pipelines.make_dataset`, so interpreter
start, imports and the runner's start are in every figure. The bound is
the time one process takes only to read and decode the same files, timed
before every run of the job (the fastest counts, as for the job). Every
figure is source megapixels per second of wall time; so is the CPU time of
the job's processes, which other work on a shared machine disturbs less,
against the bound's.

The first run is what a user gets: the large corpus with no runner flags
(the job chooses its workers, which the row names); `--default_only` stops
there. Then one worker process: since start-up is a fixed cost, it runs on
a corpus half as large too, and the difference of the two runs gives the
steady state, what a corpus of millions of files sees. Two more runs on the
large corpus: two worker processes (with two shards per split, since a shard is
the unit of parallel work), and one worker in the runner's own process
(what starting a worker process costs).

    python benchmarks/make_dataset_throughput.py --copies 24
    python benchmarks/make_dataset_throughput.py --photos 120 --megapixels 2.4 --default_only
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipelines import make_dataset  # noqa: E402
from sandwich.image_io import decode_image  # noqa: E402

from corpus import make_corpus  # noqa: E402

PHOTOS_PER_COPY = 11  # `corpus.make_corpus`'s photographs


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds so far; CPU counts this process and its ended
    children (the job's processes), which other work disturbs less."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def timed(work, *args):
    """(wall seconds, CPU seconds, what `work(*args)` returned)."""
    wall, cpu = clocks()
    result = work(*args)
    wall_end, cpu_end = clocks()
    return wall_end - wall, cpu_end - cpu, result


def decode_only(paths: list[str]) -> float:
    """Megapixels of every file, read and decoded in this process."""
    megapixels = 0.0
    for path in paths:
        with open(path, "rb") as f:
            megapixels += decode_image(f.read()).megapixels
    return megapixels


def rewrite(path: str, megapixels: float, jpeg: bool) -> str:
    """The photograph at `path` resized to about `megapixels` (same aspect;
    0 keeps its size), saved in its format or, if `jpeg`, as a JPEG of
    quality 90 (a camera's usual) under its name plus `.jpg`; returns the
    new file's path."""
    with Image.open(path) as image:
        scale = math.sqrt(megapixels * 1e6 / (image.width * image.height)) if megapixels else 1
        size = (round(image.width * scale), round(image.height * scale))
        pixels = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        fmt = "JPEG" if jpeg else image.format
    os.remove(path)
    path += ".jpg" if fmt == "JPEG" and not path.endswith(".jpg") else ""
    pixels.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def photographs(directory: str, count: int, megapixels: float, jpeg: bool) -> list[str]:
    """`count` photographs in `directory`, copies of the corpus's (see
    `rewrite` for `megapixels` and `jpeg`); returns their paths."""
    os.makedirs(directory)
    paths = make_corpus(directory, math.ceil(count / PHOTOS_PER_COPY))
    for extra in paths[count:]:
        os.remove(extra)
    if megapixels or jpeg:
        return [rewrite(path, megapixels, jpeg) for path in paths[:count]]
    return paths[:count]


def dataset_job(argv: list[str]) -> int:
    """Runs the dataset job as a user does; returns the patches it made
    (from its account, `train N, eval M`)."""
    done = subprocess.run([sys.executable, "-m", "pipelines.make_dataset", *argv], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"pipelines.make_dataset {' '.join(argv)} failed ({done.returncode}):\n"
                         + "\n".join((done.stdout + done.stderr).splitlines()[-30:]))
    return sum(int(n) for n in re.findall(r"^patches: train (\d+), eval (\d+)", done.stdout,
                                          re.MULTILINE)[0])


def chosen_workers(argv: list[str]) -> str:
    """The workers the job chooses for `argv` with no runner flags, in words."""
    config, beam_args = make_dataset.parse_args(argv)
    workers = int(make_dataset.worker_flags(config, beam_args)[0].split("=")[1])
    return "the runner's process" if workers == 1 else f"{workers} worker processes"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--copies", type=int, default=24,
                        help=f"copies of the {PHOTOS_PER_COPY} photographs in the small corpus; "
                             "twice as many in the large one")
    parser.add_argument("--jpeg", action="store_true",
                        help="save every photograph as a JPEG, as cameras and phones do")
    parser.add_argument("--photos", type=int, default=0,
                        help="photographs in the large corpus instead (the small one has half)")
    parser.add_argument("--megapixels", type=float, default=0,
                        help="resize every photograph to about this many megapixels (0: as "
                             "they are, 0.05-2 MP)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each job; each figure is the fastest (on a shared "
                             "machine, the one that lost the least to other processes)")
    parser.add_argument("--default_only", action="store_true",
                        help="only the run a user gets (default flags, large corpus)")
    parser.add_argument("--patch_size", type=int, default=128)
    parser.add_argument("--patches_per_image", type=int, default=8)
    args = parser.parse_args(argv)
    photos = args.photos or 2 * args.copies * PHOTOS_PER_COPY
    with tempfile.TemporaryDirectory() as work:
        large = photographs(os.path.join(work, "large"), photos, args.megapixels,
                            args.jpeg)
        os.mkdir(os.path.join(work, "small"))
        small = [shutil.copy(path, os.path.join(work, "small")) for path in large[:photos // 2]]
        corpora = {"small": (len(small), decode_only(small)),
                   "large": (len(large), decode_only(large))}
        # Timed beside every run of the job, so that other work on a shared
        # machine slows the fastest bound no more than the fastest run.
        bounds = []
        processes = "--direct_running_mode=multi_processing"
        runs = [("default flags", "large", []),
                ("1 worker process", "small", [processes, "--direct_num_workers=1"]),
                ("1 worker process", "large", [processes, "--direct_num_workers=1"]),
                ("2 worker processes, 2 shards per split", "large",
                 [processes, "--direct_num_workers=2", "--num_shards=2"]),
                ("1 worker, in-process", "large", ["--direct_num_workers=1",
                                                   "--direct_running_mode=in_memory"])]
        rows = []
        for index, (label, corpus, flags) in enumerate(runs[:1] if args.default_only else runs):
            argv = [f"--input={work}/{corpus}/*", "--scenario=high_res",
                    f"--patch_size={args.patch_size}",
                    f"--patches_per_image={args.patches_per_image}", *flags]
            fastest = None
            for repeat in range(args.repeats):
                bounds.append(timed(decode_only, large))
                run = timed(dataset_job, [*argv, f"--output={work}/out{index}-{repeat}"])
                fastest = min(fastest or run, run)
            if not flags:
                label += f": {chosen_workers([*argv, '--output=unused'])}"
            count, mp = corpora[corpus]
            rows.append((label, count, *fastest, mp))
            if index == 2:
                (_, small_count, *small_run), large_run = rows[1], rows[2]
                rows.append(("1 worker, steady state (large - small)",
                             count - small_count, *(a - b for a, b in zip(large_run[2:],
                                                                          small_run))))
        bound_seconds, bound_cpu, megapixels = min(bounds)
        bound, bound_per_cpu = megapixels / bound_seconds, megapixels / bound_cpu
        print(f"{args.patch_size}x{args.patch_size} patches, {args.patches_per_image} per photo; "
              f"large corpus: {photos} photographs, {megapixels:.1f} source megapixels; "
              f"{len(os.sched_getaffinity(0))} cores")
        print(f"{'run':<45}{'photos':>7}{'seconds':>9}{'MP/s':>8}{'patches/s':>11}"
              f"{'vs decode':>11}{'CPU s':>7}{'CPU vs decode':>15}")
        for label, count, seconds, cpu, patches, mp in [
                ("decode only, 1 process (the bound)", photos, bound_seconds, bound_cpu, 0,
                 megapixels), *rows]:
            rate = f"{patches / seconds:>11.1f}" if patches else f"{'-':>11}"
            print(f"{label:<45}{count:>7}{seconds:>9.2f}{mp / seconds:>8.1f}{rate}"
                  f"{mp / seconds / bound:>10.2f}x{cpu:>7.2f}{mp / cpu / bound_per_cpu:>14.2f}x")


if __name__ == "__main__":
    main()

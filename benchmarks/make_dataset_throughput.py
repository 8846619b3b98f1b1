"""Throughput of the dataset job against decoding alone, whole runs and steady state.

Real photographs (the bundled samples and scikit-image's photos, each copied
under new names so every copy gets its own crops) go through the whole job
(match, shuffle the names, read, decode, fit, cut, serialise, write shards
and metadata) on the local runner. The bound is the time one process takes
only to read and decode the same files. Every figure is source megapixels
per second of wall time, job start-up (Beam's worker processes, pipeline
set-up) included; so is the CPU time of the job's processes, which other
work on a shared machine disturbs less, against the bound's.

The first run is what a user gets: the large corpus with no runner flags
(the job chooses its workers). Then one worker process: since start-up is a
fixed cost, it runs on a corpus half as large too, and the difference of
the two runs gives the steady state, what a corpus of millions of files
sees. Two more runs on the large corpus: two worker processes (with two
shards per split, since a shard is the unit of parallel work), and one
worker in the runner's own process (what starting a worker process costs).

    python benchmarks/make_dataset_throughput.py --copies 24
"""
import argparse
import contextlib
import io
import os
import tempfile
import time

from pipelines import make_dataset
from sandwich.image_io import decode_image

from corpus import make_corpus


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds so far; CPU counts this process and its ended
    children (the job's worker processes), which other work disturbs less."""
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


def dataset_job(argv: list[str]) -> int:
    """Patches made by one run of the dataset job; its account goes unprinted."""
    with contextlib.redirect_stdout(io.StringIO()):
        return sum(make_dataset.run(argv).splits.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--copies", type=int, default=24,
                        help="copies of the photographs in the small corpus; twice as many "
                             "in the large one")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each job; each figure is the fastest (on a shared "
                             "machine, the one that lost the least to other processes)")
    parser.add_argument("--patch_size", type=int, default=128)
    parser.add_argument("--patches_per_image", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        corpora = {}
        for name, copies in (("small", args.copies), ("large", 2 * args.copies)):
            os.mkdir(os.path.join(work, name))
            paths = make_corpus(os.path.join(work, name), copies)
            corpora[name] = (len(paths), min(timed(decode_only, paths)
                                             for _ in range(args.repeats)))
        photos, (bound_seconds, bound_cpu, megapixels) = corpora["large"]
        bound, bound_per_cpu = megapixels / bound_seconds, megapixels / bound_cpu
        print(f"{args.patch_size}x{args.patch_size} patches, {args.patches_per_image} per photo; "
              f"large corpus: {photos} photographs, {megapixels:.1f} source megapixels")
        print(f"{'run':<40}{'photos':>7}{'seconds':>9}{'MP/s':>8}{'patches/s':>11}"
              f"{'vs decode':>11}{'CPU s':>7}{'CPU vs decode':>15}")

        def row(label, count, seconds, cpu, mp, patches=None):
            rate = f"{patches / seconds:>11.1f}" if patches else f"{'-':>11}"
            print(f"{label:<40}{count:>7}{seconds:>9.2f}{mp / seconds:>8.1f}{rate}"
                  f"{mp / seconds / bound:>10.2f}x{cpu:>7.2f}{mp / cpu / bound_per_cpu:>14.2f}x")

        row("decode only, 1 process (the bound)", photos, bound_seconds, bound_cpu, megapixels)
        processes = "--direct_running_mode=multi_processing"
        runs = [("default flags", "large", []),
                ("1 worker process", "small", [processes, "--direct_num_workers=1"]),
                ("1 worker process", "large", [processes, "--direct_num_workers=1"]),
                ("2 worker processes, 2 shards per split", "large",
                 [processes, "--direct_num_workers=2", "--num_shards=2"]),
                ("1 worker, in-process", "large", ["--direct_num_workers=1",
                                                   "--direct_running_mode=in_memory"])]
        measured = []
        for index, (label, corpus, flags) in enumerate(runs):
            measured.append(min(timed(dataset_job, [
                f"--input={work}/{corpus}/*", f"--output={work}/out{index}-{repeat}",
                "--scenario=high_res", f"--patch_size={args.patch_size}",
                f"--patches_per_image={args.patches_per_image}", *flags])
                for repeat in range(args.repeats)))
            count, (_, _, mp) = corpora[corpus]
            row(label, count, *measured[-1][:2], mp, measured[-1][2])
            if index == 2:
                small, large = measured[1:]
                row("1 worker, steady state (large - small)",
                    count - corpora["small"][0], large[0] - small[0], large[1] - small[1],
                    mp - corpora["small"][1][2], large[2] - small[2])


if __name__ == "__main__":
    main()

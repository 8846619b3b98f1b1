"""Throughput of the dataset job on 1 and 2 worker processes, against decoding alone.

Real photographs (the bundled samples and scikit-image's photos, each copied
`--copies` times under new names so every copy gets its own crops) go
through the whole job (read, decode, fit, cut, PNG-encode patches, write
shards and metadata) on the default local runner. The baseline is the time
one process takes only to decode the same files, i.e. the floor a
single-worker job could reach. Figures are per second of wall time, job
start-up (worker processes importing TensorFlow) included. The in-process
run (not the default) shows what the multi-process runner's data plane
costs: every serialised patch crosses to the runner process and back on its
way to its shard.

    python benchmarks/make_dataset_throughput.py --copies 24
"""
import argparse
import os
import tempfile
import time

from pipelines import make_dataset
from sandwich.image_io import decode_image

from corpus import make_corpus


def decode_only(paths: list[str]) -> tuple[float, float]:
    """(seconds, megapixels) to read and decode every file in this process."""
    start, megapixels = time.perf_counter(), 0.0
    for path in paths:
        with open(path, "rb") as f:
            megapixels += decode_image(f.read()).megapixels
    return time.perf_counter() - start, megapixels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--copies", type=int, default=24)
    parser.add_argument("--patch_size", type=int, default=128)
    parser.add_argument("--patches_per_image", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "corpus")
        os.mkdir(corpus)
        paths = make_corpus(corpus, args.copies)
        seconds, megapixels = decode_only(paths)
        print(f"{len(paths)} photographs, {megapixels:.1f} source megapixels, "
              f"{args.patch_size}x{args.patch_size} patches, {args.patches_per_image} per photo")
        print(f"{'run':<26}{'seconds':>9}{'MP/s':>9}{'patches/s':>11}{'vs decode':>11}")
        print(f"{'decode only, 1 process':<26}{seconds:>9.2f}{megapixels / seconds:>9.1f}"
              f"{'-':>11}{1:>10.2f}x")
        runs = [("1 worker process", ["--direct_num_workers=1"]),
                ("2 worker processes", ["--direct_num_workers=2"]),
                ("1 worker, in-process", ["--direct_num_workers=1",
                                          "--direct_running_mode=in_memory"])]
        for index, (label, flags) in enumerate(runs):
            start = time.perf_counter()
            spec = make_dataset.run([
                f"--input={corpus}/*", f"--output={work}/out{index}", "--scenario=high_res",
                f"--patch_size={args.patch_size}",
                f"--patches_per_image={args.patches_per_image}", *flags])
            elapsed = time.perf_counter() - start
            patches = sum(spec.splits.values())
            print(f"{label:<26}{elapsed:>9.2f}{megapixels / elapsed:>9.1f}"
                  f"{patches / elapsed:>11.1f}{seconds / elapsed:>10.2f}x")

if __name__ == "__main__":
    main()

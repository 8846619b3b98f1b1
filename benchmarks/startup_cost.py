"""What a worker pays before its first image: imports, model loading, the first image.

Each arm runs in a fresh process, as a decompress job's worker starts: it
imports the codec and TensorFlow, loads a model set's post-processors (the
job's default set is every shipped model) and decompresses one file, a
bundled photo compressed by one model of the set. The baseline loads every
model of the set up front (`codec.load(..., eager=True)`, what the jobs did
before models loaded on first use); the default loads the set's specs and
only the processor the file needs (`codec.exported.ExportedSandwich`).
Each figure is the median of `--repeats` fresh processes.

    python benchmarks/startup_cost.py [--set shipped-all] [--model hr-x1-perceptual-r3]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from timing import fresh_worker  # noqa: E402

PHOTO = "coffee.png"


def worker(args) -> None:
    start = time.perf_counter()
    import tensorflow  # noqa: F401  (what every model job imports)

    import codec
    from codec.exported import POSTPROCESSOR
    imported = time.perf_counter()
    loaded_set = codec.load(args.set, processors=(POSTPROCESSOR,),
                            eager=args.worker == "eager")
    loaded = time.perf_counter()
    with open(args.file, "rb") as f:
        loaded_set.decompress(f.read())
    first = time.perf_counter()
    print(json.dumps({"import": imported - start, "load": loaded - imported,
                      "first image": first - loaded, "total": first - start}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--set", default="shipped-all", help="the model set a worker loads")
    parser.add_argument("--model", default="hr-x1-perceptual-r3",
                        help="the model that wrote the file it decompresses")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["eager", "lazy"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    import codec
    from sandwich import samples

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "photo.jpg")
        one = codec.load(args.model)
        with open(path, "wb") as f:
            f.write(one.compress(str(samples.SAMPLES_DIR / PHOTO),
                                 qstep=one.specs[args.model].qstep))
        passed = ["--set", args.set, "--file", path]
        runs = {kind: [fresh_worker(__file__, kind, passed) for _ in range(args.repeats)]
                for kind in ("eager", "lazy")}
    print(f"a fresh process: imports, the post-processors of `{args.set}`, then one {PHOTO} file of "
          f"{args.model} decompressed; median of {args.repeats}, seconds")
    print("| models load | import | load | first image | total |\n|---|---|---|---|---|")
    for kind, label in (("eager", "all at load (baseline)"), ("lazy", "on first use")):
        medians = {k: statistics.median(r[k] for r in runs[kind]) for k in runs[kind][0]}
        print(f"| {label} | " + " | ".join(f"{medians[k]:.2f}" for k in medians) + " |")
    saved = (statistics.median(r["total"] for r in runs["eager"])
             - statistics.median(r["total"] for r in runs["lazy"]))
    print(f"on first use saves {saved:.2f} s of a worker's start-up")


if __name__ == "__main__":
    main()

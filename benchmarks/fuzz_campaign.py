"""A long fuzzing campaign on the untrusted-input boundaries, with outcome counts.

    .venv/bin/python benchmarks/fuzz_campaign.py --examples 2000 --files 400

Runs the three targets of `tests.fuzz_targets` (decode_image, the bottleneck
header parser, output-path mapping) for `--examples` inputs each, and then
the compress and decompress jobs once each on `--files` generated bad files
mixed with good ones. Prints, per target, the inputs tried and how they
ended: decoded (or written), rejected with a reason, crashed (any other
exception: the contract forbids it), files lost (an input neither an output
nor a dead letter) and writes outside `--output`. Exits non-zero if any of
the last three is above zero. The tests run the same targets with a few
dozen examples (`tests/test_fuzz.py`, `tests/test_bad_input_jobs.py`).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import hypothesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import compress, decompress  # noqa: E402
from pipelines.jobs import DEAD_LETTER_FILE, MANIFEST_FILE  # noqa: E402
from tests import fuzz_targets  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

CRASHED, LOST, OUTSIDE = "crashed", "files lost", "writes outside output"
RUNNER = ["--direct_running_mode=in_memory", "--direct_num_workers=1", "--tile=32", "--halo=0"]


class Tally:
    """Outcome counts per target, and the first few crashes to show."""

    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)
        self.crashes: list[str] = []

    def run(self, target: str, fn, *args) -> None:
        try:
            self.counts[target][fn(*args)] += 1
        except Exception:  # noqa: BLE001 -- counting them is the point
            self.counts[target][CRASHED] += 1
            if len(self.crashes) < 5:
                self.crashes.append(f"{target}: {traceback.format_exc(limit=3)}")


def fuzz(tally: Tally, examples: int, seed: int) -> None:
    """Each target for `examples` inputs, none stopping the campaign."""
    config = settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))

    @config
    @given(fuzz_targets.mutated_images())
    def images(data):
        tally.run("decode_image", fuzz_targets.run_decode, data)

    @config
    @given(fuzz_targets.header_comments())
    def headers(example):
        tally.run("bottleneck header", fuzz_targets.run_header, example)

    root = tempfile.mkdtemp(prefix="fuzz-names-")

    @config
    @given(fuzz_targets.input_names())
    def names(name):
        tally.run("output names", fuzz_targets.run_output_name, name, root)

    for test in (images, headers, names):
        hypothesis.seed(seed)(test)()  # reproducible campaigns
    tally.counts["output names"][OUTSIDE] += len(fuzz_targets.writes_outside(root))


def _job(job, argv) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return job.run(argv)


def _lost(counts: dict, output: str, inputs: list[str], key: str) -> int:
    """Inputs that are in neither the manifest nor the dead letters, exactly once."""
    def paths(name, field):
        path = os.path.join(output, name)
        return [json.loads(line)[field] for line in open(path)] if os.path.exists(path) else []

    found = collections.Counter(paths(MANIFEST_FILE, key)
                                + paths(DEAD_LETTER_FILE, "path"))
    return sum(1 for p in inputs if found[p] != 1) + abs(
        counts["inputs"] - counts["written"] - counts["skipped"] - counts["dead_letters"])


def jobs(tally: Tally, files: int) -> None:
    """compress and decompress once each on `files` bad files and a few good ones."""
    root = tempfile.mkdtemp(prefix="fuzz-jobs-")
    sources, bits, restored = (os.path.join(root, d) for d in ("in", "bits", "restored"))
    os.makedirs(sources)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            os.path.join(sources, f"good[{i}].png"))
    for i, data in enumerate(fuzz_targets.bad_images(files)):
        with open(os.path.join(sources, f"bad_{i:04d}.png"), "wb") as f:
            f.write(data)
    model = export_sandwich("high_res", model_id="hr-untrained")
    inputs = sorted(os.path.join(sources, n) for n in os.listdir(sources))
    counts = _job(compress, [f"--input={sources}/*", f"--output={bits}", f"--model={model}",
                             "--qstep=16", *RUNNER])
    tally.counts["compress job"].update(written=counts["written"] + counts["skipped"],
                                        rejected=counts["dead_letters"])
    tally.counts["compress job"][LOST] += _lost(counts, bits, inputs, "source")

    with open(os.path.join(bits, "good[0].png.jpg"), "rb") as f:
        good = f.read()
    for i, data in enumerate(fuzz_targets.bad_bottlenecks(files, good)):
        with open(os.path.join(bits, f"bad_{i:04d}.jpg"), "wb") as f:
            f.write(data)
    inputs = sorted(os.path.join(bits, n) for n in os.listdir(bits) if n.endswith(".jpg"))
    counts = _job(decompress, [f"--input={bits}/*.jpg", f"--output={restored}",
                               f"--model={model}", *RUNNER])
    tally.counts["decompress job"].update(written=counts["written"] + counts["skipped"],
                                          rejected=counts["dead_letters"])
    tally.counts["decompress job"][LOST] += _lost(counts, restored, inputs, "bottleneck")
    # The jobs' inputs and outputs are the only files there may be under `root`.
    outside = [p for p in _files(root)
               if not p.startswith((sources + "/", bits + "/", restored + "/"))]
    tally.counts["decompress job"][OUTSIDE] += len(outside)


def _files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def report(tally: Tally) -> bool:
    """Prints the table; True if the contract held everywhere."""
    print(f"{'target':<20} {'inputs':>7} {'decoded/written':>16} {'rejected':>9} "
          f"{CRASHED:>8} {LOST:>11} {OUTSIDE:>22}")
    ok = True
    for target, counts in tally.counts.items():
        done, rejected = counts[fuzz_targets.DECODED] + counts["written"], counts["rejected"]
        tried = done + rejected + counts[CRASHED]
        print(f"{target:<20} {tried:>7} {done:>16} {rejected:>9} {counts[CRASHED]:>8} "
              f"{counts[LOST]:>11} {counts[OUTSIDE]:>22}")
        ok &= not (counts[CRASHED] or counts[LOST] or counts[OUTSIDE])
    for crash in tally.crashes:
        print(crash)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="inputs per fuzz target")
    parser.add_argument("--files", type=int, default=400, help="bad files per job run (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tally = Tally()
    fuzz(tally, args.examples, args.seed)
    if args.files:
        jobs(tally, args.files)
    return 0 if report(tally) else 1


if __name__ == "__main__":
    sys.exit(main())

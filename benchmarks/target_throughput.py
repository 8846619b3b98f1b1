"""Compression to a target: its throughput against fixed-qstep mode, and what it buys.

The held-out photographs (scikit-image's, copied `--copies` times) go
through `pipelines.compress` on the local runner (in this process, or on
`--workers` worker processes; model loading included), first at one model's trained step
(`--qstep` mode: pre-processor and encoder, nothing measured), then at each
`--targets` bpp over the whole model set (per image: plain JPEG and each
identity searched over their settings with the real encoder, then each
model that can still win, its pre-processor once, a search over its steps,
its post-processor on the pick; `codec.rate_control`). The modes
run in the same process on the same images, taking turns for `--repeats`
rounds, the fastest run of each counting (the CPU may be shared).

For each target it prints the throughput and its cost against fixed-qstep
mode, then what the files are worth: the mean bpp and PSNR of
sandwich-or-fallback, plain JPEG's PSNR at that mean bpp (its RD curve over
the same images at equal quality, interpolated in log rate), plain JPEG
held to the same target image by image (no header), the share of images each model
and the fallback took, and the targets missed; last, one line of the
target/fixed time ratios.

    python benchmarks/target_throughput.py --model runs/models/ --targets 0.3 0.5 1.0
    python benchmarks/target_throughput.py --model shipped --photos photos/held_out/*

`--check` instead asks what leaving out the candidates that cannot win
costs (`rate_control.choose`'s `prune`, whose model skip is a prediction):
per photo and target it codes with and without it, in this process, and
prints how often the file differs and by how many dB, and how many of the
set's pre-processors ran per image.

Without `--model`, two slim `high_res` exports (x1 and x2) with perturbed
output layers are made, as the tests make them: their compute is a trained
model's, their quality is not (and they record no gain, so every model runs).
With `--model shipped` the fixed-qstep model is the set's first unless
`--fixed` names another; the shipped models trained on some of
scikit-image's photographs (their specs' `release` lists the held-out ones),
which matters for what the files are worth, not for the time.
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

import codec  # noqa: E402
from codec import exported, rate_control, shipped  # noqa: E402
from pipelines import compress, evaluate, jobs, model_handler  # noqa: E402
from sandwich import metrics  # noqa: E402
from sandwich.image_io import decode_image  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from corpus import SKIMAGE_DIR, SKIMAGE_PHOTOS  # noqa: E402


def runner(workers: int) -> list[str]:
    """One worker: in this process, so that start-up (importing TensorFlow in
    fresh workers) does not drown the per-image cost being compared."""
    if workers == 1:
        return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def timed_jobs(jobs_argv: dict[str, list[str]], work: str, workers: int,
               repeats: int) -> dict[str, tuple[float, list[dict]]]:
    """Per job name: the seconds of its fastest run and its manifest. The
    jobs take turns, `repeats` rounds, each run into an empty directory, so a
    load that comes and goes on a shared CPU falls on every mode alike."""
    times = {name: [] for name in jobs_argv}
    for _ in range(repeats):
        for name, argv in jobs_argv.items():
            output = os.path.join(work, name)
            shutil.rmtree(output, ignore_errors=True)
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                compress.run([*argv, f"--output={output}", *runner(workers)])
            times[name].append(time.perf_counter() - start)
    out = {}
    for name in jobs_argv:
        with open(os.path.join(work, name, jobs.MANIFEST_FILE)) as f:
            out[name] = min(times[name]), [json.loads(line) for line in f]
    return out


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


def check_pruning(models: str, paths: list[str], targets: list[float]) -> None:
    """Per photo and target, `rate_control.choose` with and without leaving
    out the candidates that cannot win: how often the file differs, by how
    many dB, and the set's pre-processor runs per image each way."""
    loaded = codec.load(models)
    runs = collections.Counter()
    for model in loaded.models.values():
        preprocess = model.preprocess

        def counted(*args, _preprocess=preprocess, **kwargs):
            runs["now"] += 1
            return _preprocess(*args, **kwargs)

        model.preprocess = counted
    changed, losses, count, ran = 0, [], 0, collections.Counter()
    for path in paths:
        source = loaded.source(path)
        for value in targets:
            target = rate_control.Target(rate_control.BPP, value)
            picks = {}
            for prune in (False, True):
                runs["now"] = 0
                picks[prune] = rate_control.choose(loaded.models.values(), source, target,
                                                   fallback=loaded.bit_depth == 8, prune=prune)
                ran[prune] += runs["now"]
            count += 1
            every, pruned = picks[False], picks[True]
            if every.data != pruned.data:
                changed += 1
                losses.append(every.psnr - pruned.psnr)
                print(f"  {os.path.basename(path)} at {value:g} bpp: {every.header.model_id} "
                      f"{every.psnr:.2f} dB, pruned {pruned.header.model_id} {pruned.psnr:.2f} dB")
    print(f"{count} photo-targets over {len(loaded.models)} models: {changed} files differ"
          + (f", by {max(losses):.2f} dB at most, {np.mean(losses):.3f} dB on average"
             if losses else "")
          + f"; pre-processors per image {ran[False] / count:.2f} measuring every candidate, "
            f"{ran[True] / count:.2f} leaving out those that cannot win")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="a model set: export dirs, comma-separated, or a "
                                        "directory of them (default: two slim high_res exports)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.5, 1.0],
                        help="bpp targets")
    parser.add_argument("--photos", nargs="+",
                        default=[os.path.join(SKIMAGE_DIR, n) for n in SKIMAGE_PHOTOS],
                        help="photos the model set never saw (default: scikit-image's; give "
                             "your own when the models trained on some of them)")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of runs, the modes taking turns; the fastest run counts")
    parser.add_argument("--fixed", help="the model id of the set to time at its trained step "
                                        "(default: the set's first)")
    parser.add_argument("--check", action="store_true",
                        help="count the files that leaving out candidates changes, instead")
    args = parser.parse_args()
    if args.check:
        check_pruning(args.model or shipped.DEFAULT_SET, args.photos, args.targets)
        return
    models = args.model or ",".join(
        export_sandwich("high_res", model_id=f"bench-x{factor}", factor=factor, perturb=0.02,
                        seed=factor) for factor in (1, 2))
    dirs = model_handler.export_dirs(models)
    ids = list(model_handler.read_specs(dirs))
    if args.fixed and args.fixed not in ids:
        parser.error(f"--fixed {args.fixed} is not a model of the set {ids}")
    first = dirs[ids.index(args.fixed) if args.fixed else 0]
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(f"{work}/photos")
        for copy in range(args.copies):
            for path in args.photos:
                name = os.path.basename(path)
                shutil.copy(path, f"{work}/photos/{copy:02d}_{name}")
        images = [decode_image(open(os.path.join(f"{work}/photos", name), "rb").read()).pixels
                  for name in sorted(os.listdir(f"{work}/photos"))]
        megapixels = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
        print(f"{len(images)} held-out photographs, {megapixels:.1f} MP; model set "
              f"{', '.join(model_handler.read_specs(model_handler.export_dirs(models)))}; "
              f"{args.workers} worker process(es)")
        source = [f"--input={work}/photos", "--tile=1024", "--halo=128"]
        argv = {"fixed": [*source, f"--model={first}"]}
        argv.update({f"target-{t:g}": [*source, f"--model={models}", f"--target_bpp={t}"]
                     for t in args.targets})
        results = timed_jobs(argv, work, args.workers, args.repeats)
        fixed, _ = results["fixed"]
        print(f"fixed qstep, one model ({exported.read_spec(first).model_id}): "
              f"{megapixels / fixed:6.2f} MP/s ({fixed:.0f} s)")
        ratios = []
        sweep = plain_jpeg_sweep(images)
        curve = sweep[..., 0].mean(axis=0), sweep[..., 1].mean(axis=0)
        for target in args.targets:
            seconds, records = results[f"target-{target:g}"]
            bpp = float(np.mean([r["bpp"] for r in records]))
            psnr = float(np.mean([r["psnr"] for r in records]))
            plain = metrics.psnr_at(*curve, bpp)
            shares = collections.Counter(r["model_id"] for r in records)
            ratios.append(f"{target:g} bpp {seconds / fixed:.2f}x")
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
        print("target/fixed time: " + ", ".join(ratios))


if __name__ == "__main__":
    main()

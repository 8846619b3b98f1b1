"""The processors at bfloat16 against float32: their speed, and what it costs through the chain.

For each model, each photo goes through the whole chain, pre-processor,
real JPEG at the model's step, post-processor, once at float32 and once at
bfloat16 (`codec.precision`), each precision in its own fresh process since
TensorFlow's rewrite is the process's. Printed per model: the mean and the
worst change in PSNR (against the source), in MS-SSIM (dB) and in
Butteraugli 3-norm (where `butteraugli_main` is on PATH), and in file size,
bfloat16 minus float32; and the pre- and post-processor's megapixels per
second on a `--side` x `--side` image (the first photo mirrored to that
size, each timed on a second call, fastest of `--repeats` rounds that take
turns), with bfloat16's ratio to float32 measured in the same run.

`--record` writes each model's figures into its `model_spec.json` as
`precisions.bfloat16`, which `--precision auto` (the jobs' default) reads:
a model runs at bfloat16 only where the CPU has the instructions and its
recorded mean PSNR loss is at most `codec.precision.MAX_LOSS_DB`. Models of
more than 8 bits are not run: bfloat16 cannot hold their output. Record on
photos the model was not evaluated on (the default: the bundled photos
outside each model's held-out list); run on held-out photos (`--photos`)
to report, not to record.

    python benchmarks/inference_precision.py [--model shipped-all] [--photos 'dir/*.png'] [--record]
"""
import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from codec import api, bottleneck_format, exported, precision  # noqa: E402
from sandwich import metrics, perceptual  # noqa: E402
from sandwich.samples import SAMPLES_DIR  # noqa: E402
from sandwich.specs import MODEL_SPEC_FILE  # noqa: E402

from timing import mirrored  # noqa: E402

PRECISIONS = (precision.FLOAT32, precision.BFLOAT16)


def _timed(fn, *args):
    """`fn(*args)` and the seconds of a second call (the first instantiates
    the functions, and at bfloat16 rewrites them)."""
    fn(*args)
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def worker(model_dir: str, at: str, photos: list[str], side: int, out: str) -> None:
    """In a fresh process: each photo's reconstruction and file size at
    precision `at`, and the processors' seconds on the large image."""
    model = exported.ExportedSandwich.load(model_dir, precision=at)
    spec, record = model.spec, {"files": {}}
    for i, path in enumerate(photos):
        with open(path, "rb") as f:
            source = api.read_source(f.read(), spec.bit_depth, factor=spec.factor)
        coded = api.code_at(spec, spec.qstep, model.preprocess(source.pixels), source)
        header, decoded = bottleneck_format.decode(coded.data)
        np.save(os.path.join(out, f"{i}.npy"), api.reconstruct({spec.model_id: model}, header,
                                                             decoded))
        record["files"][path] = len(coded.data)
    with open(photos[0], "rb") as f:
        large = mirrored(api.read_source(f.read(), spec.bit_depth).pixels, side, side)
    bottleneck, record["pre_seconds"] = _timed(model.preprocess, large)
    _, record["post_seconds"] = _timed(model.postprocess, bottleneck, large.shape[:2], spec.qstep)
    with open(os.path.join(out, "record.json"), "w") as f:
        json.dump(record, f)


def run_worker(model_dir: str, at: str, photos: list[str], side: int, out: str) -> dict:
    os.makedirs(out, exist_ok=True)
    subprocess.run([sys.executable, __file__, "--worker", at, "--model", model_dir, "--side",
                    str(side), "--out", out, *photos], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(os.path.join(out, "record.json")) as f:
        return json.load(f)


def quality(path: str, reconstruction: np.ndarray, bit_depth: int, butteraugli: bool) -> dict:
    with open(path, "rb") as f:
        source = api.read_source(f.read(), bit_depth).pixels
    figures = {"psnr": float(metrics.psnr(reconstruction[None], source[None], bit_depth)[0])}
    try:  # MS-SSIM's five scales need 161 pixels a side.
        figures["ms_ssim_db"] = perceptual.ms_ssim_db(
            perceptual.ms_ssim(source, reconstruction, bit_depth))
    except ValueError:
        figures["ms_ssim_db"] = float("nan")
    if butteraugli:
        figures["butteraugli"] = perceptual.butteraugli(source, reconstruction, bit_depth)[1]
    return figures


def default_photos(spec) -> list[str]:
    """The bundled photos outside the model's held-out list."""
    held_out = set(spec.release.get("held_out", ()))
    return [p for p in sorted(glob.glob(os.path.join(SAMPLES_DIR, "*.png")))
            if os.path.basename(p) not in held_out]


def _mean(values) -> float | None:
    """The mean of the measured values (None where none was)."""
    values = [v for v in values if not np.isnan(v)]
    return round(float(np.mean(values)), 4) if values else None


def measure(model_dir: str, photos: list[str], side: int, repeats: int) -> dict:
    """bfloat16 against float32 on `photos`: the changes (bfloat16 minus
    float32) and the speeds."""
    spec = exported.read_spec(model_dir)
    butteraugli = perceptual.available() is None
    with tempfile.TemporaryDirectory() as work:
        runs = {at: [] for at in PRECISIONS}
        for round_ in range(repeats):
            for at in PRECISIONS:
                runs[at].append(run_worker(model_dir, at, photos, side,
                                           os.path.join(work, f"{at}-{round_}")))
        figures = {at: [quality(p, np.load(os.path.join(work, f"{at}-0", f"{i}.npy")),
                                spec.bit_depth, butteraugli) for i, p in enumerate(photos)]
                   for at in PRECISIONS}
    changes = {name: [b[name] - f[name] for f, b in zip(*figures.values())]
               for name in figures[precision.FLOAT32][0]}
    sizes = [runs[precision.BFLOAT16][0]["files"][p] / runs[precision.FLOAT32][0]["files"][p] - 1
             for p in photos]
    megapixels = side * side / 1e6
    speed = {at: {part: megapixels / min(r[f"{part}_seconds"] for r in runs[at])
                  for part in ("pre", "post")} for at in PRECISIONS}
    return {
        "psnr_change_db": round(float(np.mean(changes["psnr"])), 4),
        "worst_psnr_change_db": round(float(np.min(changes["psnr"])), 4),
        "ms_ssim_change_db": _mean(changes["ms_ssim_db"]),
        "butteraugli_change": _mean(changes.get("butteraugli", [])),
        "size_change": round(float(np.mean(sizes)), 5),
        "speedup": {part: round(speed[precision.BFLOAT16][part] / speed[precision.FLOAT32][part],
                                2) for part in ("pre", "post")},
        "megapixels_per_second": {at: {k: round(v, 2) for k, v in s.items()}
                                  for at, s in speed.items()},
        "photos": [os.path.basename(p) for p in photos],
    }


def record(model_dir: str, figures: dict, command: str) -> None:
    """Writes what bfloat16 changed into the export's spec as
    `precisions.bfloat16` (not its speed: that is the machine's)."""
    path = os.path.join(model_dir, MODEL_SPEC_FILE)
    with open(path) as f:
        data = json.load(f)
    kept = {k: v for k, v in figures.items() if k not in ("speedup", "megapixels_per_second")}
    data.setdefault("precisions", {})[precision.BFLOAT16] = {**kept, "command": command}
    with open(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="shipped-all",
                        help="export dirs, a directory of them, or a shipped name")
    parser.add_argument("--side", type=int, default=2048,
                        help="side of the image the speeds are timed on")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--record", action="store_true",
                        help="write the figures into each model_spec.json")
    parser.add_argument("--worker", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("photos", nargs="*", help="photos (default: the bundled photos "
                        "outside each model's held-out list)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.model, args.worker, args.photos, args.side, args.out)
    print(f"bfloat16 runs on this CPU: {precision.cpu_runs_bfloat16()}; {os.cpu_count()} cores; "
          f"speeds on a {args.side}x{args.side} image; changes are bfloat16 minus float32")
    print(f"{'model':<22}{'dPSNR mean/worst':>18}{'dMS-SSIM dB':>12}{'dButteraugli':>13}"
          f"{'dsize':>8}{'pre MP/s f32 bf16 x':>22}{'post MP/s f32 bf16 x':>23}")
    command = "python benchmarks/inference_precision.py " + shlex.join(
        a for a in (argv or sys.argv[1:]))
    for model_dir in exported.export_dirs(args.model):
        spec = exported.read_spec(model_dir)
        if not exported.can_code(model_dir):
            print(f"{spec.model_id:<22}not run: it decodes only (no pre-processor to run "
                  "the chain with)")
            continue
        if spec.bit_depth > precision.BFLOAT16_BITS:
            print(f"{spec.model_id:<22}not run: {spec.bit_depth}-bit output, which bfloat16 "
                  f"cannot hold")
            continue
        f = measure(model_dir, args.photos or default_photos(spec), args.side, args.repeats)
        s = f["megapixels_per_second"]
        ms_ssim, butteraugli = (float("nan") if f[k] is None else f[k]
                                for k in ("ms_ssim_change_db", "butteraugli_change"))
        print(f"{spec.model_id:<22}{f['psnr_change_db']:>+9.3f}/{f['worst_psnr_change_db']:<+8.3f}"
              f"{ms_ssim:>+12.3f}{butteraugli:>+13.3f}"
              f"{f['size_change']:>+8.2%}"
              f"{s['float32']['pre']:>9.2f}{s['bfloat16']['pre']:>7.2f}{f['speedup']['pre']:>6.2f}"
              f"{s['float32']['post']:>10.2f}{s['bfloat16']['post']:>7.2f}"
              f"{f['speedup']['post']:>6.2f}")
        if args.record:
            record(model_dir, f, command)


if __name__ == "__main__":
    main()

"""What the inner codec mode is worth before any training, against plain JPEG.

An untrained sandwich *is* its scenario's baseline (the tests prove it bit
for bit), so exporting untrained models in each JPEG mode and running the
evaluator on held-out photographs measures what the inner codec alone gives
or costs: high_res at full resolution (factor 1) and at x2, and
high_bit_depth on 10-bit copies, in YCbCr 4:2:0 (the default) and in RGB
planes at 4:4:4 (the reference implementation's mode), each against a plain
JPEG from Pillow and jpegli at the same rates (of the 8-bit ceiling for the
10-bit sources). The baselines' own curves are not needed (they are the
identity models), so the evaluator runs them at two steps only.

    python benchmarks/inner_codec.py --held_out 'photos/*.png' --output out/inner_codec

With `--deep`, the 10-bit sources are those photographs instead (real
high-bit-depth ones, `hdr_corpus.py`'s, rounded down to 10 bits), coded in
every mode down to step 1, where 8 bits are the limit: the table then gives
each mode's best PSNR and its rate beside the 8-bit ceiling.

    python benchmarks/inner_codec.py --deep photos/hdr/held_out/*.png

Prints the evaluator's table and a summary table of BD-PSNR against plain JPEG.
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines import evaluate  # noqa: E402
from tests.sandwich_exports import export_sandwich  # noqa: E402

from corpus import SKIMAGE_DIR, ten_bit_copies  # noqa: E402

DEFAULT_HELD_OUT = [os.path.join(SKIMAGE_DIR, name)
                    for name in ("motorcycle_left.png", "ihc.png", "hubble_deep_field.jpg")]
QSTEPS = ["2", "3", "4", "6", "8", "12", "16", "24", "32", "48", "64", "96"]
MODES = ("ycbcr-420", "planes")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held_out", nargs="+", default=DEFAULT_HELD_OUT,
                        help="held-out photographs (files)")
    parser.add_argument("--deep", nargs="+", default=[],
                        help="high-bit-depth photographs (files) for the 10-bit rows, in place "
                             "of 2x2 sums of --held_out")
    parser.add_argument("--output", default=tempfile.mkdtemp(prefix="inner-codec-"))
    args = parser.parse_args(argv)
    images = _linked(args.held_out, os.path.join(args.output, "held_out"))
    rows, ceiling = [], ""
    for bit_depth, scenario, factors in ((8, "high_res", (1, 2)), (10, "high_bit_depth", (1,))):
        held = images if bit_depth == 8 else _deep_photos(args)
        modes = MODES + (("ycbcr-444",) if args.deep and bit_depth > 8 else ())
        qsteps = (["1"] if args.deep and bit_depth > 8 else []) + QSTEPS
        models = [export_sandwich(scenario, model_id=f"identity-{scenario}-x{factor}-{mode}",
                                  factor=factor, jpeg_mode=mode)
                  for mode in modes for factor in factors]
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            summary = evaluate.run([
                "--models", *models, f"--input={held}/*",
                f"--output={args.output}/eval-{bit_depth}bit", "--qsteps", *qsteps,
                "--baseline_qsteps", *QSTEPS[:2], "--metrics", "psnr", "--report_photos", "0",
                "--direct_running_mode=in_memory", "--direct_num_workers=1"])
        if "eight_bit_ceiling_psnr" in summary:
            ceiling = f"; their 8-bit ceiling {summary['eight_bit_ceiling_psnr']:.2f} dB"
        print(printed.getvalue())
        curves = {m["name"]: m["results"] for m in summary["methods"]}
        for name in sorted(n for n in curves if n.startswith("identity") and not n.endswith(evaluate.VIEW)):
            bd = [summary["bd"][ref][name]["bd_psnr"] for ref in ("jpeg", "jpegli")]
            points = list(zip(curves[name]["bpp"], curves[name]["psnr"]))
            near = min(points, key=lambda p: abs(p[0] - 1.0))
            best = max(points, key=lambda p: p[1])
            rows.append(f"{name:<40} {_signed(bd[0]):>21}  {_signed(bd[1]):>9}  "
                        f"{near[1]:>8.2f} dB @ {near[0]:.2f}  {best[1]:>6.2f} dB @ {best[0]:.2f}")
    deep = (f"10-bit: {', '.join(os.path.basename(p) for p in args.deep)}" if args.deep
            else "10-bit: their 2x2 sums")
    print(f"held-out photos: {', '.join(os.path.basename(p) for p in args.held_out)} ({deep}; "
          f"plain JPEG and jpegli then code the source rounded to 8 bits{ceiling})")
    print(f"{'identity sandwich = scenario baseline':<40} {'BD-PSNR vs plain JPEG':>22} "
          f"{'vs jpegli':>10} {'PSNR at ~1 bpp':>15}  {'best PSNR':>16}")
    print("\n".join(rows))


def _deep_photos(args) -> str:
    """The 10-bit rows' sources: `--deep` (linked), else 2x2 sums of `--held_out`."""
    if not args.deep:
        return ten_bit_copies(args.held_out, os.path.join(args.output, "held_out10"))
    return _linked(args.deep, os.path.join(args.output, "deep"))


def _linked(paths, directory: str) -> str:
    """`directory`, holding a link to each of `paths` (the evaluator reads a glob)."""
    os.makedirs(directory, exist_ok=True)
    for path in paths:
        target = os.path.join(directory, os.path.basename(path))
        if not os.path.exists(target):
            os.symlink(os.path.abspath(path), target)
    return directory


def _signed(value) -> str:
    """'+1.23', or 'undefined' where the curves share no range."""
    return "undefined" if value is None else f"{value:+.2f}"


if __name__ == "__main__":
    main()

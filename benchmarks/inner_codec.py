"""What the inner codec mode is worth before any training, against plain JPEG.

An untrained sandwich *is* its scenario's baseline (the tests prove it bit
for bit), so exporting untrained models in each JPEG mode and running the
evaluator on held-out photographs measures what the inner codec alone gives
or costs: the identity sandwich at full resolution (factor 1) and the x2
baseline, in YCbCr 4:2:0 (the default) and in RGB planes at 4:4:4 (the
reference implementation's mode), each against a plain JPEG from Pillow and
jpegli at the same rates.

    python benchmarks/inner_codec.py --held_out 'photos/*.png' --output out/inner_codec

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

from corpus import SKIMAGE_DIR  # noqa: E402

DEFAULT_HELD_OUT = [os.path.join(SKIMAGE_DIR, name)
                    for name in ("motorcycle_left.png", "ihc.png", "hubble_deep_field.jpg")]
QSTEPS = ["2", "3", "4", "6", "8", "12", "16", "24", "32", "48", "64", "96"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held_out", nargs="+", default=DEFAULT_HELD_OUT,
                        help="held-out photographs (files)")
    parser.add_argument("--output", default=tempfile.mkdtemp(prefix="inner-codec-"))
    args = parser.parse_args(argv)
    images = os.path.join(args.output, "held_out")
    os.makedirs(images, exist_ok=True)
    for path in args.held_out:
        target = os.path.join(images, os.path.basename(path))
        if not os.path.exists(target):
            os.symlink(os.path.abspath(path), target)
    models = [export_sandwich("high_res", model_id=f"identity-x{factor}-{mode}", factor=factor,
                              jpeg_mode=mode)
              for mode in ("ycbcr-420", "planes") for factor in (1, 2)]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        summary = evaluate.run([
            "--models", *models, f"--input={images}/*", f"--output={args.output}/eval",
            "--qsteps", *QSTEPS, "--baseline_qsteps", *QSTEPS[:2],
            "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    print(printed.getvalue())
    curves = {m["name"]: m["results"] for m in summary["methods"]}
    print(f"held-out photos: {', '.join(os.path.basename(p) for p in args.held_out)}")
    print(f"{'inner codec':<26} {'BD-PSNR vs plain JPEG':>22} {'vs jpegli':>10} "
          f"{'PSNR at ~1 bpp':>15}")
    for name in sorted(n for n in curves if n.startswith("identity")):
        bd = [summary["bd"][ref][name]["bd_psnr"] for ref in ("jpeg", "jpegli")]
        points = sorted(zip(curves[name]["bpp"], curves[name]["psnr"]),
                        key=lambda p: abs(p[0] - 1.0))
        print(f"{name:<26} {bd[0]:>+21.2f}  {bd[1]:>+9.2f}  "
              f"{points[0][1]:>8.2f} dB @ {points[0][0]:.2f}")


if __name__ == "__main__":
    main()

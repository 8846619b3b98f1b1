"""A small high-bit-depth corpus synthesised from the bundled 8-bit photographs.

No real 10-16-bit photographs can ship with the project. Summing each k x k
block of an 8-bit photograph gives values up to 255 k^2 whose low bits are
genuine signal, not padding: a 2x2 sum carries 10 bits, a 4x4 sum 12. The
pictures are smaller by k and smoother than a real high-bit-depth capture,
so a dataset made from them says so in its spec (`PROVENANCE`).

    python -m pipelines.sample_data --output /tmp/hbd_sample --block 2
"""
from __future__ import annotations

import argparse
import glob
import os

from pipelines.batch_jobs import write_atomically
from sandwich.image_io import decode_image, encode_png16
from sandwich.samples import SAMPLES_DIR, block_sum, block_sum_bit_depth


def provenance(block: int) -> str:
    return (f"synthetic: {block_sum_bit_depth(block)}-bit pixels, each the sum of a "
            f"{block}x{block} block of a bundled 8-bit photograph (sandwich/data/samples)")


def write_sample(output: str, block: int = 2) -> list[str]:
    """Writes one 16-bit PNG (with `sBIT`) per bundled photograph; returns their paths."""
    paths = []
    for source in sorted(glob.glob(os.path.join(SAMPLES_DIR, "*.png"))):
        with open(source, "rb") as f:
            pixels = decode_image(f.read()).pixels
        name = os.path.splitext(os.path.basename(source))[0]
        path = f"{output.rstrip('/')}/{name}_sum{block}x{block}.png"
        write_atomically(path, encode_png16(block_sum(pixels, block), block_sum_bit_depth(block)))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", required=True, help="directory, local or gs://")
    parser.add_argument("--block", type=int, default=2, help="k: 2 gives 10 bits, 4 gives 12")
    args = parser.parse_args(argv)
    paths = write_sample(args.output, args.block)
    print(f"wrote {len(paths)} {block_sum_bit_depth(args.block)}-bit PNGs to {args.output}; make a "
          f"dataset with:\n  python -m pipelines.make_dataset --input '{args.output}/*.png' "
          f"--output OUT --scenario high_bit_depth --bit_depth {block_sum_bit_depth(args.block)} "
          f"--provenance '{provenance(args.block)}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

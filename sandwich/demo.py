"""A first look at the library: the JPEG proxy next to the real encoder.

Codes a bundled photograph at several quantisation steps with the
differentiable proxy and with libjpeg-turbo, and prints how closely they
agree: decoded pixels (PSNR between the two), quality against the source,
and the rate model's bit estimate against the real file size.
"""
from __future__ import annotations

import argparse

import numpy as np

from sandwich import logs, metrics, samples
from sandwich.jpeg import real_roundtrip, tables


def main(argv=None) -> None:
    logs.quiet_native_logs()  # before TensorFlow is imported (`sandwich.rate`), as every command does
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--image", default=str(samples.paths()[0]), help="an 8-bit RGB image")
    parser.add_argument("--qsteps", type=float, nargs="+", default=[2, 4, 8, 16, 32, 64])
    parser.add_argument("--jpeg_mode", choices=tables.MODE_NAMES, default=tables.DEFAULT_MODE.name)
    args = parser.parse_args(argv)
    from sandwich.rate import proxy_roundtrip

    codec = tables.JpegMode.parse(args.jpeg_mode).kwargs()

    source = samples.load(args.image)[None]
    height, width = source.shape[1:3]
    print(f"{args.image}: {width}x{height}, JPEG mode {args.jpeg_mode}, flat table")
    print(f"{'qstep':>6} {'proxy~real':>11} {'PSNR real':>10} {'PSNR proxy':>11} "
          f"{'bpp real':>9} {'bpp model':>10} {'rate error':>11}")
    for qstep in args.qsteps:
        proxy, estimate = proxy_roundtrip(source.astype(np.float32), qstep, **codec)
        real, bits = real_roundtrip(source, qstep, **codec)
        proxy = proxy.numpy()
        bpp_real = metrics.bits_per_pixel(bits, height, width)[0]
        bpp_model = metrics.bits_per_pixel(estimate.numpy(), height, width)[0]
        print(f"{qstep:6g} {metrics.psnr(proxy, real)[0]:9.1f}dB "
              f"{metrics.psnr(source, real)[0]:8.2f}dB {metrics.psnr(source, proxy)[0]:9.2f}dB "
              f"{bpp_real:9.3f} {bpp_model:10.3f} {100 * (bpp_model / bpp_real - 1):+10.1f}%")


if __name__ == "__main__":
    main()

"""Perceptual quality metrics: MS-SSIM and Butteraugli, in the units the
learned-compression literature reports them.

PSNR rewards a post-processor for the mean squared error alone; a reader of
an RD comparison also wants to know what the images look like. Both metrics
here take 8-bit or deeper RGB `[h, w, 3]` at the source's own peak
(`2**bit_depth - 1`), like `sandwich.metrics.psnr`:

- `ms_ssim`: TensorFlow's `tf.image.ssim_multiscale` with its defaults
  (5 scales, Wang et al.'s power factors, an 11-pixel Gaussian window of
  sigma 1.5), the definition CompressAI evaluates with (through
  `pytorch_msssim`) and the learned-compression papers report; higher is
  better, 1 for identical images. `ms_ssim_db` is its dB form, the axis of
  MS-SSIM plots and BD figures.
- `butteraugli`: libjxl's `butteraugli_main` (Debian: `libjxl-devtools`) at
  its default intensity target (80 nits, an ordinary screen), which
  interprets untagged files as sRGB; lower is better, 0 for identical
  images. It gives the largest local distance (the worst spot) and the
  3-norm over the image (the JPEG XL project's summary figure).

TensorFlow is imported inside the functions that need it (`ms_ssim`, and
the 16-bit PNG writer for deeper images), so that 8-bit Butteraugli needs
none; Butteraugli runs as a subprocess on temporary PNG files.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
from PIL import Image

MS_SSIM_SCALES = 5
MS_SSIM_FILTER_SIZE = 11
# TensorFlow pads an odd side before each 2x average pooling, so after 4
# halvings a side n is ceil(n / 16), which must hold the 11-pixel window:
# n >= 161 (the textbook 11 * 2**4 = 176 assumes sides rounded down).
MS_SSIM_MIN_SIDE = (MS_SSIM_FILTER_SIZE - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1
# libjxl returns a distance of 0 for a side under 8 pixels, whatever the pixels.
BUTTERAUGLI_MIN_SIDE = 8
BUTTERAUGLI = "butteraugli_main"
BUTTERAUGLI_PACKAGE = "libjxl-devtools"
_PNORM = 3
_OUTPUT = re.compile(r"^\s*(\S+)\s*\n\s*3-norm:\s*(\S+)\s*$")


def _check_pair(reference, distorted, bit_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 (up to 8 bits) or uint16, refused unless they are
    integer RGB `[h, w, 3]` of one shape within 0..2**bit_depth - 1."""
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"bit_depth must be in 1..16, got {bit_depth}")
    reference, distorted = np.asarray(reference), np.asarray(distorted)
    if reference.shape != distorted.shape or reference.ndim != 3 or reference.shape[-1] != 3:
        raise ValueError(f"need two RGB [h, w, 3] images of one shape, got {reference.shape} "
                         f"and {distorted.shape}")
    for image in (reference, distorted):
        if not np.issubdtype(image.dtype, np.integer):
            raise ValueError(f"need integer pixel values, got {image.dtype}")
        if image.size and (image.min() < 0 or image.max() >= 2 ** bit_depth):
            raise ValueError(f"pixel values outside 0..{2 ** bit_depth - 1} for a "
                             f"{bit_depth}-bit image")
    container = np.uint8 if bit_depth <= 8 else np.uint16
    return reference.astype(container), distorted.astype(container)


def ms_ssim(reference, distorted, bit_depth: int = 8) -> float:
    """MS-SSIM of two RGB `[h, w, 3]` integer images at peak `2**bit_depth - 1`.

    Both sides must be at least `MS_SSIM_MIN_SIDE` (161) pixels, or a
    ValueError says so. There is no fallback to fewer scales: TensorFlow
    then drops the coarsest power factors without renormalising the rest,
    so the value is a product of fewer terms (higher for the same image),
    and a mean over images of several sizes, or a BD figure from it, would
    mix different metrics. The images go to TensorFlow in uint8 (up to 8
    bits) or uint16, which it scales to [0, 1] with `max_val` alike: an
    8-bit pair gives exactly what a direct call on uint8 arrays gives.
    """
    reference, distorted = _check_pair(reference, distorted, bit_depth)
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM ({MS_SSIM_SCALES} scales) needs both sides of at least "
                         f"{MS_SSIM_MIN_SIDE} pixels; this image is "
                         f"{reference.shape[1]}x{reference.shape[0]}")
    import tensorflow as tf

    value = tf.image.ssim_multiscale(tf.constant(reference), tf.constant(distorted),
                                     max_val=2 ** bit_depth - 1)
    return float(value)


def ms_ssim_db(value: float) -> float:
    """`-10 log10(1 - MS-SSIM)`: the dB form that spreads the values near 1
    where codecs differ (0.99 -> 20 dB, 0.999 -> 30 dB); inf for 1."""
    with np.errstate(divide="ignore"):
        return float(-10.0 * np.log10(1.0 - np.float64(value)))


def available() -> str | None:
    """None if Butteraugli can run here, else why not (a message for a job
    to fail with up front, rather than in every worker)."""
    if shutil.which(BUTTERAUGLI) is None:
        return (f"Butteraugli needs libjxl's {BUTTERAUGLI}, which is not on PATH; install "
                f"the Debian package {BUTTERAUGLI_PACKAGE} (apt-get install "
                f"{BUTTERAUGLI_PACKAGE}), or leave butteraugli out of the metrics")
    return None


def _png(image: np.ndarray, bit_depth: int) -> bytes:
    """An RGB PNG that `butteraugli_main` reads at full precision: 8-bit via
    Pillow, else 16-bit (`encode_png16`'s left-bit replication) *without* its
    `sBIT` chunk. libjxl 0.7's PNG reader takes `sBIT` as the samples'
    scale: a 10-bit source written with it measured 363 against the same
    pixels written without it (0 expected), so the chunk is dropped."""
    if bit_depth <= 8:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()
    from sandwich.image_io import encode_png16

    return _drop_chunk(encode_png16(image, bit_depth, compression=1), b"sBIT")


def _drop_chunk(png: bytes, kind: bytes) -> bytes:
    """`png` without its chunks of type `kind` (each chunk: 4-byte length,
    type, data, 4-byte CRC, after the 8-byte signature)."""
    out, at = [png[:8]], 8
    while at < len(png):
        length = int.from_bytes(png[at:at + 4], "big")
        end = at + 12 + length
        if png[at + 4:at + 8] != kind:
            out.append(png[at:end])
        at = end
    return b"".join(out)


def _butteraugli_files(reference_path: str, distorted_path: str) -> tuple[float, float]:
    why = available()
    if why:
        raise FileNotFoundError(why)
    run = subprocess.run([BUTTERAUGLI, reference_path, distorted_path, "--pnorm", str(_PNORM)],
                         capture_output=True, text=True, check=False)
    match = _OUTPUT.match(run.stdout)
    if run.returncode != 0 or not match:
        raise RuntimeError(f"{BUTTERAUGLI} failed (exit {run.returncode}): "
                           f"{(run.stderr or run.stdout).strip()[-500:]}")
    return float(match[1]), float(match[2])


def butteraugli(reference, distorted, bit_depth: int = 8) -> tuple[float, float]:
    """(max distance, 3-norm) of `distorted` against `reference`, RGB
    `[h, w, 3]` integers at `bit_depth` (deeper ones as 16-bit PNGs),
    through libjxl's `butteraugli_main`. Lower is better.

    Raises FileNotFoundError (naming `libjxl-devtools`) without the binary,
    and ValueError for a side under 8 pixels, where libjxl reports 0 for
    any pair of images. A call costs about 0.23 s on a 600x400 photo, one
    core (0.17 s of it `butteraugli_main`: about 0.9 s per megapixel).
    """
    reference, distorted = _check_pair(reference, distorted, bit_depth)
    if min(reference.shape[:2]) < BUTTERAUGLI_MIN_SIDE:
        raise ValueError(f"Butteraugli needs both sides of at least {BUTTERAUGLI_MIN_SIDE} "
                         f"pixels; this image is {reference.shape[1]}x{reference.shape[0]}")
    with tempfile.TemporaryDirectory(prefix="butteraugli-") as directory:
        paths = []
        for name, image in (("reference.png", reference), ("distorted.png", distorted)):
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(_png(image, bit_depth))
            paths.append(path)
        return _butteraugli_files(*paths)


def butteraugli_db(norm: float) -> float:
    """`-10 log10(distance)`: a Butteraugli distance as a quality that rises
    as the distance falls, for the RD tools that assume higher is better
    (Pareto fronts, BD-rate); the log puts it on a dB scale, as PSNR is
    of the squared error. inf for identical images."""
    return math.inf if norm == 0 else float(-10.0 * math.log10(norm))

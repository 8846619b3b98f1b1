"""Real high-bit-depth photographs for the quality benchmark's 16-bit runs.

Public photographs are mostly 8-bit, so their low bits hold nothing a deeper
codec could lose. The OpenEXR project's samples are half-float scene-linear
photographs (ILM, 2002-2009; BSD-3-Clause); this develops 16 of them into
16-bit sRGB PNGs (one global tone curve, no resampling), 12 to train on and
4 held out, with a PROVENANCE.md and the licence beside them:

    git clone https://github.com/AcademySoftwareFoundation/openexr-images /tmp/openexr-images
    pip install -e '.[hdr]'
    python benchmarks/hdr_corpus.py /tmp/openexr-images photos/hdr
    python benchmarks/inner_codec.py --deep photos/hdr/held_out/*.png

Each source's git blob id is checked against the one the photos were first
made from (commit e38ffb0), so a later clone gives the same pixels or stops.
"""
import argparse
import hashlib
import os
import shutil
import subprocess

import numpy as np

from sandwich.image_io import encode_png16

# (path in the repository, start of its git blob id, what the photograph shows)
SOURCES = (
    ("Chromaticities/Rec709.exr", "13b3fca94da1", "banana-flower bud among leaves, daylight"),
    ("LuminanceChroma/CrissyField.exr", "dcdaffa6f8c6", "Crissy Field, San Francisco: grass, cypresses, overcast"),
    ("LuminanceChroma/Flowers.exr", "b1b34a012e60", "hydrangea blossoms, close-up"),
    ("LuminanceChroma/MtTamNorth.exr", "ac1c3db5cffa", "view north from Mount Tamalpais: rock, hills, bay"),
    ("MultiResolution/Bonita.exr", "6e64a0324485", "Point Bonita: sun behind clouds over the sea"),
    ("MultiResolution/KernerEnvLatLong.exr", "286bb0ffd49a", "equirectangular panorama of a parking lot"),
    ("MultiResolution/StageEnvLatLong.exr", "bc871c43c35c", "equirectangular panorama of a film stage"),
    ("MultiView/Adjuster.exr", "a2677cb9622b", "brass plane-blade adjuster, macro (centre view)"),
    ("ScanLines/CandleGlass.exr", "55714cb1dc9d", "candle and wine glass on black, lens flare"),
    ("ScanLines/Cannon.exr", "aeb739af8476", "bronze cannon detail, grotesque face relief"),
    ("ScanLines/Carrots.exr", "b4697022c712", "vegetables and fruit with a colour checker"),
    ("ScanLines/Desk.exr", "d6ed3923c158", "stained-glass window above a carved desk"),
    ("ScanLines/MtTamWest.exr", "632b2758a21e", "view west from Mount Tamalpais: valleys, reservoir, haze"),
    ("ScanLines/StillLife.exr", "68e8dff85ae2", "night still life: oil lamps, glasses, bread"),
    ("ScanLines/Tree.exr", "ec501dffef18", "oak trunk against bright sky, back-lit"),
    ("Tiles/GoldenGate.exr", "620d41210446", "Golden Gate Bridge and San Francisco at dusk"),
)
HELD_OUT = ("Desk", "GoldenGate", "Tree", "Adjuster")

STEPS = (
    "read with the OpenEXR 3.5.3 Python binding: level 0 of mip-maps, the default view, alpha ignored",
    "Y/RY/BY files: chroma upsampled 2x (bilinear, centre-aligned); R=(RY+1)Y, B=(BY+1)Y, G=(Y-wR*R-wB*B)/wG",
    "other primaries (Carrots, Tree) to linear Rec.709/D65 via XYZ, Bradford adaptation; NaN, Inf, negatives to 0",
    "x = s * RGB, s = 0.18/exp(mean(log(L+1e-6))) (L: Rec.709 luminance); per channel y = x(1+x/W^2)/(1+x), "
    "W: 99.5th percentile of the per-pixel max of x; y clipped to [0, 1]",
    "sRGB transfer curve, round(y * 65535) to uint16, no dithering",
    "centre crop to multiples of 16 (under 16 rows/columns), written as 16-bit RGB PNG (sBIT 16)",
)
REC709 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
white_xyz = lambda x, y: np.array([x / y, 1.0, (1 - x - y) / y])  # XYZ of the chromaticity (x, y) at Y = 1


def rgb_to_xyz(chromaticities) -> np.ndarray:
    """RGB -> XYZ for a header's chromaticities (r, g, b, white x, y); row 1: luminance weights."""
    xy = np.reshape(chromaticities[:6], (3, 2))
    primaries = np.array([white_xyz(x, y) for x, y in xy]).T
    return primaries * np.linalg.solve(primaries, white_xyz(*chromaticities[6:]))


def to_rec709(chromaticities) -> np.ndarray:
    """The matrix from linear RGB with these primaries to linear Rec.709/D65: the
    benchmark's PNGs are sRGB, and two sources (ACES AP0, camera primaries) are not."""
    source, target = BRADFORD @ white_xyz(*chromaticities[6:]), BRADFORD @ white_xyz(*REC709[6:])
    adapt = np.linalg.inv(BRADFORD) @ np.diag(target / source) @ BRADFORD
    return np.linalg.inv(rgb_to_xyz(REC709)) @ adapt @ rgb_to_xyz(chromaticities)


def upsample2(plane: np.ndarray, shape) -> np.ndarray:
    """A 2x2-subsampled chroma plane bilinearly upsampled (centre-aligned) to the luminance's `shape`."""
    def taps(n, size):  # the source index below and above each output sample, and the weight of the upper one
        position = np.clip((np.arange(size) + 0.5) / 2 - 0.5, 0, n - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, n - 1), position - low
    y0, y1, fy = taps(plane.shape[0], shape[0])
    x0, x1, fx = taps(plane.shape[1], shape[1])
    rows = lambda y: plane[y][:, x0] * (1 - fx) + plane[y][:, x1] * fx
    return rows(y0) * (1 - fy[:, None]) + rows(y1) * fy[:, None]


def read_linear_rec709(path: str) -> np.ndarray:
    """[height, width, 3] float64 linear Rec.709 of an RGB or luminance/chroma EXR. OpenEXR is
    imported here so that nothing else in the project needs it."""
    try:
        import OpenEXR
    except ImportError:
        raise SystemExit("reading EXRs needs the OpenEXR binding: pip install OpenEXR==3.5.3") from None
    with OpenEXR.File(path, separate_channels=True) as exr:
        chromaticities = tuple(exr.header().get("chromaticities", REC709))
        channels = {name: c.pixels.astype(np.float64) for name, c in exr.channels().items()}
    if "R" in channels:
        rgb = np.stack([channels["R"], channels["G"], channels["B"]], -1)
    else:  # OpenEXR's RgbaYca equations
        y = channels["Y"]
        weights = rgb_to_xyz(chromaticities)[1]
        r = (upsample2(channels["RY"], y.shape) + 1) * y
        b = (upsample2(channels["BY"], y.shape) + 1) * y
        rgb = np.stack([r, (y - r * weights[0] - b * weights[2]) / weights[1], b], -1)
    if not np.allclose(chromaticities, REC709, atol=1e-3):
        rgb = rgb @ to_rec709(chromaticities).T
    return np.maximum(np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0), 0.0)


def develop(rgb: np.ndarray) -> np.ndarray:
    """16-bit sRGB of scene-linear light by one global curve per photo (Reinhard key 0.18, white
    at the 99.5th percentile): no local detail invented, about 0.5% of pixels clipped."""
    log_average = np.exp(np.mean(np.log(rgb @ np.array([0.2126, 0.7152, 0.0722]) + 1e-6)))
    x = rgb * (0.18 / log_average)
    white = np.percentile(x.max(-1), 99.5)
    y = np.clip(x * (1 + x / white**2) / (1 + x), 0, 1)
    srgb = np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(y, 1 / 2.4) - 0.055)
    return np.round(np.clip(srgb, 0, 1) * 65535).astype(np.uint16)


def crop16(pixels: np.ndarray) -> np.ndarray:
    """The centre crop with sides multiples of 16: the codec's blocks tile it unpadded."""
    height, width = pixels.shape[0] // 16 * 16, pixels.shape[1] // 16 * 16
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    return pixels[top:top + height, left:left + width]


def checked_source(repository: str, path: str, blob: str) -> str:
    """The file's full path, once its git blob id shows it is the one the photos
    were made from (a later upstream edit would change the pixels)."""
    with open(full := os.path.join(repository, path), "rb") as f:
        data = f.read()
    if not hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().startswith(blob):
        raise SystemExit(f"{full} is not blob {blob}: check out e38ffb0 in {repository}")
    return full


def hdr_photos(repository: str, output: str) -> list[str]:
    """Develops `SOURCES` from a clone of openexr-images into `output`/train and
    `output`/held_out as exr_<name>.png, with PROVENANCE.md and the licence
    beside them; returns the new paths."""
    commit = subprocess.run(["git", "-C", repository, "rev-parse", "HEAD"], capture_output=True, text=True)
    for split in ("train", "held_out"):
        os.makedirs(os.path.join(output, split), exist_ok=True)
    shutil.copy(os.path.join(repository, "LICENSE"), os.path.join(output, "LICENSE-openexr-images.txt"))
    lines = ["# Provenance", "",
             "Developed by benchmarks/hdr_corpus.py from github.com/AcademySoftwareFoundation/openexr-images, "
             f"commit {commit.stdout.strip() or 'unknown'}.", "",
             "Licence: BSD-3-Clause (Industrial Light & Magic and contributors). Keep LICENSE-openexr-images.txt "
             "beside these files and with any copy of them.", "", "Conversion:", "",
             *[f"{n}. {step}" for n, step in enumerate(STEPS, 1)], "", "Files:", ""]
    paths = []
    for path, blob, content in SOURCES:
        stem = os.path.splitext(os.path.basename(path))[0]
        name = os.path.join("held_out" if stem in HELD_OUT else "train", f"exr_{stem.lower()}.png")
        paths.append(os.path.join(output, name))
        pixels = crop16(develop(read_linear_rec709(checked_source(repository, path, blob))))
        with open(paths[-1], "wb") as f:
            f.write(encode_png16(pixels, 16))
        lines.append(f"- {name}: `{path}` (blob {blob}), {content}")
    with open(os.path.join(output, "PROVENANCE.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Develops 16 OpenEXR sample photographs into 16-bit PNGs.")
    parser.add_argument("repository", help="a clone of github.com/AcademySoftwareFoundation/openexr-images")
    parser.add_argument("output")
    args = parser.parse_args()
    print(f"{len(hdr_photos(args.repository, args.output))} photos in {args.output}")

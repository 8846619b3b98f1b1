"""Small ICC profiles made here, for photographs tagged as cameras and phones tag them.

Pillow's `ImageCms.createProfile` makes sRGB, Lab and XYZ only, and no ICC
file ships with the test environment, so the wide-gamut profiles the tests
need (Display P3, an Adobe RGB-like one) are written byte by byte: ICC v4
matrix/TRC display profiles, the kind phones and cameras embed. The
colorants are the primaries adapted to the D50 connection space by Bradford,
as the ICC specification asks; LittleCMS reads them as it reads Apple's own.
"""
from __future__ import annotations

import struct

import numpy as np

D50 = np.array([0.9642, 1.0, 0.8249])
D65_XY = (0.3127, 0.3290)
BRADFORD = np.array([[0.8951, 0.2664, -0.1614],
                     [-0.7502, 1.7135, 0.0367],
                     [0.0389, -0.0685, 1.0296]])
# (red, green, blue) chromaticities.
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_RGB = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))
# sRGB's tone curve as ICC parametric curve type 3: g, a, b, c, d.
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)


def _xyz(xy) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def colorants(primaries, white_xy=D65_XY) -> np.ndarray:
    """The D50-adapted XYZ of the primaries as columns (rXYZ, gXYZ, bXYZ)."""
    columns = np.stack([_xyz(p) for p in primaries], axis=1)
    white = _xyz(white_xy)
    matrix = columns * np.linalg.solve(columns, white)
    cone_scale = (BRADFORD @ D50) / (BRADFORD @ white)
    adapt = np.linalg.solve(BRADFORD, cone_scale[:, None] * BRADFORD)
    return adapt @ matrix


def _s15(values) -> bytes:
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)


def _xyz_tag(xyz) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(xyz)


def _text(text: str) -> bytes:
    utf16 = text.encode("utf-16-be")
    return b"mluc" + b"\0" * 4 + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(utf16), 28) + utf16


def para_curve(params=SRGB_CURVE) -> bytes:
    """A `para` tag: type 0 (gamma), 1, 2, 3 or 4 by the number of parameters."""
    kind = {1: 0, 3: 1, 4: 2, 5: 3, 7: 4}[len(params)]
    return b"para" + b"\0" * 4 + struct.pack(">HH", kind, 0) + _s15(params)


def gamma_curve(gamma: float) -> bytes:
    """A one-entry `curv` tag: a gamma in u8Fixed8 (as Adobe RGB's 563/256)."""
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def table_curve(values: np.ndarray) -> bytes:
    """A `curv` tag of sampled values in [0, 1]."""
    table = np.rint(np.asarray(values) * 65535).astype(">u2").tobytes()
    return b"curv" + b"\0" * 4 + struct.pack(">I", len(values)) + table + b"\0" * (len(table) % 4)


def matrix_profile(description: str, primaries, curve: bytes | None = None) -> bytes:
    """An ICC v4 RGB display profile of `primaries` (D65 white) and one tone
    curve tag for the three channels (default: sRGB's)."""
    curve = curve or para_curve()
    columns = colorants(primaries)
    tags = [(b"desc", _text(description)), (b"cprt", _text("No copyright, test data")),
            (b"wtpt", _xyz_tag(D50)),
            (b"rXYZ", _xyz_tag(columns[:, 0])), (b"gXYZ", _xyz_tag(columns[:, 1])),
            (b"bXYZ", _xyz_tag(columns[:, 2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    return _assemble(b"RGB ", tags)


def gray_profile(description: str, curve: bytes) -> bytes:
    """An ICC v4 gray display profile with tone curve `curve`."""
    return _assemble(b"GRAY", [(b"desc", _text(description)), (b"cprt", _text("none")),
                               (b"wtpt", _xyz_tag(D50)), (b"kTRC", curve)])


def _assemble(space: bytes, tags) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset, entries, bodies = 128 + table_size, b"", b""
    placed = {}  # identical bodies (the three TRCs) are shared, as real profiles do
    for signature, body in tags:
        if body not in placed:
            placed[body] = offset
            padded = body + b"\0" * (-len(body) % 4)
            bodies += padded
            offset += len(padded)
        entries += struct.pack(">4sII", signature, placed[body], len(body))
    size = 128 + table_size + len(bodies)
    header = struct.pack(">I4sI4s4s4s12s4s4sI4s4s8sI12s4s16s28s", size, b"lcms", 0x04300000,
                         b"mntr", space, b"XYZ ", b"\0" * 12, b"acsp", b"APPL", 0, b"none",
                         b"none", b"\0" * 8, 0, _s15(D50), b"test", b"\0" * 16, b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + bodies

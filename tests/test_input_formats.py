"""Photographs as real buckets hold them, through the jobs: a WebP, an AVIF, a
Display P3 JPEG and a transparent PNG compress and decompress, and the
console script says nothing a user need not read.

The model is an untrained `high_res` sandwich (its baseline exactly), so a
file decoded to the same pixels as another makes the same bottleneck byte
for byte: the WebP (lossless) as the PNG of its pixels, the AVIF as the PNG
of Pillow's own decoding of it, and the Display P3 JPEG as the PNG of
LittleCMS's conversion of it to sRGB (`ImageCms.profileToProfile`): coded the
same, it comes back the same, within a level.
"""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipelines import compress, decompress
from tests import icc_profiles, photos
from tests.sandwich_exports import export_sandwich

MODEL_ID = "hr-formats"
FLAGS = ["--tile=96", "--halo=32", "--qstep=4", "--direct_running_mode=in_memory",
         "--direct_num_workers=1"]
P3 = icc_profiles.matrix_profile("Display P3", icc_profiles.DISPLAY_P3)
SWATCH = 32  # swatch side: two 4:2:0 MCUs, so each holds a flat 16 x 16 block
SWATCHES = np.array([[230, 40, 30], [40, 200, 60], [30, 60, 220], [240, 200, 40],
                     [200, 120, 90], [90, 160, 210], [170, 60, 150], [60, 180, 170]], np.uint8)


def _model() -> str:
    return export_sandwich("high_res", model_id=MODEL_ID)


def _save(image: Image.Image, path, fmt: str, **options) -> None:
    image.save(path, fmt, **options)


def _p3_photo() -> np.ndarray:
    """A row of flat swatches over a strip of photograph, as P3 values."""
    photo = photos.load("motorcycle_left.png")[300:332, :SWATCH * len(SWATCHES)]
    swatches = np.repeat(np.repeat(SWATCHES[None], SWATCH, axis=0), SWATCH, axis=1)
    return np.concatenate([swatches, photo])


def _swatch_means(pixels: np.ndarray) -> np.ndarray:
    """Each swatch's mean colour over its flat middle (away from its edges)."""
    inner = slice(SWATCH // 4, SWATCH - SWATCH // 4)
    return np.array([pixels[inner, i * SWATCH:(i + 1) * SWATCH][:, inner].reshape(-1, 3).mean(0)
                     for i in range(len(SWATCHES))])


def _in_srgb_by_littlecms(p3: Image.Image) -> Image.Image:
    return ImageCms.profileToProfile(p3, ImageCms.ImageCmsProfile(io.BytesIO(P3)),
                                     ImageCms.createProfile("sRGB"), outputMode="RGB")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    photo = Image.fromarray(photos.load("motorcycle_left.png")[200:328, 300:492])
    _save(photo, root / "photo.png", "PNG")
    _save(photo, root / "photo.webp", "WEBP", lossless=True)
    _save(photo, root / "photo.avif", "AVIF", quality=85)
    _save(Image.open(root / "photo.avif").convert("RGB"), root / "avif_as_pillow_decodes_it.png",
          "PNG")
    _save(Image.fromarray(_p3_photo()), root / "p3.jpg", "JPEG", quality=98, subsampling=0,
          icc_profile=P3)
    _save(_in_srgb_by_littlecms(Image.open(root / "p3.jpg").convert("RGB")),
          root / "p3_in_srgb_by_littlecms.png", "PNG")
    transparent = photo.copy()
    transparent.putalpha(Image.linear_gradient("L").resize(photo.size))
    _save(transparent, root / "alpha.png", "PNG")
    return root


@pytest.fixture(scope="module")
def jobs_run(corpus, tmp_path_factory):
    bits, restored = tmp_path_factory.mktemp("bits"), tmp_path_factory.mktemp("restored")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        counts = compress.run([f"--input={corpus}/*", f"--output={bits}",
                               f"--model={_model()}", *FLAGS])
        decompress.run([f"--input={bits}", f"--output={restored}", f"--model={_model()}",
                        *FLAGS[:2], *FLAGS[3:]])
    manifest = {os.path.basename(r["source"]): r for r in map(
        json.loads, (bits / "manifest.jsonl").read_text().splitlines())}
    return bits, restored, counts, printed.getvalue(), manifest


def test_every_format_is_coded_and_transparency_is_counted(jobs_run, corpus):
    bits, _, counts, printed, manifest = jobs_run
    assert (counts["inputs"], counts["written"], counts["dead_letters"]) == (7, 7, 0)
    assert (bits / "dead_letters.jsonl").read_text() == ""
    assert counts["alpha_dropped"] == 1
    assert "1 of them had transparency, dropped" in printed
    assert {name: r["alpha_dropped"] for name, r in manifest.items()} == {
        name: name == "alpha.png" for name in os.listdir(corpus)}


def _scan(path) -> bytes:
    """A bottleneck's coded picture: all of the file after its header, which
    differs between sources in their stamp (size and mtime)."""
    data = path.read_bytes()
    return data[data.index(b"\xff\xdb"):]  # from the first quantisation table on


def test_webp_and_avif_are_coded_as_the_pixels_they_hold(jobs_run):
    bits, manifest = jobs_run[0], jobs_run[4]
    assert _scan(bits / "photo.webp.jpg") == _scan(bits / "photo.png.jpg")
    assert _scan(bits / "photo.avif.jpg") == _scan(bits / "avif_as_pillow_decodes_it.png.jpg")
    assert _scan(bits / "photo.avif.jpg") != _scan(bits / "photo.png.jpg")  # AVIF is lossy
    assert manifest["photo.webp"]["bytes"] == manifest["photo.png"]["bytes"]


def test_display_p3_comes_back_in_srgb_within_a_level(jobs_run, corpus):
    bits, restored = jobs_run[0], jobs_run[1]
    assert _scan(bits / "p3.jpg.jpg") == _scan(bits / "p3_in_srgb_by_littlecms.png.jpg")
    p3 = np.asarray(Image.open(restored / "p3.jpg.png").convert("RGB")).astype(int)
    srgb = np.asarray(Image.open(restored / "p3_in_srgb_by_littlecms.png").convert("RGB"))
    assert np.abs(p3 - srgb).max() <= 1
    # The test can fail: the P3 values coded as if sRGB come back far off.
    stored = np.asarray(Image.open(corpus / "p3.jpg").convert("RGB"))
    assert np.abs(_swatch_means(p3) - _swatch_means(stored)).max() > 10

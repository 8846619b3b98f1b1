"""MS-SSIM and Butteraugli on a real photograph coded by the real JPEG
encoder, checked against TensorFlow and libjxl's `butteraugli_main` called
directly on the same files."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sandwich import perceptual
from sandwich.jpeg import real_roundtrip
from sandwich.samples import SAMPLES_DIR

FINE, COARSE = 6, 48  # flat JPEG steps: about 2.5 and 0.5 bpp on coffee


@pytest.fixture(scope="module")
def coffee():
    with Image.open(SAMPLES_DIR / "coffee.png") as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def coded(coffee, tmp_path_factory):
    """The source and its JPEG at each step, decoded, written as PNG files
    and read back: the files the direct calls see."""
    directory = tmp_path_factory.mktemp("coded")
    fine, coarse = (real_roundtrip(coffee[None], step)[0][0] for step in (FINE, COARSE))
    paths = {}
    for name, image in (("source", coffee), ("fine", fine), ("coarse", coarse)):
        paths[name] = str(directory / f"{name}.png")
        Image.fromarray(image).save(paths[name])
    return paths


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _butteraugli_main(reference: str, distorted: str) -> tuple[float, float]:
    """What the binary prints: the largest distance, then '3-norm: <value>'."""
    out = subprocess.run(["butteraugli_main", reference, distorted, "--pnorm", "3"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[1].startswith("3-norm: ")
    return float(out[0]), float(out[1].removeprefix("3-norm: "))


def test_identical_images_are_perfect(coffee):
    assert perceptual.ms_ssim(coffee, coffee) == pytest.approx(1.0, abs=1e-6)
    assert perceptual.butteraugli(coffee, coffee) == (0.0, 0.0)


def test_a_coarser_jpeg_scores_worse_on_both(coded):
    source, fine, coarse = (_read(coded[k]) for k in ("source", "fine", "coarse"))
    assert perceptual.ms_ssim(source, coarse) < perceptual.ms_ssim(source, fine) < 1.0
    fine_max, fine_norm = perceptual.butteraugli(source, fine)
    coarse_max, coarse_norm = perceptual.butteraugli(source, coarse)
    assert 0 < fine_max < coarse_max and 0 < fine_norm < coarse_norm


def test_ms_ssim_is_tensorflows_on_the_same_files(coded):
    """The direct call on the uint8 files as TensorFlow decodes them."""
    def read(path):
        return tf.io.decode_png(tf.io.read_file(path), channels=3)

    for name in ("fine", "coarse"):
        direct = float(tf.image.ssim_multiscale(read(coded["source"]), read(coded[name]), 255))
        ours = perceptual.ms_ssim(_read(coded["source"]), _read(coded[name]))
        assert ours == direct


def test_butteraugli_is_butteraugli_main_on_the_same_files(coded):
    for name in ("fine", "coarse"):
        direct = _butteraugli_main(coded["source"], coded[name])
        assert perceptual.butteraugli(_read(coded["source"]), _read(coded[name])) == direct


def test_a_ten_bit_pair_is_read_at_sixteen_bits(coded):
    """A 10-bit copy of the photo (values x4) measures like the 8-bit files
    (libjxl 0.7 read the 16-bit PNG of `encode_png16` with its sBIT chunk as
    nonsense: 363 for these pixels), and a difference below the 8-bit step
    is seen."""
    source, coarse = (_read(coded[k]).astype(np.uint16) * 4 for k in ("source", "coarse"))
    eight_bit = _butteraugli_main(coded["source"], coded["coarse"])
    ten_bit = perceptual.butteraugli(source, coarse, bit_depth=10)
    assert ten_bit == pytest.approx(eight_bit, rel=0.02)
    assert perceptual.butteraugli(source, source + 1, bit_depth=10)[1] > 0
    assert perceptual.ms_ssim(source, coarse, bit_depth=10) == pytest.approx(
        perceptual.ms_ssim(_read(coded["source"]), _read(coded["coarse"])), abs=1e-3)


def test_ms_ssim_refuses_an_image_below_five_scales(coffee):
    """TensorFlow's own limit: 161 pixels pass, 160 fail, and so does the module."""
    side = perceptual.MS_SSIM_MIN_SIDE
    assert side == 161
    small, just = coffee[:side - 1], coffee[:side]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.image.ssim_multiscale(small, small // 2, 255)
    assert float(tf.image.ssim_multiscale(just, just // 2, 255)) < 1
    with pytest.raises(ValueError, match="at least 161 pixels"):
        perceptual.ms_ssim(small, small // 2)
    assert perceptual.ms_ssim(just, just // 2) == float(
        tf.image.ssim_multiscale(just, just // 2, 255))


def test_butteraugli_refuses_an_image_it_would_call_perfect(coffee, tmp_path):
    """Below 8 pixels a side libjxl reports 0 for any pair."""
    tiny, half = coffee[:7, :64], coffee[:7, :64] // 2
    for name, image in (("a.png", tiny), ("b.png", half)):
        Image.fromarray(image).save(tmp_path / name)
    assert _butteraugli_main(str(tmp_path / "a.png"), str(tmp_path / "b.png")) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        perceptual.butteraugli(tiny, half)


def test_ms_ssim_db_is_the_literatures():
    assert perceptual.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert perceptual.ms_ssim_db(0.999) == pytest.approx(30.0)
    assert perceptual.ms_ssim_db(1.0) == float("inf")


def test_without_the_binary_the_error_names_the_package(coffee, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    why = perceptual.available()
    assert why is not None and "libjxl-devtools" in why
    with pytest.raises(FileNotFoundError, match="libjxl-devtools"):
        perceptual.butteraugli(coffee, coffee)


def test_the_binary_is_here():
    """The other tests need it; a machine without it says so here first."""
    assert perceptual.available() is None, perceptual.available()
    assert os.access(shutil.which("butteraugli_main"), os.X_OK)

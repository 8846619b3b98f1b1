"""The precision the processors run at (`codec.precision`).

bfloat16 is TensorFlow's rewrite of every function a process instantiates,
so the chain at each precision runs in a process of its own, here on a
shipped model and a bundled photo; the choice between precisions is a rule
over the CPU's flags and the specs' records, tested on both.
"""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from codec import exported, precision, shipped
from sandwich import metrics
from sandwich.samples import SAMPLES_DIR

MODEL = "hr-x1-r2"
PHOTO = os.path.join(SAMPLES_DIR, "coffee.png")
CHAIN = """
import sys, numpy as np, codec
from codec import bottleneck_format
model = codec.load(sys.argv[1], precision=sys.argv[2])
pixels = model.decompress(model.compress(sys.argv[3], qstep=model.specs[sys.argv[1]].qstep))
np.save(sys.argv[4], pixels)
"""


def _spec(**precisions):
    spec = exported.read_spec(shipped.export_dirs(MODEL)[0])
    return dataclasses.replace(spec, precisions={
        at: {"psnr_change_db": change} for at, change in precisions.items()})


def _cpuinfo(tmp_path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
    return str(path)


def test_bfloat16_runs_where_the_cpu_has_its_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert precision.cpu_runs_bfloat16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert precision.cpu_runs_bfloat16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not precision.cpu_runs_bfloat16(_cpuinfo(tmp_path, "avx512f avx512_vnni"))
    assert not precision.cpu_runs_bfloat16(str(tmp_path / "absent"))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not precision.cpu_runs_bfloat16(_cpuinfo(tmp_path, "avx512_bf16"))


def test_auto_takes_bfloat16_only_where_every_model_lost_little_and_the_cpu_runs_it(monkeypatch):
    # This process already runs float32 (conftest); the rule is for a fresh one.
    monkeypatch.setattr(precision, "_in_use", None)
    yes, no = (lambda: True), (lambda: False)
    close, far = _spec(bfloat16=-0.01), _spec(bfloat16=-0.2)
    assert precision.choose("auto", [close], cpu_runs=yes) == "bfloat16"
    assert precision.choose("auto", [close, far], cpu_runs=yes) == "float32"
    assert precision.choose("auto", [close, _spec()], cpu_runs=yes) == "float32"
    assert precision.choose("auto", [close], cpu_runs=no) == "float32"
    assert precision.choose("float32", [close], cpu_runs=yes) == "float32"
    assert precision.choose("bfloat16", [far], cpu_runs=yes) == "bfloat16"
    with pytest.raises(ValueError, match="AVX512_BF16"):
        precision.choose("bfloat16", [close], cpu_runs=no)
    with pytest.raises(ValueError, match="unknown precision"):
        precision.choose("fp8", [close], cpu_runs=yes)


def test_a_process_keeps_the_precision_its_first_model_set():
    assert precision.in_use() == "float32"
    # `auto` follows the process, whatever the specs record.
    assert precision.choose("auto", [_spec(bfloat16=0.0)], cpu_runs=lambda: True) == "float32"
    with pytest.raises(RuntimeError, match="already runs its models at float32"):
        precision.use("bfloat16")
    assert precision.in_use() == "float32"


def test_the_shipped_models_record_what_bfloat16_costs_them(monkeypatch):
    monkeypatch.setattr(precision, "_in_use", None)  # The rule of a fresh process.
    for model_dir in shipped.export_dirs(shipped.EVERY_MODEL):
        spec = exported.read_spec(model_dir)
        if spec.bit_depth > precision.BFLOAT16_BITS:
            assert "bfloat16" not in spec.precisions
            assert precision.choose("auto", [spec], cpu_runs=lambda: True) == "float32"
            continue
        record = spec.precisions["bfloat16"]
        assert precision.choose("auto", [spec], cpu_runs=lambda: True) == "bfloat16"
        assert precision.loss_db(spec, "bfloat16") <= precision.MAX_LOSS_DB, spec.model_id
        assert record["photos"] and not set(record["photos"]) & set(spec.release["held_out"])
        assert record["command"].startswith("python benchmarks/inference_precision.py")


@pytest.mark.skipif(not precision.cpu_runs_bfloat16(),
                    reason="this CPU has no bfloat16 instructions (AVX512_BF16 or AMX)")
def test_bfloat16_reconstructs_within_the_bound_of_float32(tmp_path):
    outputs = {}
    for at in ("float32", "bfloat16"):
        outputs[at] = str(tmp_path / f"{at}.npy")
        subprocess.run([sys.executable, "-c", CHAIN, MODEL, at, PHOTO, outputs[at]], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    from sandwich.image_io import decode_image

    with open(PHOTO, "rb") as f:
        source = decode_image(f.read()).pixels
    f32, bf16 = (np.load(outputs[at]) for at in ("float32", "bfloat16"))
    assert not np.array_equal(f32, bf16), "the rewrite did not run: bfloat16 equals float32"
    psnr = {at: float(metrics.psnr(x[None], source[None])[0])
            for at, x in (("float32", f32), ("bfloat16", bf16))}
    assert abs(psnr["bfloat16"] - psnr["float32"]) <= precision.MAX_LOSS_DB, psnr

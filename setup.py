"""Packaging for the sandwiched-compression system.

Kept plain on purpose: the same file is Beam's `--setup_file` on Dataflow
workers, where it is built into an sdist and installed next to the job, and
the install step of both containers in `docker/`. What it installs is what
the jobs and the trainer import; tools only one person at a desk needs go in
extras. Ranges are the ones tested on Python 3.11; widen them only after a run.
"""
import pathlib
import re

import setuptools

# One home for the version (sandwich.__version__), read without importing.
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (pathlib.Path(__file__).parent / "sandwich" / "__init__.py").read_text())[1]
TENSORFLOW = ">=2.21,<2.22"

REQUIRED = [
    f"tensorflow{TENSORFLOW}",
    "keras>=3.12,<3.16",
    # [gcp]: gs:// paths and the Dataflow runner. Exactly the Beam of the
    # Dataflow image (docker/dataflow.Dockerfile's base): a job's Beam must
    # be its workers' (tests/test_containers.py).
    "apache-beam[gcp]==2.77.0",
    "google-crc32c>=1.5,<2",
    # 11.3: the first wheels with libavif, which AVIF sources need (sandwich.image_io).
    "Pillow>=11.3,<13",
    "tifffile>=2025.1,<2027",
    "numpy>=1.26,<3",
    "matplotlib>=3.8,<4",
    # Non-negative least squares for the rate model's fit (tested: 1.17.1).
    "scipy>=1.14,<1.18",
    # The evaluator's jpegli row: the JPEG encoder users switch to for free.
    "pyjpegli>=0.3,<0.4",
]

EXTRAS = {
    # `sandwich-submit` only. (apache-beam[gcp] pulls these in as well, so the
    # extra says who needs them rather than saving workers an install.)
    "submit": ["google-cloud-aiplatform>=1.165,<2", "google-auth>=2.40,<3"],
    # `tensorboard --logdir JOB_DIR/logs`.
    "tensorboard": ["tensorboard>=2.21,<2.22"],
    # The GPU training image (docker/trainer.Dockerfile): CUDA and cuDNN wheels.
    "cuda": [f"tensorflow[and-cuda]{TENSORFLOW}"],
    # `sandwich-eval --alternatives avif jxl`: AVIF and JPEG XL for context.
    "compare": ["imagecodecs>=2026.1,<2027"],
    # `benchmarks/inference_runtime.py`: the CPU runtimes the processors are
    # measured on against TensorFlow (tested: 2.3.0, 1.32.0, 1.17.0 with onnx 1.23.2).
    "runtimes": ["ai-edge-litert>=2.3,<2.4", "onnxruntime>=1.32,<1.33", "tf2onnx>=1.17,<1.18",
                 "onnx>=1.23,<1.24"],
    # `python -m codec.web_export`: the post-processor as ONNX for the browser
    # (web/, onnxruntime-web), checked on onnxruntime against TensorFlow
    # (tested: tf2onnx 1.17.0, onnx 1.23.2, onnxruntime 1.32.0 with TensorFlow 2.21).
    "web": ["tf2onnx>=1.17,<1.18", "onnx>=1.23,<1.24", "onnxruntime>=1.32,<1.33"],
    # `benchmarks/hdr_corpus.py`: real 16-bit photographs from OpenEXR's samples.
    "hdr": ["OpenEXR==3.5.3"],
}
EXTRAS["test"] = [
    "pytest>=8,<10",
    # Reads the datasets back as TFDS does (the jobs write its layout themselves).
    "tensorflow-datasets>=4.9.10,<4.10",
    "gcp-storage-emulator>=2024.8",
    "google-cloud-storage>=3.0,<4",
    "scikit-image>=0.25,<0.27",
    "ruff>=0.17,<0.18",
    "hypothesis>=6.100,<7",  # tested with 6.170
    # Drives Debian's headless Chromium (chromium-driver) in the page tests.
    "selenium>=4.51,<4.52",
    *EXTRAS["submit"],
    *EXTRAS["web"],
    *EXTRAS["compare"],
]

setuptools.setup(
    name="sandwich-compression",
    version=VERSION,
    description="Sandwiched compression: neural pre/post-processors around a standard JPEG codec",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["sandwich*", "codec*", "pipelines*", "trainer*"]),
    # codec/models/<model_id>/: the shipped models' export dirs (codec.shipped),
    # which the jobs load by name on Dataflow's workers as well.
    package_data={"sandwich": ["data/*.json", "data/samples/*.png"],
                  "codec": ["models/**/*"]},
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "sandwich-demo=sandwich.demo:main",
            "sandwich-dataset=pipelines.make_dataset:main",
            "sandwich-compress=pipelines.compress:main",
            "sandwich-decompress=pipelines.decompress:main",
            "sandwich-eval=pipelines.evaluate:main",
            "sandwich-train=trainer.task:main",
            "sandwich-submit=trainer.submit:main",
        ],
    },
)

"""Packaging for the sandwiched-compression system.

Kept plain on purpose: the same file is Beam's `--setup_file` on Dataflow
workers, where it is built into an sdist and installed next to the job.
"""
import setuptools

REQUIRED = [
    # Ranges are the ones tested on Python 3.11; widen them only after a run.
    "tensorflow>=2.21,<2.22",
    "apache-beam[gcp]>=2.77,<2.78",
    "tensorflow-datasets>=4.9.10,<4.10",
    "google-cloud-storage>=3.0,<4",
    "tfx-bsl>=1.21,<1.22",
    "google-cloud-aiplatform>=1.165,<2",
    "Pillow>=11,<13",
    "tifffile>=2025.1",
    "numpy>=1.26,<3",
    "matplotlib>=3.8,<4",
]

TEST = [
    "pytest>=8,<10",
    "gcp-storage-emulator>=2024.8",
    "scikit-image>=0.25,<0.27",
    "hypothesis>=6.100,<7",  # tested with 6.170
]

setuptools.setup(
    name="sandwich-compression",
    version="0.1.0",
    description="Sandwiched compression: neural pre/post-processors around a standard JPEG codec",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["sandwich*", "pipelines*", "trainer*"]),
    package_data={"sandwich": ["data/*.json", "data/samples/*.png"]},
    install_requires=REQUIRED,
    extras_require={"test": TEST},
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

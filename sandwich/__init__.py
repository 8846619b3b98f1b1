"""Sandwiched compression: a standard codec between two neural networks.

The library shared by the dataset pipelines, the trainer and the batch
compression jobs: the differentiable JPEG proxy and the real codec
(`sandwich.jpeg`), rate models, networks, the sandwich model, the scenarios
and their baselines, and the metrics. It imports nothing from `pipelines` or
`trainer`.
"""
__version__ = "0.1.0"

"""Each method's file of a photo and what its reader makes of it: the
sandwich's deployed path (`sandwich_files`) and an alternative codec's,
on a deeper source's 8-bit ceiling (`EightBitCeiling`, `alternative_files`).

`pipelines.evaluate` measures these files and `pipelines.report` shows
them side by side, so that both code a photo the same way.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from codec import bottleneck_format, exported
from sandwich import alternatives
from sandwich.image_io import DEFAULT_MAX_PIXELS


def sandwich_files(model: exported.ExportedSandwich, pixels: np.ndarray,
                   source_bit_depth: int, qsteps, source_stamp: str = "", *,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[tuple[bytes, np.ndarray]]:
    """(bottleneck file, reconstruction) per qstep of the deployed path: the
    very file `compress` writes (given the source's stamp) and the very
    reconstruction `decompress` (with `max_pixels`) makes of it.

    The pre-processor runs once, unless it reads the step.
    """
    height, width = pixels.shape[:2]
    bottleneck_at = model.bottleneck_at(pixels)
    for qstep in qsteps:
        header = bottleneck_format.Header.of(model.spec, qstep, height, width, source_bit_depth,
                                             source_stamp)
        data = bottleneck_format.encode(bottleneck_at(qstep), header, model.spec.tables_at(qstep))
        _, decoded = bottleneck_format.decode(data, max_pixels=max_pixels)
        yield data, model.postprocess(decoded, (height, width), qstep)


class EightBitCeiling:
    """A deeper source's 8-bit ceiling, the path of the `high_bit_depth`
    baseline: the source rounded down to 8 bits for an 8-bit codec (`rgb`),
    and the codec's output scaled back to the middle of each step (`back`)."""

    def __init__(self, bit_depth: int):
        from sandwich import scenarios

        self._scenario = scenarios.Scenario("high_bit_depth", bit_depth, 1)

    def rgb(self, source: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        from sandwich import scenarios

        return scenarios.codec_input(self._scenario.to_bottleneck(
            tf.cast(source[None], tf.float32)))[0].numpy()

    def back(self, rgb8: np.ndarray, shape) -> np.ndarray:
        return self._scenario.to_source(
            self._scenario.from_bottleneck(rgb8[None], shape[:2]))[0].numpy()


def alternative_files(name: str, pixels: np.ndarray, bit_depth: int,
                      qualities) -> Iterator[tuple[bytes, np.ndarray]]:
    """(file, decoded in the source's units) per quality of an alternative
    codec; a deeper source is coded at its 8-bit ceiling (`EightBitCeiling`),
    rounded down once for all qualities."""
    ceiling = EightBitCeiling(bit_depth) if bit_depth > 8 else None
    rgb = pixels if ceiling is None else ceiling.rgb(pixels)
    for level in qualities:
        data, decoded = alternatives.code(name, rgb, level)
        yield data, np.asarray(decoded if ceiling is None else ceiling.back(decoded, pixels.shape))

"""Running a processor over an image of any size in tiles, with bounded memory.

A convolutional processor needs memory in proportion to the pixels it sees
(tens of float channels per pixel), so a 50-megapixel photograph cannot go
through it in one piece. We cut the image into square tiles, run each with a
margin of context (`halo`) on every side, keep only the tile's own core and
stitch the cores. Where the halo covers the network's receptive field the
result is the untiled one exactly; a smaller halo trades seams for speed
(`pipelines` measures the seams, see the benchmark).

The tiles are laid out on the *bottleneck* grid, which is `factor` times
coarser than the source for `high_res`: a bottleneck core `[a, b)` covers the
source rows `[a*factor, b*factor)`, so the same layout serves both the
pre-processor (source -> bottleneck) and the post-processor (bottleneck ->
source) and every tile starts on a multiple of `factor` (and of the tile
size), keeping the resampling phase and the U-Net's pooling grid aligned with
the untiled image.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Span:
    """One tile along an axis, on the coarse grid: the core `[start, stop)`
    it contributes and the context `[context_start, context_stop)` it is run on."""

    start: int
    stop: int
    context_start: int
    context_stop: int


def spans(length: int, tile: int, halo: int) -> list[Span]:
    """Cores of `tile` samples covering `[0, length)`, each with up to `halo`
    samples of context either side (clipped at the ends)."""
    if tile < 1 or halo < 0:
        raise ValueError(f"tile must be positive and halo non-negative, got {tile}, {halo}")
    return [Span(start, min(start + tile, length), max(0, start - halo),
                 min(length, start + tile + halo))
            for start in range(0, length, tile)]


def _fine(start: int, stop: int, factor: int, limit: int) -> tuple[int, int]:
    """The source-grid range a coarse range covers, clipped to the source."""
    return start * factor, min(stop * factor, limit)


def check_layout(tile: int, halo: int, factor: int) -> None:
    """Tile and halo are given in source pixels and must fall on the coarse grid."""
    if tile < factor or tile % factor or halo % factor:
        raise ValueError(f"tile ({tile}) and halo ({halo}) must be multiples of the "
                         f"factor ({factor}), tile at least one factor")


def downscale_tiled(fn: Callable[[np.ndarray], np.ndarray], source: np.ndarray, *,
                    factor: int, tile: int, halo: int) -> np.ndarray:
    """`fn(source)` for `fn` mapping `[h, w, c]` to `[ceil(h/f), ceil(w/f), c']`
    (the pre-processor), computed tile by tile. `tile`/`halo` in source pixels."""
    check_layout(tile, halo, factor)
    height, width = source.shape[:2]
    rows = spans(math.ceil(height / factor), tile // factor, halo // factor)
    cols = spans(math.ceil(width / factor), tile // factor, halo // factor)
    out = None
    for r in rows:
        for c in cols:
            y0, y1 = _fine(r.context_start, r.context_stop, factor, height)
            x0, x1 = _fine(c.context_start, c.context_stop, factor, width)
            result = np.asarray(fn(source[y0:y1, x0:x1]))
            if out is None:
                out = np.empty((rows[-1].stop, cols[-1].stop, result.shape[-1]), result.dtype)
            out[r.start:r.stop, c.start:c.stop] = result[
                r.start - r.context_start:r.stop - r.context_start,
                c.start - c.context_start:c.stop - c.context_start]
    return out


def upscale_tiled(fn: Callable[[np.ndarray, tuple[int, int]], np.ndarray], coarse: np.ndarray,
                  size: tuple[int, int], *, factor: int, tile: int, halo: int) -> np.ndarray:
    """`fn(coarse, size)` for `fn` mapping `[h', w', c]` to `[*size, c']` (the
    post-processor, `size` at most `factor` times the input), tile by tile.

    `coarse` must be exactly the bottleneck of a `size` source (`ceil(size /
    factor)`): a larger `size` would leave pixels that no tile covers, and
    those would be whatever memory the output was allocated in.
    """
    check_layout(tile, halo, factor)
    height, width = size
    if coarse.shape[:2] != (math.ceil(height / factor), math.ceil(width / factor)):
        raise ValueError(f"a {coarse.shape[0]}x{coarse.shape[1]} bottleneck at factor {factor} "
                         f"is not that of a {height}x{width} image")
    rows = spans(coarse.shape[0], tile // factor, halo // factor)
    cols = spans(coarse.shape[1], tile // factor, halo // factor)
    out = None
    for r in rows:
        for c in cols:
            y0, y1 = _fine(r.context_start, r.context_stop, factor, height)
            x0, x1 = _fine(c.context_start, c.context_stop, factor, width)
            result = np.asarray(fn(coarse[r.context_start:r.context_stop,
                                          c.context_start:c.context_stop], (y1 - y0, x1 - x0)))
            if out is None:
                out = np.empty((height, width, result.shape[-1]), result.dtype)
            top, bottom = _fine(r.start, r.stop, factor, height)
            left, right = _fine(c.start, c.stop, factor, width)
            out[top:bottom, left:right] = result[top - y0:bottom - y0, left - x0:right - x0]
    return out

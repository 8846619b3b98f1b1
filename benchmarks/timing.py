"""What the benchmarks time with: the fastest of several calls, and large
images of photo content."""
import time

import numpy as np


def fastest(repeats: int, fn, *args) -> float:
    """Seconds of the fastest of `repeats` calls `fn(*args)`, after a first
    that pays what a call pays once (functions instantiated, buffers sized)."""
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def mirrored(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """`pixels` mirrored out to `height` x `width`: a large image of photo
    content, with no seam a network would treat differently from a photo's."""
    tile = np.concatenate([pixels, pixels[::-1]], 0)
    tile = np.concatenate([tile, tile[:, ::-1]], 1)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])

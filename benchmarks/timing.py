"""What the benchmarks time with: the fastest of several calls, a worker in
a fresh process, and large images of photo content."""
import json
import os
import subprocess
import sys
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


def fresh_worker(script: str, kind: str, argv: list[str]) -> dict:
    """The JSON object the last line of `script --worker kind ARGV` prints,
    run in a fresh interpreter (imports and loads paid as a job's worker
    pays them), TensorFlow's start-up logging off."""
    done = subprocess.run([sys.executable, script, "--worker", kind, *argv], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def mirrored(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """`pixels` mirrored out to `height` x `width`: a large image of photo
    content, with no seam a network would treat differently from a photo's."""
    tile = np.concatenate([pixels, pixels[::-1]], 0)
    tile = np.concatenate([tile, tile[:, ::-1]], 1)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])

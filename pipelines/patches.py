"""Which split a source belongs to, and where its patches are cut.

Everything here is a pure function of the source's *relative* path (its path
below the input glob's fixed directory, `pipelines.paths`) and the seed, never of the runner or
of the order files arrive in. So a rerun, a run with more workers, or a run
over a copy of the corpus in `gs://` gives the same splits and patches.
"""
from __future__ import annotations

import hashlib

import numpy as np

from pipelines.dead_letters import Rejected

SPLITS = ("train", "eval")
PATCH_MODES = ("random", "grid")


def _hash_fraction(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def split_of(key: str, eval_fraction: float) -> str:
    """`eval` for about `eval_fraction` of sources, decided by the path alone.

    Whole sources go to one split, so no photograph is seen in training and
    evaluation; the seed is left out so that the evaluation set stays the same
    when patches are re-drawn with another seed.
    """
    return "eval" if _hash_fraction(key) < eval_fraction else "train"


def example_key(seed: int, key: str, index: int) -> str:
    """A hash that orders examples pseudo-randomly across sources in a shard."""
    return hashlib.sha256(f"{seed}/{key}/{index}".encode()).hexdigest()


def crop_origins(height: int, width: int, patch_size: int, count: int, mode: str,
                 seed: int, key: str) -> list[tuple[int, int]]:
    """Top-left corners of the patches of one source.

    `random`: `count` uniformly placed crops (they may overlap). `grid`: up to
    `count` of the non-overlapping tiles of a grid centred on the image. The
    generator is seeded by (seed, source path), so each source's patches are
    reproducible on their own.
    """
    rng = np.random.default_rng([seed, int(_hash_fraction(key) * 2**63)])
    if mode == "random":
        ys = rng.integers(0, height - patch_size + 1, size=count)
        xs = rng.integers(0, width - patch_size + 1, size=count)
        return [(int(y), int(x)) for y, x in zip(ys, xs)]
    rows, cols = height // patch_size, width // patch_size
    top, left = (height - rows * patch_size) // 2, (width - cols * patch_size) // 2
    tiles = [(top + r * patch_size, left + c * patch_size)
             for r in range(rows) for c in range(cols)]
    if count < len(tiles):
        tiles = [tiles[i] for i in sorted(rng.choice(len(tiles), count, replace=False))]
    return tiles


def check_size(height: int, width: int, patch_size: int) -> None:
    if height < patch_size or width < patch_size:
        raise Rejected(f"too small: {width}x{height} is smaller than a "
                       f"{patch_size}x{patch_size} patch")

"""The models that ship inside the package, so that a user compresses without training first.

`codec/models/<model_id>/` are export dirs as `trainer.export` writes
them, trained by one command (`make models`, docs/models.md) on public
photographs; each spec's `release` records the corpus and its licence, the
commit and command that trained it, and its measured BD figures against
plain JPEG and jpegli on photos it never saw.

Where a flag or `codec.load` takes an export dir, it also takes:
- `shipped`: the default set for 8-bit photos, every shipped model of bit
  depth 8 that no newer release replaces and whose file looks right in any
  viewer (`DEFAULT_SET`, `looks_wrong_as_viewed`); with a target, each
  image gets the best of them, of their identities and of plain JPEG;
- `shipped-psnr`: the same with the factor-1 models whose bottleneck only
  this system's decoder shows right (trained for PSNR alone): more PSNR
  where every file is decompressed here, a garbled picture where a
  browser opens it (`PSNR_SET`);
- `shipped-all`: every shipped model, whatever its bit depth: what a
  decoder needs to read any file the shipped models wrote (`EVERY_MODEL`);
- a shipped model's id (`hr-x1-r1`): that model alone.

A model id names one set of weights for good: a retrained model ships
under a new id (the `-rN` suffix), so a file written today decodes with
the weights that wrote it. A model a newer one replaces stays shipped for
that, its release marked `superseded_by` the new id
(`benchmarks/release_models.py --supersede OLD=NEW`): it decodes its files
(`shipped-all`) but no longer codes new ones (`shipped`), and ships without
its pre-processor (`codec.exported.can_code`), which would only grow the
package.
"""
from __future__ import annotations

import functools
import os

from sandwich.specs import MODEL_SPEC_FILE, ModelSpec

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
DEFAULT_SET = "shipped"
PSNR_SET = "shipped-psnr"
EVERY_MODEL = "shipped-all"
# How much worse than plain JPEG of its size a factor-1 bottleneck may look
# without the post-processor (its release's BD-rate at equal Butteraugli
# 3-norm, %) and stay in the default set. The perceptual models, trained
# with a view term, measure +1 to +9%; a PSNR-only one shares no Butteraugli
# range with plain JPEG at all (undefined), being ~7 dB below it as viewed.
VIEW_LIMIT_PERCENT = 20.0


@functools.cache
def _specs() -> dict[str, ModelSpec]:
    """Shipped model id -> its spec."""
    specs = {}
    if os.path.isdir(MODELS_DIR):
        for name in sorted(os.listdir(MODELS_DIR)):
            path = os.path.join(MODELS_DIR, name, MODEL_SPEC_FILE)
            if os.path.exists(path):
                with open(path) as f:
                    specs[name] = ModelSpec.from_json(f.read())
    return specs


def model_ids() -> list[str]:
    """The ids of the shipped models (each its directory's name)."""
    return list(_specs())


def superseded_by(model_id: str) -> str | None:
    """The id of the release that replaced a shipped model, or None."""
    return _specs()[model_id].release.get("superseded_by")


def looks_right_as_viewed(bd_rate_butteraugli: float | None) -> bool:
    """Whether a bottleneck as a viewer shows it, measured against plain
    JPEG (BD-rate at equal Butteraugli, %; None: beyond comparison), is
    within `VIEW_LIMIT_PERCENT`."""
    return bd_rate_butteraugli is not None and bd_rate_butteraugli <= VIEW_LIMIT_PERCENT


def looks_wrong_as_viewed(spec: ModelSpec) -> bool:
    """Whether the model's release measured its bottleneck, as a viewer shows
    it without the post-processor, not `looks_right_as_viewed` on any
    held-out kind (a model without that measurement is not judged)."""
    return any(not looks_right_as_viewed(rows["view"]["jpeg"].get("bd_rate_butteraugli"))
               for rows in spec.release.get("held_out_bd", {}).values()
               if "jpeg" in rows.get("view", {}))


def names() -> list[str]:
    """Every name `export_dirs` takes."""
    return [DEFAULT_SET, PSNR_SET, EVERY_MODEL, *model_ids()]


def is_name(entry: str) -> bool:
    return entry in names()


def export_dirs(name: str) -> tuple[str, ...]:
    """The export dirs `name` (one of `names()`) stands for; a `ValueError`
    if the package ships none (a checkout before `make models`)."""
    specs = _specs()
    if name in (DEFAULT_SET, PSNR_SET):
        ids = [model_id for model_id, spec in specs.items()
               if spec.bit_depth == 8 and not superseded_by(model_id)
               and (name == PSNR_SET or not looks_wrong_as_viewed(spec))]
    elif name == EVERY_MODEL:
        ids = list(specs)
    else:
        ids = [name] if name in specs else []
    if not ids:
        raise ValueError(f"no shipped model is {name!r}: the package ships "
                         f"{model_ids() or 'none (run `make models`)'}")
    return tuple(os.path.join(MODELS_DIR, model_id) for model_id in ids)

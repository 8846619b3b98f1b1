"""One image in, one file out, and back: the deployed codec without Beam.

    import codec

    model = codec.load()                         # the shipped set, or an export dir
    data = model.compress("photo.png", target_bpp=0.5)
    pixels = model.decompress(data)              # [h, w, 3] uint8 (uint16 above 8 bits)

`compress` returns a plain JPEG that any viewer opens, its sandwich header
in a comment segment (`codec.bottleneck_format`). With a target it writes
the best file among the set's models, their identities, plain JPEG and
jpegli (`codec.rate_control`), so it is never worse than a plain JPEG or
a jpegli JPEG of its size by the metric it ranks by. `decompress` reads the
header and runs the post-processor of the model it names (an identity file
needs none; a plain-JPEG or jpegli file is shown as it is). The Beam jobs
run these same steps, one per stage: `read_source`, `ExportedSandwich.preprocess` and `code_at` (or
`rate_control.choose`) to compress, `reconstruct` to decompress.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from codec import bottleneck_format, exported, rate_control, shipped
from codec import precision as precision_
from codec.bottleneck_format import Header
from codec.exported import POSTPROCESSOR, PREPROCESSOR, ExportedSandwich
from sandwich.errors import Rejected
from sandwich.image_io import DEFAULT_MAX_PIXELS, decode_image, fit_bit_depth
from sandwich.jpeg import tables


@dataclasses.dataclass(frozen=True)
class Source:
    """An image to code: its pixels fitted to the models' bit depth, the bit
    depth it came with, and, in a job, a digest of its file's size and
    mtime (`stamp`, which the header keeps so that a rerun redoes a changed
    source) and its `path`; `alpha_dropped`: its file's transparency was
    dropped in decoding (`sandwich.image_io`)."""

    pixels: np.ndarray
    source_bit_depth: int
    stamp: str = ""
    path: str = ""
    alpha_dropped: bool = False


def check_jpeg_size(height: int, width: int, factor: int) -> None:
    """Refuses a source whose bottleneck (1/factor of its sides) no JPEG can
    hold; a long side is tiled through the processors, but the codec has a limit."""
    side = -(-max(height, width) // factor)
    if side > bottleneck_format.MAX_JPEG_SIDE:
        raise Rejected(f"too large for JPEG: {width}x{height} at factor {factor} needs a "
                       f"{side}-pixel side, above the format's {bottleneck_format.MAX_JPEG_SIDE}")


def read_source(data: bytes, bit_depth: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                factor: int = 1, stamp: str = "", path: str = "") -> Source:
    """An image file's bytes (PNG, TIFF, JPEG, WebP, AVIF) -> `Source` at
    `bit_depth`, in sRGB; a bad file is `Rejected` with the reason. Deeper
    sources are rounded down as the baseline does; shallower ones are
    refused, since padding bits would claim a precision never there."""
    image = decode_image(data, max_pixels=max_pixels)
    check_jpeg_size(*image.pixels.shape[:2], factor)
    return Source(fit_bit_depth(image.pixels, image.bit_depth, bit_depth), image.bit_depth,
                  stamp, path, image.alpha_dropped)


def code_at(spec, qstep: float, bottleneck: np.ndarray, source: Source) -> rate_control.Coded:
    """The file of a model's `bottleneck` of `source` coded at `qstep`
    (no target, so nothing is measured: `psnr` 0)."""
    header = Header.of(spec, qstep, *source.pixels.shape[:2], source.source_bit_depth,
                       source.stamp)
    try:
        data = bottleneck_format.encode(bottleneck, header, spec.tables_at(qstep))
    except ValueError as e:  # Pillow's size limits, among others
        raise Rejected(f"JPEG encoder: {e}") from e
    return rate_control.Coded(header, data, psnr=0.0)


def reconstruct(models: Mapping[str, ExportedSandwich], header: Header,
                pixels: np.ndarray) -> np.ndarray:
    """What a file decodes to, from its header and its decoded JPEG: a plain
    JPEG (a fallback, Pillow's or jpegli's) as it is, an identity file by
    its scenario's fixed steps, a model's file by that model's post-processor (`models` by id; the header was
    checked against them, `Header.check_model`)."""
    if header.is_fallback:
        return pixels
    if header.is_identity:
        return bottleneck_format.identity_reconstruction(header, pixels)
    return models[header.model_id].postprocess(pixels, (header.height, header.width),
                                               header.qstep)


class Codec:
    """A loaded model set that compresses one image at a time and
    decompresses the files it (or a job of the same set) wrote."""

    def __init__(self, models: Sequence[ExportedSandwich]):
        self.models = {model.spec.model_id: model for model in models}

    @classmethod
    def load(cls, model: str = shipped.DEFAULT_SET, *, processors: Sequence[str] = (
            PREPROCESSOR, POSTPROCESSOR), tile: int | None = None,
             halo: int | None = None, precision: str = precision_.FLOAT32,
             eager: bool = False) -> "Codec":
        """`model`: an export dir, a comma-separated list or a directory of
        them, or a shipped name (`codec.shipped`: by default the set for
        8-bit photos). A decoder only needs the post-processors.
        `precision`: float32, or `auto` or bfloat16 (`codec.precision`),
        which the jobs use; not the default here, since it rewrites every
        TensorFlow function this process runs afterwards, the caller's too.
        Each model's processors load when it first runs, or all now if
        `eager` (a server that wants no first-call delay)."""
        dirs = exported.export_dirs(model)
        # Refuses a set of two ids alike before loading either.
        specs = exported.read_specs(dirs)
        tile, halo = exported.tile_layout([exported.layout_grid(s) for s in specs.values()], tile, halo)
        precision = precision_.choose(precision, specs.values())
        return cls([ExportedSandwich.load(d, processors, tile=tile, halo=halo,
                                          precision=precision, eager=eager) for d in dirs])

    @property
    def specs(self) -> dict:
        """The set's `ModelSpec`s by model id."""
        return {model_id: model.spec for model_id, model in self.models.items()}

    @property
    def bit_depth(self) -> int:
        """The bit depth of the sources the set codes (a `SpecError` for a
        set of several, such as `shipped-all`: it decodes, but to code, name
        the models of one depth)."""
        return exported.source_bit_depth(self.specs.values())

    @property
    def _least_factor(self) -> int:
        return min(spec.factor for spec in self.specs.values())

    def source(self, image) -> Source:
        """`image` as a `Source`: a path, a file's bytes, or pixels `[h, w, 3]`
        (uint8: 8 bits; uint16: `self.bit_depth` bits)."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"pixels are [h, w, 3] uint8 or uint16, not {image.dtype.name} "
                                 f"{list(image.shape)}")
            depth = 8 if image.dtype == np.uint8 else self.bit_depth
            if depth == 8 and image.dtype == np.uint16 or image.max(initial=0) >> depth:
                raise ValueError(f"uint16 pixels hold {self.bit_depth}-bit samples for this "
                                 f"set; give 8-bit photos as uint8" if depth == 8 else
                                 f"pixels above {2 ** depth - 1} in a {depth}-bit source")
            check_jpeg_size(*image.shape[:2], self._least_factor)
            return Source(fit_bit_depth(image, depth, self.bit_depth), depth)
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                image = f.read()
        return read_source(bytes(image), self.bit_depth, factor=self._least_factor)

    def encode(self, image, *, target_bpp: float | None = None,
               target_psnr: float | None = None, qstep: float | None = None,
               rank_by: str = rate_control.PSNR,
               model_id: str | None = None) -> rate_control.Coded:
        """`compress`, with what was measured: the file, its header, its PSNR
        (and the ranked metric) after decoding, its margins over the other
        kinds of file."""
        source = image if isinstance(image, Source) else self.source(image)
        given = [v is not None for v in (target_bpp, target_psnr, qstep)]
        if sum(given) != 1:
            raise ValueError("give one of target_bpp, target_psnr and qstep")
        if qstep is not None:
            tables.check_codable_step(qstep)
            model = self._one(model_id)
            return code_at(model.spec, qstep, model.preprocess(source.pixels, qstep), source)
        kind, value = ((rate_control.BPP, target_bpp) if target_bpp is not None
                       else (rate_control.PSNR, target_psnr))
        target = rate_control.Target(kind, value, rank_by)
        models = [self._one(model_id)] if model_id else list(self.models.values())
        return rate_control.choose(models, source, target,
                                   fallback=exported.plain_jpeg_fits(m.spec for m in models))

    def compress(self, image, **kwargs) -> bytes:
        """A path, a file's bytes or pixels -> the sandwich JPEG's bytes:
        with `target_bpp=B` the best file (by `rank_by`: psnr, ms-ssim or
        butteraugli) within B bits per pixel, with `target_psnr=P` the
        smallest file that reaches P dB (after decoding), with `qstep=S` a
        model's file at that step (`model_id=` names it in a set)."""
        return self.encode(image, **kwargs).data

    def decompress(self, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """A sandwich JPEG's bytes -> pixels `[h, w, 3]` (uint8, or uint16
        holding the header's bit depth). A file of a model outside the set,
        or not a sandwich file at all, is a `BottleneckError` (a `Rejected`)."""
        header, pixels = bottleneck_format.decode(bytes(data), max_pixels=max_pixels)
        header.check_model(self.specs)
        return reconstruct(self.models, header, pixels)

    def _one(self, model_id: str | None) -> ExportedSandwich:
        if model_id is None and len(self.models) == 1:
            return next(iter(self.models.values()))
        if model_id not in self.models:
            raise ValueError(f"name the model to code at a fixed step (model_id=), one of "
                             f"{sorted(self.models)}" if model_id is None else
                             f"no model {model_id!r} in the set {sorted(self.models)}")
        return self.models[model_id]


def load(model: str = shipped.DEFAULT_SET, **kwargs) -> Codec:
    """`Codec.load`."""
    return Codec.load(model, **kwargs)


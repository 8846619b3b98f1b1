"""The scenarios: what the sandwich makes an 8-bit JPEG carry, and the baselines.

A scenario is the fixed, non-learned part of the sandwich on either side of
the codec:

- `high_bit_depth`: a d-bit source (d > 8, in a uint16 container) becomes an
  8-bit bottleneck by dividing by 2^(d-8) and flooring (dropping the low
  bits); the decoder multiplies back and adds half a step, the middle of the
  interval the dropped bits could have been in.
- `high_res`: the source is downsampled (antialiased bicubic) by an integer
  factor before the codec and the decoded bottleneck upsampled (Lanczos-3)
  back to the source's size.

- `gray`: an 8-bit colour source becomes a one-channel bottleneck, its
  luma (BT.601, JFIF's weights), coded as a grayscale JPEG; the decoder
  repeats the decoded luma in R, G and B. The baseline loses colour; the
  sandwich's pre-processor may hide colour in the luma's texture for its
  post-processor to restore (the networks stay RGB in and out: the
  pre-processor's RGB output is reduced to luma by the same step).

high_bit_depth and high_res compose (a 10-bit source at half resolution is
both), as do gray and high_res, which is why one class holds every step.
The baseline each sandwich must beat is the same path with no networks,
through the real codec; the sandwich uses exactly these functions around its
processors, so untrained it *is* the baseline.

The inner JPEG's quantisation tables are the scenario's too (`table_shape`):
`flat`, one step for every coefficient; `standard`, the shape of the
example tables of the JPEG standard (ITU-T T.81 Annex K), which most
encoders' quality setting scales: coarser at high frequencies and in
chroma, where the eye sees less; or `jpegli`, the shape of jpegli's tables,
tuned for Butteraugli: flatter, with chroma finer than luma at 4:2:0. Each
is swept by its scale (the geometric mean of its entries,
`sandwich.jpeg.tables.scale`), so a step of 16 codes flat at 16
everywhere, or standard with the same geometric mean (luma entries
2.7..33, chroma 4.6..27).

Units: sources and reconstructions are in source units (0 .. 2^d - 1), the
bottleneck in 0..255. Bits per pixel are counted per source pixel.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from sandwich import resample, specs
from sandwich.jpeg import checks, real_roundtrip, ste_round, tables
from sandwich.jpeg.color import RGB_TO_YCBCR
from sandwich.jpeg.ste import straight_through

DEFAULT_FACTOR = specs.DEFAULT_FACTOR
CODEC_BITS = 8
TABLE_SHAPES = specs.TABLE_SHAPES
# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in
# natural (row-major) order: what libjpeg writes at quality 50.
ANNEX_K_TABLES = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
     24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
     *[99] * 32]], np.float64)
# The tables jpegli writes at its quality 70 for YCbCr 4:2:0, in natural
# order: the same for every image; its highest quality with no entry clipped
# at 255. Its chroma table is finer than its luma one (Annex K's is far
# coarser) and both are flatter than Annex K's: what jpegli tunes for
# Butteraugli. Its shape moves with quality by about 7% (rms of the log
# entries, qualities 50-90). Read with `pyjpegli.encode(..., 70)` and
# Pillow's `quantization`; tests/test_scenarios.py checks them.
JPEGLI_TABLES = np.array([
    [7, 8, 14, 14, 20, 21, 23, 23, 8, 10, 14, 15, 20, 19, 24, 24,
     14, 14, 16, 18, 21, 23, 22, 25, 14, 15, 18, 20, 25, 27, 27, 27,
     20, 20, 21, 25, 27, 29, 33, 33, 21, 19, 23, 27, 29, 32, 30, 36,
     23, 24, 22, 27, 33, 30, 32, 32, 23, 24, 25, 27, 33, 36, 32, 26],
    [7, 6, 12, 11, 16, 15, 18, 19, 6, 9, 12, 11, 15, 13, 16, 17,
     12, 12, 13, 12, 14, 15, 16, 18, 11, 11, 12, 13, 16, 15, 17, 19,
     16, 15, 14, 16, 13, 19, 15, 18, 15, 13, 15, 15, 19, 16, 19, 28,
     18, 16, 16, 17, 15, 19, 30, 27, 19, 17, 18, 19, 18, 28, 27, 230]], np.float64)
_SHAPED_TABLES = {"standard": ANNEX_K_TABLES, "jpegli": JPEGLI_TABLES}


def table_shape(name: str) -> np.ndarray:
    """The tables of scale 1 of a `TABLE_SHAPES` name, float64 `[2, 64]`:
    all ones (`flat`), else the Annex K tables (`standard`) or jpegli's
    (`jpegli`) divided by their geometric mean (59.5 and 18.5)."""
    if name not in TABLE_SHAPES:
        raise ValueError(f"unknown table shape {name!r}; expected one of {TABLE_SHAPES}")
    if name == "flat":
        return np.ones([tables.TABLE_SLOTS, 64])
    return tables.rescaled(_SHAPED_TABLES[name], 1.0)


def ste_floor(x: tf.Tensor) -> tf.Tensor:
    """Floors forward, identity backward (straight-through)."""
    return straight_through(x, tf.floor(x))


def codec_input(bottleneck: tf.Tensor) -> tf.Tensor:
    """The uint8 image the real codec is given for a float bottleneck.

    Clips and rounds exactly as the proxy does before coding, so the real
    codec sees the pixels the proxy was trained on.
    """
    return tf.cast(ste_round(tf.clip_by_value(bottleneck, 0.0, 255.0)), tf.uint8)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A source format (`bit_depth`), a bottleneck resolution (`1/factor`),
    the inner JPEG's colour handling (`jpeg_mode`, YCbCr 4:2:0 unless
    asked otherwise; always `gray` for the gray scenario) and the shape of
    its quantisation tables (`table_shape`, flat unless asked otherwise).

    Build one with `make` or `from_spec`; the constructor validates.
    """

    name: str
    bit_depth: int
    factor: int
    jpeg_mode: tables.JpegMode = tables.DEFAULT_MODE
    table_shape: str = "flat"

    def __post_init__(self):
        specs._check_scenario(self.name, self.bit_depth, self.factor)
        specs.check_jpeg_mode(self.name, self.jpeg_mode.name)
        table_shape(self.table_shape)
        if self.table_shape != "flat" and self.jpeg_mode.color_mode == "planes":
            # Slot 1 would code G and B with the chroma table.
            raise ValueError(f"{self.table_shape} tables are shaped for luma and chroma; "
                             f"{self.jpeg_mode.name} codes RGB planes")

    def tables_at(self, qstep: float):
        """What the codec is given at the scale `qstep`: the step itself
        for flat tables, else the shape's tables of that scale (float64
        `[2, 64]`; the encoder rounds them into 1..255)."""
        if self.table_shape == "flat":
            return qstep
        return table_shape(self.table_shape) * float(qstep)

    @property
    def peak(self) -> float:
        """The source's largest value, 2^d - 1: PSNR is taken at this peak."""
        return float(2 ** self.bit_depth - 1)

    @property
    def dtype(self) -> tf.DType:
        """The source container: uint8 up to 8 bits, uint16 above."""
        return tf.as_dtype(specs.container_dtype(self.bit_depth))

    @property
    def _step(self) -> float:
        """Source units per bottleneck unit: 2^(d-8)."""
        return float(2 ** (self.bit_depth - CODEC_BITS))

    @property
    def channels(self) -> int:
        """The bottleneck's channels: 1 for gray, 3 for the others."""
        return self.jpeg_mode.channels

    def to_bottleneck(self, images: tf.Tensor) -> tf.Tensor:
        """Source units `[b, h, w, 3]` -> bottleneck `[b, h', w', channels]`
        in 0..255 (not yet rounded).

        Differentiable; the codec (proxy or `codec_input`) rounds and clips.
        """
        if self.channels == 1:
            # JFIF's Y: what a luma-only codec keeps of a colour source.
            images = tf.tensordot(images, tf.constant(RGB_TO_YCBCR[:1].T, images.dtype), 1)
        images = resample.downsample(images, self.factor)
        if self._step > 1:
            images = ste_floor(images / self._step)
        return images

    def from_bottleneck(self, decoded: tf.Tensor, size) -> tf.Tensor:
        """Decoded bottleneck -> source units `[b, *size, 3]`, `size =
        (height, width)`."""
        decoded = tf.cast(decoded, tf.float32)
        if self._step > 1:
            decoded = decoded * self._step + self._step / 2
        decoded = resample.upsample(decoded, self.factor, size)
        return tf.repeat(decoded, 3, axis=-1) if self.channels == 1 else decoded

    def to_source(self, images: tf.Tensor) -> tf.Tensor:
        """Rounds and clips source units into the source's container dtype."""
        return tf.cast(tf.floor(tf.clip_by_value(images, 0.0, self.peak) + 0.5), self.dtype)

    def check_source(self, source) -> None:
        """Refuses a source that is not `[b, h, w, 3]` of this scenario's
        container dtype, or (where values are known) exceeds 2^d - 1."""
        checks.check_images(source, channels=(3,), name="source")
        if tf.as_dtype(source.dtype) != self.dtype:
            raise ValueError(f"a {self.bit_depth}-bit source must be {self.dtype.name}, "
                             f"got {tf.as_dtype(source.dtype).name}")
        if isinstance(source, np.ndarray) or tf.executing_eagerly():
            largest = int(np.max(source))
            if largest > self.peak:
                raise ValueError(f"source value {largest} exceeds the {self.bit_depth}-bit "
                                 f"peak {int(self.peak)}")

    def baseline(self, source, qstep: float, **codec):
        """The scenario without networks, through the real codec.

        Args:
          source: `[b, h, w, 3]` in the container dtype (uint8 or uint16).
          qstep: the tables' scale (`tables_at`), or `[2, 64]` tables.
          codec: passed to `real_roundtrip` (e.g. `optimize`).

        Returns:
          `(reconstruction, bits)`: NumPy `[b, h, w, 3]` in the source dtype,
          and int64 `[b]` JPEG file sizes.
        """
        reconstruction, _, bits = self.baseline_coded(source, qstep, **codec)
        return reconstruction, bits

    def baseline_coded(self, source, qstep: float, **codec):
        """`baseline`, with the decoded bottleneck (uint8 `[b, h', w', 3]`,
        the file as a viewer shows it) between the reconstruction and the
        bits."""
        self.check_source(source)
        source = tf.convert_to_tensor(source)
        bottleneck = codec_input(self.to_bottleneck(tf.cast(source, tf.float32)))
        if np.ndim(qstep) == 0:
            qstep = self.tables_at(qstep)
        decoded, bits = real_roundtrip(bottleneck.numpy(), qstep, **self.jpeg_mode.kwargs(),
                                       **codec)
        reconstruction = self.from_bottleneck(decoded, tf.shape(source)[1:3])
        return self.to_source(reconstruction).numpy(), decoded, bits

    def slope(self, source, qstep: float, spread: float = 1.05) -> float:
        """The baseline's distortion-rate slope at `qstep`, measured with the
        real codec on `source`: how much distortion (squared error per value
        on the 0..255 scale, the sandwich loss's unit) one more bit per
        pixel buys, `-dD/dR` between the `probe_steps` around `qstep`.

        A rate weight equal to this slope prices bits the way the codec's own
        step does, so a trained sandwich keeps only the changes that beat
        turning the step.
        """
        points = []
        for q in probe_steps(qstep, spread):
            reconstruction, bits = self.baseline(source, q)
            error = (reconstruction.astype(np.float64) - source) * (255.0 / self.peak)
            points.append((np.mean(np.square(error)),
                           np.mean(bits) / (source.shape[1] * source.shape[2])))
        (d_fine, r_fine), (d_coarse, r_coarse) = points
        return float((d_coarse - d_fine) / max(r_fine - r_coarse, 1e-9))


def probe_steps(qstep: float, spread: float = 1.05) -> tuple[float, float]:
    """The two steps a slope at `qstep` is measured between: `qstep / spread`
    and `qstep * spread`, or where both round to one integer table entry
    (which would code the same file), the entries either side of it (at
    least 1)."""
    fine, coarse = qstep / spread, qstep * spread
    if np.floor(fine + 0.5) == np.floor(coarse + 0.5):
        entry = float(np.floor(qstep + 0.5))
        fine, coarse = max(entry - 1.0, 1.0), entry + 1.0
    return fine, coarse


def make(name: str, *, bit_depth: int | None = None, factor: int | None = None,
         jpeg_mode: str | tables.JpegMode | None = None,
         table_shape: str = "flat") -> Scenario:
    """A scenario by name; unless given, high_bit_depth is 10-bit and
    high_res 8-bit at factor 2, both through YCbCr 4:2:0 JPEG, and gray
    8-bit at factor 1 through grayscale JPEG, all with flat tables."""
    if name not in specs.SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {specs.SCENARIOS}")
    jpeg_mode = jpeg_mode or specs.default_jpeg_mode(name)
    if isinstance(jpeg_mode, str):
        jpeg_mode = tables.JpegMode.parse(jpeg_mode)
    return Scenario(name, specs.DEFAULT_BIT_DEPTH[name] if bit_depth is None else bit_depth,
                    DEFAULT_FACTOR[name] if factor is None else factor, jpeg_mode, table_shape)


def from_spec(spec, jpeg_mode: str | None = None, table_shape: str | None = None) -> Scenario:
    """The scenario a `ModelSpec` (or a `DatasetSpec`, with `jpeg_mode`,
    default the scenario's own, and `table_shape`, default flat) was made
    for."""
    mode = (getattr(spec, "jpeg_mode", None) or jpeg_mode
            or specs.default_jpeg_mode(spec.scenario))
    shape = getattr(spec, "table_shape", None) or table_shape or "flat"
    return Scenario(spec.scenario, spec.bit_depth, spec.factor, tables.JpegMode.parse(mode),
                    shape)

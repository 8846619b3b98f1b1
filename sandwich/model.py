"""The sandwich: a JPEG codec between a neural pre- and post-processor.

Guleryuz et al., "Sandwiched Compression: Repurposing Standard Codecs with
Neural Network Wrappers", arXiv 2402.05887.

    source -> preprocessor -> scenario (to 8 bits / down) -> JPEG
           -> scenario (back up) -> postprocessor -> reconstruction

Trained end to end through the differentiable JPEG proxy; deployed with the
real codec in the middle (`preprocess` -> any JPEG encoder/decoder ->
`postprocess`). The processors add residuals that start at zero and the
scenario's steps are the baseline's own, so an untrained sandwich through the
real codec reproduces the scenario's baseline bit for bit: training starts
from the baseline and only has to find the gain.

The loss, per image and averaged over the batch:

    D(reconstruction, source) + view_weight * D(decoded bottleneck, its reference)
      + gamma * bpp + penalty_weight * penalty

- D, the distortion, in squared error per value on the 0..255 scale
  (`(255 / peak)^2 * MSE`, so that gamma means the same for every bit
  depth), or its MS-SSIM counterpart in the same units (`distortion`):

      D = (1 - w) * MSE + w * MS_SSIM_TO_MSE * (1 - MS-SSIM)

  with w = 0 (`mse`), 1 (`ms-ssim`) or `ms_ssim_weight` (`mix`).
  `MS_SSIM_TO_MSE` is the ratio of the two at the baseline on the
  bundled photos (see its comment), so a step of D is worth as much
  rate whichever w is chosen, gamma keeps its scale, and a mix's w is
  the share of the distortion that is MS-SSIM's. MS-SSIM is taken on RGB
  at the source's peak, with as many of its five scales as the patch
  holds (`ms_ssim_scales`).
- the view term (`view_weight`, default 0): the same D between the
  proxy-decoded bottleneck, the JPEG file as any viewer shows it without
  the post-processor, and the baseline's own bottleneck before coding
  (`Scenario.to_bottleneck` of the source: the source itself at x1 and 8
  bits, its 8-bit floor for deeper sources, its antialiased downsample
  at factor > 1, which is what a viewer shows of a smaller file), at the
  bottleneck's peak, 255. Without it only the post-processed image is
  judged, and a pre-processor is free to make a file that looks wrong on
  its own.
- bpp: the rate model's bits per *source* pixel;
- penalty: the mean squared excursion of the bottleneck outside [0, 255],
  where the codec's clipping would otherwise cut the gradient.

The quantisation tables have the scenario's shape (`Scenario.table_shape`:
flat, JPEG's Annex K tables or jpegli's, scaled to the step) times the learned step;
what learns of them (`quantization`) multiplies that shape, so every
choice starts at the baseline's own tables.

A *rate-conditioned* sandwich (`qstep_range`) is one model for a range of
rates instead of one: each training batch is coded at a step drawn
log-uniformly from the range, the post-processor is told that step (the
decoder knows it: it is the file's own quantisation table), and the
distortion is weighted by `(q0 / q)^2` around the range's geometric centre
`q0`. A quantiser's distortion grows with the step squared, and so does the
slope of its distortion-rate curve: the weight makes every step of the
range count alike (unweighted, the coarsest batches would dominate the
gradients), and it is the same as weighting the rate by `gamma * (q / q0)^2`,
the Lagrangian that belongs to the step. The pre-processor may be told
the step too (`condition_preprocessor`): then it can treat each step
apart instead of compromising between them. Measured (5,000 steps, x1,
held-out photos, the rate model before it counted nonzeros), that kept the finest step above the baseline where the
step-independent one fell 0.3 dB below it, but lost 0.4-0.5 dB at the
coarse end: +0.29 dB BD-PSNR over the baseline against +0.45 dB. Told the
step only as a learned gain on its residual (`condition_preprocessor=
'gain'`), it lost too: +0.44 against +0.62 dB (5,000 steps, with the count).
So by default the pre-processor stays step-independent, and a rate search
runs it once per image and only re-encodes.
"""
from __future__ import annotations

import math
import typing

import keras
import numpy as np
import tensorflow as tf

from sandwich import metrics, networks, scenarios, specs
from sandwich.colour_carrier import ColourCarrier
from sandwich.jpeg import real_roundtrip, tables
from sandwich.model_options import PREPROCESSOR_CONDITIONING, QUANTIZATIONS
from sandwich.rate import proxy_roundtrip
from sandwich.scenarios import Scenario, codec_input

# The step is kept above this floor: a JPEG table entry is at least 1.
QSTEP_FLOOR = float(tables.BASELINE_MIN_STEP)
SCALARS = ("loss", "distortion", "bpp", "penalty", "psnr", "qstep")
# Logged where the loss has them: the batch's MS-SSIM (when D uses it) and
# the view term's D (when it is weighted).
OPTIONAL_SCALARS = ("ms_ssim", "view_distortion")
DISTORTIONS = specs.DISTORTIONS
# A mix's MS-SSIM share when none is given: MS-SSIM leads, squared error
# keeps colour and flat areas (which MS-SSIM's contrast terms barely see)
# from drifting. Provisional, to be set by measurement.
DEFAULT_MS_SSIM_WEIGHT = 0.8
# MS-SSIM's five scales, finest first (Wang, Simoncelli and Bovik 2003, as
# `tf.image.ssim_multiscale` weighs them), its Gaussian window, and the
# smallest image a coarsest scale may be (`ms_ssim_scales`).
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_FILTER_SIZE = 11
MS_SSIM_FILTER_SIGMA = 1.5
MS_SSIM_COARSEST = 8
# Squared error (0..255 scale) per unit of 1 - MS-SSIM, the factor that puts
# MS-SSIM in squared-error units: their ratio at the baseline, x1 with flat
# tables, on the 152 64x64 patches of the bundled photos other than coffee,
# is 1205, 1027 and 1016 at steps 12, 31 (the range's centre) and 80, so
# 1 - MS-SSIM grows with the step about as squared error does and the
# `(q0 / q)^2` weight of a rate-conditioned model evens it out alike. At x2
# it is 2021-1258, at 10 bits 2123-1158, with standard tables at x1
# 1649-1137 (they put their error where MS-SSIM sees less of it).
MS_SSIM_TO_MSE = 1000.0


class Forward(typing.NamedTuple):
    """One pass through the proxy: every image the loss and TensorBoard use.

    `source` and `reconstruction` are float source units, `bottleneck` the
    float pre-processed image in 0..255 before the codec rounds it,
    `decoded` the proxy's decoded bottleneck, `bits` float `[b]`, `qstep`
    the tables' scale the batch was coded at.
    """

    source: tf.Tensor
    bottleneck: tf.Tensor
    decoded: tf.Tensor
    reconstruction: tf.Tensor
    bits: tf.Tensor
    qstep: tf.Tensor


def _qstep_parameter(qstep: float) -> float:
    """The parameter `p` for which `QSTEP_FLOOR + exp(p)` is `qstep`."""
    if not qstep > QSTEP_FLOOR:
        raise ValueError(f"the initial qstep must exceed {QSTEP_FLOOR}, got {qstep}")
    return math.log(qstep - QSTEP_FLOOR)


def ms_ssim_scales(height: int, width: int) -> tuple[tuple[float, ...], int]:
    """MS-SSIM's power factors and window size for images of `height` x `width`.

    Each scale halves the image (rounding up, as `tf.image.ssim_multiscale`
    pads), and every scale needs the window inside it: the five scales of
    an 11-pixel window need 176 pixels, and training patches are 64. The
    rule: as many scales as keep the coarsest at least `MS_SSIM_COARSEST`
    (8) pixels, the first of the five power factors renormalised to the
    five's sum, the window cut to the coarsest scale's size (sigma stays 1.5); 176
    pixels and up get the standard five scales of 11. A 64-pixel patch
    gets 4 scales of an 8-pixel window. Measured on the bundled photos
    other than coffee (36 pairs: flat and standard JPEG tables at steps
    8-64, Gaussian blur, noise), the mean of 64x64 patches' MS-SSIM
    against the whole photo's 5-scale MS-SSIM: Pearson 0.998 (of log(1 -
    MS-SSIM)), Spearman 0.986; 3 scales of 11 (the rule with an 11-pixel
    minimum) 0.989 and 0.978, 2 scales 0.963, 1 (SSIM) 0.862: the fourth
    scale carries structure the whole photo's coarse scales see, and
    without it noise scores far worse than it does on the photo.
    """
    size, scales = min(height, width), 1
    while scales < len(MS_SSIM_POWER_FACTORS) and -(-size // 2) >= MS_SSIM_COARSEST:
        size, scales = -(-size // 2), scales + 1
    factors = MS_SSIM_POWER_FACTORS[:scales]
    total = sum(MS_SSIM_POWER_FACTORS)  # 1.0001, as published; TensorFlow's at five scales
    return tuple(f * total / sum(factors) for f in factors), min(MS_SSIM_FILTER_SIZE, size)


def _gaussian_window(size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """MS-SSIM's normalised Gaussian window of `size` taps (sigma
    `MS_SSIM_FILTER_SIGMA`) as the depthwise kernels of its two passes, rows
    `[size, 1, channels, 1]` and columns `[1, size, channels, 1]`."""
    taps = np.arange(size) - (size - 1) / 2.0
    window = np.exp(-0.5 * np.square(taps / MS_SSIM_FILTER_SIGMA))
    window = np.tile((window / window.sum()).astype(np.float32)[:, None, None, None],
                     [1, 1, channels, 1])
    return window, window.reshape(1, size, channels, 1)


def _downscale(x: tf.Tensor) -> tf.Tensor:
    """Halves `[n, h, w, c]` by 2x2 means, an odd edge first repeated
    (symmetric padding), as `tf.image.ssim_multiscale` does."""
    pad = [x.shape[1] % 2, x.shape[2] % 2]
    if any(pad):
        x = tf.pad(x, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def _clipped_power(x: tf.Tensor, power: float) -> tf.Tensor:
    """`relu(x) ** power`, with the derivative 0 (not NaN) where x <= 0."""
    positive = x > 0.0
    return tf.where(positive, tf.pow(tf.where(positive, x, 1.0), power), 0.0)


def ms_ssim(a: tf.Tensor, b: tf.Tensor, peak: float) -> tf.Tensor:
    """MS-SSIM `[n]` of float images `[n, h, w, c]` in 0..peak (the mean of
    the channels'), with the scales `ms_ssim_scales` gives their size.

    `tf.image.ssim_multiscale`'s definition (Wang et al.'s, k1 0.01, k2
    0.03, each scale's contrast term clipped at 0, equal to it within float
    rounding: tested), written out for two reasons. Its padding step is a
    `tf.cond`, and XLA compiles that by taking the images as compile-time
    constants: under `jit_compile` it recompiled the step for every batch
    (5 s a step with the tests' tiny networks, on CPU). And where a clipped
    term is raised to its power factor its gradient is NaN (an infinite
    derivative times the clip's zero). Here shapes are static, padding is
    decided in Python, the window is applied as two 1-D passes, and a
    clipped term's derivative is 0.
    """
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    factors, size = ms_ssim_scales(*a.shape[1:3])
    rows, columns = _gaussian_window(size, 4 * a.shape[-1])  # the four maps blurred at once
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2

    def blurred(x):
        x = tf.nn.depthwise_conv2d(x, rows, [1, 1, 1, 1], "VALID")
        return tf.nn.depthwise_conv2d(x, columns, [1, 1, 1, 1], "VALID")

    similarity = 1.0
    for scale, power in enumerate(factors):
        if scale:
            a, b = _downscale(a), _downscale(b)
        means = blurred(tf.concat([a, b, a * b, tf.square(a) + tf.square(b)], axis=-1))
        mean_a, mean_b, mean_ab, mean_squares = tf.split(means, 4, axis=-1)
        product = 2.0 * mean_a * mean_b
        contrast = ((2.0 * mean_ab - product + c2)
                    / (mean_squares - tf.square(mean_a) - tf.square(mean_b) + c2))
        if scale < len(factors) - 1:
            term = tf.reduce_mean(contrast, axis=[1, 2])
        else:
            luminance = (product + c1) / (tf.square(mean_a) + tf.square(mean_b) + c1)
            term = tf.reduce_mean(luminance * contrast, axis=[1, 2])
        similarity = similarity * _clipped_power(term, power)
    return tf.reduce_mean(similarity, axis=-1)


def distortion(a: tf.Tensor, b: tf.Tensor, peak: float,
               ms_ssim_weight: float) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The loss's D per image, `[n]`, of float images `[n, h, w, 3]` in source
    units (0..peak), and their MS-SSIM `[n]` (None where D does not use it):

        (1 - w) * (255 / peak)^2 * MSE + w * MS_SSIM_TO_MSE * (1 - MS-SSIM)
    """
    value, similarity = 0.0, None
    if ms_ssim_weight < 1.0:
        mse = tf.reduce_mean(tf.square((a - b) * (255.0 / peak)), axis=[1, 2, 3])
        value = (1.0 - ms_ssim_weight) * mse
    if ms_ssim_weight > 0.0:
        similarity = ms_ssim(a, b, peak)
        value = value + ms_ssim_weight * MS_SSIM_TO_MSE * (1.0 - similarity)
    return value, similarity


def check_distortion(kind: str, ms_ssim_weight: float | None = None) -> float:
    """The MS-SSIM share w of a distortion: 0 for `mse`, 1 for `ms-ssim`, the
    weight in [0, 1] (default `DEFAULT_MS_SSIM_WEIGHT`) for `mix`."""
    if kind not in DISTORTIONS:
        raise ValueError(f"distortion must be one of {DISTORTIONS}, got {kind!r}")
    implied = {"mse": 0.0, "ms-ssim": 1.0}.get(kind)
    if implied is not None:
        if ms_ssim_weight is not None and float(ms_ssim_weight) != implied:
            raise ValueError(f"an MS-SSIM weight is for distortion 'mix'; {kind!r} is "
                             f"{implied:g} MS-SSIM, got {ms_ssim_weight}")
        return implied
    weight = DEFAULT_MS_SSIM_WEIGHT if ms_ssim_weight is None else float(ms_ssim_weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"ms_ssim_weight must lie in [0, 1], got {weight}")
    return weight


class Sandwich(keras.Model):
    """Pre-processor, codec proxy and post-processor, with a trainable qstep.

    Args:
      scenario: what the codec carries (`sandwich.scenarios.make(...)`).
      size: a `sandwich.networks` preset name (`slim`, `paper`) or a
        `NetworkSize`, for each of the two processors.
      post_size: the post-processor's, where it differs from `size`.
      qstep: the initial scale of the quantisation tables (> 1): the step
        of flat tables, the geometric mean of standard ones.
      train_qstep: whether the step (or tables) learns, through the proxy.
      quantization: what learns, a key of `QUANTIZATIONS`: a multiplier
        of the scenario's table shape (`Scenario.table_shape`), one for
        all entries, one per slot or one per entry; every choice starts at
        the shape's tables of scale `qstep`, the baseline's.
      gamma: the rate's weight in the loss.
      distortion: the loss's D, a key of `DISTORTIONS` (module docstring).
      ms_ssim_weight: a `mix`'s MS-SSIM share w (default
        `DEFAULT_MS_SSIM_WEIGHT`); only `mix` takes one.
      view_weight: the weight of the decoded bottleneck's own D.
      carrier_gain: for the gray scenario, the colour carriers' initial
        gain (`sandwich.colour_carrier`; 0: the model is its baseline).
      penalty_weight: the bottleneck range penalty's weight.
      rate_model: the proxy's rate model, calibrated for the scenario's JPEG
        mode (default `LogRateModel.default(mode)`).
      qstep_range: `(low, high)` makes the sandwich rate-conditioned (see
        the module docstring); its nominal `qstep` is then the range's
        geometric centre, and `qstep` above is ignored.
      condition_preprocessor: how a rate-conditioned sandwich's
        pre-processor reads the step (a key of `PREPROCESSOR_CONDITIONING`;
        True means 'input', False 'off').
    """

    def __init__(self, scenario: Scenario, *, size="slim", post_size=None, qstep: float = 20.0,
                 train_qstep: bool = True, quantization: str = "flat", gamma: float = 50.0,
                 penalty_weight: float = 1.0, rate_model=None, qstep_range=None,
                 condition_preprocessor: bool | str = False, distortion: str = "mse",
                 ms_ssim_weight: float | None = None, view_weight: float = 0.0,
                 carrier_gain: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {sorted(QUANTIZATIONS)}, "
                             f"got {quantization!r}")
        self.qstep_range = specs.check_qstep_range(qstep_range)
        if self.qstep_range:
            qstep = math.sqrt(self.qstep_range[0] * self.qstep_range[1])
        self.scenario = scenario
        self.quantization = quantization
        self.gamma = float(gamma)
        self.penalty_weight = float(penalty_weight)
        self.distortion = distortion
        self.ms_ssim_weight = check_distortion(distortion, ms_ssim_weight)
        if not view_weight >= 0.0:
            raise ValueError(f"view_weight must be >= 0, got {view_weight}")
        self.view_weight = float(view_weight)
        # The scenario's tables of scale 1, which the learned step(s) multiply.
        self.unit_tables = tf.constant(scenarios.table_shape(scenario.table_shape), tf.float32)
        if rate_model is not None and rate_model.mode != scenario.jpeg_mode:
            raise ValueError(f"the rate model is calibrated for {rate_model.mode.name}, "
                             f"the scenario codes {scenario.jpeg_mode.name}")
        self.rate_model = rate_model
        conditioning = {False: "off", True: "input"}.get(condition_preprocessor,
                                                          condition_preprocessor)
        if conditioning not in PREPROCESSOR_CONDITIONING:
            raise ValueError(f"condition_preprocessor must be one of "
                             f"{sorted(PREPROCESSOR_CONDITIONING)}, got {condition_preprocessor!r}")
        self.preprocessor_conditioning = conditioning if self.conditioned else "off"
        self.preprocessor = networks.Processor(
            size, peak=scenario.peak, conditioned=self.preprocessor_conditioning == "input",
            level_gain=self.preprocessor_conditioning == "gain", name="preprocessor")
        self.postprocessor = networks.Processor(post_size or size, peak=scenario.peak,
                                                conditioned=self.conditioned, name="postprocessor")
        self.qstep_parameter = self.add_weight(
            shape=QUANTIZATIONS[quantization],
            initializer=keras.initializers.Constant(_qstep_parameter(qstep)),
            # A conditioned model's scale is set by its range: only a shape learns.
            trainable=train_qstep and not (self.conditioned and quantization == "flat"),
            name="qstep_parameter")
        # The gray scenario's colour path (`sandwich.colour_carrier`).
        self.carrier = (ColourCarrier(scenario.factor, carrier_gain, name="carrier")
                        if scenario.channels == 1 else None)
        # Convolution weights depend only on the channel count: create them all
        # now, so optimizers and distribution strategies see them before step 1.
        self.preprocessor(tf.zeros([1, 1, 1, 3]), self.preprocessor_level())
        self.postprocessor(tf.zeros([1, 1, 1, 3]), self.level(),
                           features=tf.zeros([1, 1, 1, 2]) if self.carrier else None)

    @property
    def conditioned(self) -> bool:
        return self.qstep_range is not None

    @property
    def preprocessor_conditioned(self) -> bool:
        """Whether the pre-processor reads the step (its output depends on it)."""
        return self.preprocessor_conditioning != "off"

    @property
    def qtables(self) -> tf.Tensor:
        """The positive quantisation tables `[2, 64]`: the scenario's tables of
        scale 1 (`unit_tables`) times `QSTEP_FLOOR + exp(parameter)`. (With
        standard tables the smallest entries of a fine step fall below 1;
        the codec and the proxy write them as 1.)

        Logarithmic, so that Adam, whose updates are about the learning rate
        in size, moves a step by a *relative* amount: with a linear (ELU)
        parameter, 1,200 steps at lr 1e-3 moved a step of 16 only to 15.5.
        """
        steps = QSTEP_FLOOR + tf.exp(tf.convert_to_tensor(self.qstep_parameter))
        return self.unit_tables * steps

    @property
    def qstep(self) -> tf.Tensor:
        """The tables' scale (`tables.scale`): the step itself while one
        step scales the shape (whose scale is 1)."""
        if self.quantization == "flat":
            return QSTEP_FLOOR + tf.exp(tf.reshape(self.qstep_parameter, []))
        return tf.exp(tf.reduce_mean(tf.math.log(self.qtables)))

    def tables_at(self, qstep=None) -> tf.Tensor:
        """The tables rescaled to the scale `qstep` (default: the model's own)."""
        if qstep is None:
            return self.qtables
        return self.qtables * (tf.cast(qstep, tf.float32) / self.qstep)

    def codec_tables(self, qstep=None):
        """What the real encoder is given at `qstep` (default: the model's
        own): while one step scales the shape, what the scenario's baseline
        is given (`Scenario.tables_at`: the step, or the shape's float64
        tables), so that an untrained model codes its baseline's file; else
        the tables (NumPy `[2, 64]`)."""
        if self.quantization == "flat":
            return self.scenario.tables_at(float(self.qstep if qstep is None else qstep))
        return self.tables_at(qstep).numpy()

    def level(self, qstep=None):
        """What a conditioned post-processor is told of `qstep` (default:
        the nominal one): its log position in the range, -1 at the low end,
        +1 at the high end, clipped there. None when unconditioned."""
        if not self.conditioned:
            return None
        low, high = self.qstep_range
        q = tf.cast(self.qstep if qstep is None else qstep, tf.float32)
        position = 2.0 * tf.math.log(q / low) / math.log(high / low) - 1.0
        return tf.clip_by_value(position, -1.0, 1.0)

    def preprocessor_level(self, qstep=None):
        """What the pre-processor is told of `qstep`: `level(qstep)` if it
        is conditioned, else None."""
        return self.level(qstep) if self.preprocessor_conditioned else None

    def drawn_qstep(self, source) -> tf.Tensor:
        """A training batch's step, log-uniform over the range.

        The seed is the batch's own pixel sum: reproducible, different from
        batch to batch, and free of random state that replicas, XLA or a
        resumed checkpoint would have to agree on.
        """
        low, high = self.qstep_range
        seed = tf.stack([tf.reduce_sum(tf.cast(source, tf.int64)), tf.constant(0, tf.int64)])
        u = tf.random.stateless_uniform([], seed=seed)
        return tf.exp(math.log(low) + u * math.log(high / low))

    def forward(self, source, qstep=None) -> Forward:
        """Runs the sandwich with the proxy codec on `[b, h, w, 3]` source
        values (static height and width, as the proxy needs), at the tables'
        scale `qstep` (default: the model's own)."""
        self.scenario.check_source(source)
        x = tf.cast(source, tf.float32)
        bottleneck = self._bottleneck(x, qstep)
        decoded, bits = proxy_roundtrip(bottleneck, self.tables_at(qstep),
                                        rate_model=self.rate_model,
                                        **self.scenario.jpeg_mode.kwargs())
        qstep = self.qstep if qstep is None else tf.cast(qstep, tf.float32)
        return Forward(x, bottleneck, decoded, self._reconstruction(decoded, x.shape[1:3], qstep),
                       bits, qstep)

    def _bottleneck(self, source, qstep=None) -> tf.Tensor:
        """The pre-processed source through the scenario's step (and the
        gray scenario's colour carriers), not yet rounded."""
        processed = self.preprocessor(source, self.preprocessor_level(qstep))
        bottleneck = self.scenario.to_bottleneck(processed)
        return bottleneck + self.carrier.modulate(processed) if self.carrier else bottleneck

    def _reconstruction(self, decoded, size, qstep=None) -> tf.Tensor:
        """The decoded bottleneck back through the scenario and the
        post-processor (told the gray scenario's demodulated colour), in
        float source units."""
        features = self.carrier.demodulate(decoded, size) if self.carrier else None
        return self.postprocessor(self.scenario.from_bottleneck(decoded, size), self.level(qstep),
                                  features=features)

    def view_reference(self, source) -> tf.Tensor:
        """What the view term compares the decoded bottleneck with: the
        baseline's bottleneck of float `source` before the codec rounds it
        (module docstring), in 0..255."""
        reference = self.scenario.to_bottleneck(tf.cast(source, tf.float32))
        return tf.stop_gradient(tf.clip_by_value(reference, 0.0, 255.0))

    def distortions(self, reconstruction, decoded, source) -> dict:
        """The loss's D of `reconstruction` and, if it is weighted, the view
        term's D of the decoded bottleneck `decoded` (`view_distortion`),
        per image `[n]`, and the reconstruction's MS-SSIM where D uses it;
        float images (source units, and 0..255)."""
        source = tf.cast(source, tf.float32)
        value, similarity = distortion(tf.cast(reconstruction, tf.float32), source,
                                       self.scenario.peak, self.ms_ssim_weight)
        out = {"distortion": value}
        if similarity is not None:
            out["ms_ssim"] = similarity
        if self.view_weight:
            out["view_distortion"], _ = distortion(tf.cast(decoded, tf.float32),
                                                   self.view_reference(source), 255.0,
                                                   self.ms_ssim_weight)
        return out

    def real_distortion(self, source, real: dict) -> float:
        """The loss's distortion terms, `D + view_weight * D(view)`, of a
        `real_forward` output on `source`: the mean over the images."""
        d = self.distortions(real["reconstruction"], real["decoded"], source)
        total = d["distortion"] + self.view_weight * d.get("view_distortion", 0.0)
        return float(tf.reduce_mean(total))

    def loss_terms(self, forward: Forward) -> dict:
        """The loss and its terms (batch means), and images in [0, 1] for
        TensorBoard (`images`: source, bottleneck, decoded, reconstruction)."""
        peak = self.scenario.peak
        source, reconstruction = forward.source, forward.reconstruction
        parts = {name: tf.reduce_mean(value) for name, value in
                 self.distortions(reconstruction, forward.decoded, source).items()}
        distorted = parts["distortion"] + self.view_weight * parts.get("view_distortion", 0.0)
        pixels = float(source.shape[1] * source.shape[2])
        bpp = tf.reduce_mean(forward.bits) / pixels
        b = forward.bottleneck
        penalty = tf.reduce_mean(tf.square(tf.nn.relu(b - 255.0)) + tf.square(tf.nn.relu(-b)))
        psnr = tf.reduce_mean(metrics.psnr_tf(reconstruction, source, self.scenario.bit_depth))
        # 1 at the model's own step (always, when unconditioned); a weight,
        # not something a trained step may learn to grow.
        weight = tf.stop_gradient(tf.square(self.qstep / forward.qstep))
        return {
            "loss": weight * distorted + self.gamma * bpp + self.penalty_weight * penalty,
            **parts,
            "bpp": bpp,
            "penalty": penalty,
            "psnr": psnr,
            "qstep": self.qstep,
            "images": {
                "source": source / peak,
                "bottleneck": tf.clip_by_value(b / 255.0, 0.0, 1.0),
                "decoded": forward.decoded / 255.0,
                "reconstruction": tf.clip_by_value(reconstruction / peak, 0.0, 1.0),
            },
        }

    def call(self, source, training=None):
        # Only a conditioned model's training batches differ: a drawn step.
        qstep = self.drawn_qstep(source) if training and self.conditioned else None
        return self.loss_terms(self.forward(source, qstep))

    def preprocess(self, source, qstep=None) -> tf.Tensor:
        """Source `[b, h, w, 3]` (any size) -> the uint8 bottleneck to
        JPEG-encode at the tables' scale `qstep` (default: the model's own;
        only a conditioned pre-processor reads it)."""
        self.scenario.check_source(source)
        return codec_input(self._bottleneck(source, qstep))

    def postprocess(self, decoded, size, qstep=None) -> tf.Tensor:
        """Decoded uint8 bottleneck -> reconstruction `[b, *size, 3]` in the
        source dtype; `size` is the source's (height, width), `qstep` the
        tables' scale it was coded at (default: the model's own; only a
        conditioned model reads it)."""
        return self.scenario.to_source(self._reconstruction(decoded, size, qstep))

    def real_forward(self, source, qstep=None, **codec) -> dict:
        """The deployed path on NumPy/eager inputs: preprocess, the real JPEG
        codec at the tables' scale `qstep` (default: the model's own),
        postprocess.

        Returns NumPy `bottleneck` and `decoded` (uint8), `reconstruction`
        (source dtype), `bits` (int64 `[b]`), and `bpp` and `psnr` (`[b]`).
        """
        source = tf.convert_to_tensor(source)
        bottleneck = self.preprocess(source, qstep).numpy()
        decoded, bits = real_roundtrip(bottleneck, self.codec_tables(qstep),
                                       **self.scenario.jpeg_mode.kwargs(), **codec)
        reconstruction = self.postprocess(decoded, source.shape[1:3], qstep).numpy()
        return {
            "bottleneck": bottleneck,
            "decoded": decoded,
            "reconstruction": reconstruction,
            "bits": bits,
            "bpp": metrics.bits_per_pixel(bits, *source.shape[1:3]),
            "psnr": metrics.psnr(reconstruction, source.numpy(), self.scenario.bit_depth),
        }

    def serving_functions(self) -> dict:
        """`preprocess` and `postprocess` as `tf.function`s on one image of any
        size, with explicit signatures, for `tf.saved_model.save`:

        - `preprocess(source [h, w, 3] source dtype, qstep float32 [])
          -> uint8 [h', w', 3]`
        - `postprocess(decoded uint8 [h', w', c], size int32 [2],
          qstep float32 []) -> [h, w, 3]`

        c is the bottleneck's channels (`Scenario.channels`: 1 for gray).

        `qstep` is the scale of the tables the bottleneck is (was) coded
        with; only a conditioned processor reads it.
        """
        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], self.scenario.dtype),
                                      tf.TensorSpec([], tf.float32)])
        def preprocess(source, qstep):
            return self.preprocess(source[None], qstep)[0]

        @tf.function(input_signature=[tf.TensorSpec([None, None, self.scenario.channels],
                                                    tf.uint8),
                                      tf.TensorSpec([2], tf.int32),
                                      tf.TensorSpec([], tf.float32)])
        def postprocess(decoded, size, qstep):
            return self.postprocess(decoded[None], size, qstep)[0]

        return {"preprocess": preprocess, "postprocess": postprocess}


def make_train_step(model: Sandwich, optimizer, *, jit_compile: bool = True,
                    xla_scope: str = "step", strategy=None, loss_fn=None):
    """One optimisation step as a `tf.function`, for any `tf.distribute` strategy.

    The wrapper runs a per-replica step on every replica and averages the
    scalars. Create the model, the optimizer and this step inside
    `strategy.scope()` (default: the current strategy).

    Args:
      jit_compile: compile with XLA (TPUs require it).
      xla_scope: what XLA compiles. 'step': the whole replica step, gradient
        all-reduce and update included (one device, TPUs, GPUs). 'gradients':
        the forward and backward pass only, traced once per replica device,
        with the all-reduce and update outside XLA. That is what CPUs need:
        XLA has no CPU collectives (so neither multi-worker nor multi-device
        steps compile whole), and a whole step traced for one replica of a
        MirroredStrategy reads another device's variables when reused
        (keras-team/keras#19005).
      loss_fn: `(model, source) -> dict` with at least `SCALARS`; defaults to
        `model(source, training=True)`. Lets a caller swap the rate, e.g. for
        a host-callback baseline that cannot be compiled.

    Returns:
      `train_step(source) -> {name: scalar}` for `SCALARS` and those of
      `OPTIONAL_SCALARS` the loss has.
    """
    if xla_scope not in ("step", "gradients"):
        raise ValueError(f"xla_scope must be 'step' or 'gradients', got {xla_scope!r}")
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = loss_fn or (lambda m, source: m(source, training=True))
    variables = model.trainable_variables
    if not optimizer.built:
        # Under a strategy the slots must exist before the first step traces.
        with strategy.scope():
            optimizer.build(variables)

    def gradients(source, device: str):
        del device  # Only keys the trace: one compiled function per replica device.
        with tf.GradientTape() as tape:
            terms = loss_fn(model, source)
            # Replicas' gradients are summed: scale so that they average.
            loss = terms["loss"] / strategy.num_replicas_in_sync
        return tape.gradient(loss, variables), {name: terms[name] for name in
                                                (*SCALARS, *OPTIONAL_SCALARS) if name in terms}

    def replica_step(source):
        grads, scalars = gradients(source, source.device)
        optimizer.apply_gradients(zip(grads, variables))
        return scalars

    if xla_scope == "gradients":
        gradients = tf.function(gradients, jit_compile=jit_compile)
    else:
        replica_step = tf.function(replica_step, jit_compile=jit_compile)

    @tf.function
    def train_step(source):
        scalars = strategy.run(replica_step, args=(source,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in scalars.items()}

    return train_step

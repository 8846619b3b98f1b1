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

    distortion + gamma * bpp + penalty_weight * penalty

- distortion: the mean squared error per source value, measured after
  scaling the source to 0..255 (`(255 / peak)^2 * MSE`), so that gamma means
  the same for every bit depth;
- bpp: the rate model's bits per *source* pixel;
- penalty: the mean squared excursion of the bottleneck outside [0, 255],
  where the codec's clipping would otherwise cut the gradient.

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
import tensorflow as tf

from sandwich import metrics, networks
from sandwich.jpeg import proxy_roundtrip, real_roundtrip, tables
from sandwich.scenarios import Scenario, codec_input

# How a rate-conditioned sandwich's pre-processor reads the step: not at all
# (a rate search pre-processes once per image), as an input plane of both
# its branches, or as a learned per-channel gain on its residual.
PREPROCESSOR_CONDITIONING = ("off", "input", "gain")
# The step is kept above this floor: a JPEG table entry is at least 1.
QSTEP_FLOOR = 1.0
SCALARS = ("loss", "distortion", "bpp", "penalty", "psnr", "qstep")
# What of the quantisation tables learns: one step for all entries, one
# step per table slot (luma, chroma), or every entry of both 8x8 tables
# (written into the file's DQT, so any decoder still reads it).
QUANTIZATIONS = {"flat": [], "steps": [tables.TABLE_SLOTS, 1],
                 "tables": [tables.TABLE_SLOTS, 64]}


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


def check_qstep_range(qstep_range) -> tuple[float, float] | None:
    """`(low, high)` as floats with `QSTEP_FLOOR < low < high`, or None."""
    if qstep_range is None:
        return None
    low, high = (float(q) for q in qstep_range)
    if not QSTEP_FLOOR < low < high:
        raise ValueError(f"a qstep range needs {QSTEP_FLOOR} < low < high, got {qstep_range}")
    return low, high


def _qstep_parameter(qstep: float) -> float:
    """The parameter `p` for which `QSTEP_FLOOR + exp(p)` is `qstep`."""
    if not qstep > QSTEP_FLOOR:
        raise ValueError(f"the initial qstep must exceed {QSTEP_FLOOR}, got {qstep}")
    return math.log(qstep - QSTEP_FLOOR)


class Sandwich(keras.Model):
    """Pre-processor, codec proxy and post-processor, with a trainable qstep.

    Args:
      scenario: what the codec carries (`sandwich.scenarios.make(...)`).
      size: a `sandwich.networks` preset name (`slim`, `paper`) or a
        `NetworkSize`, for each of the two processors.
      post_size: the post-processor's, where it differs from `size`.
      qstep: the initial flat JPEG quantisation step (> 1).
      train_qstep: whether the step (or tables) learns, through the proxy.
      quantization: what learns, a key of `QUANTIZATIONS`; every choice
        starts flat at `qstep`.
      gamma: the rate's weight in the loss.
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
                 condition_preprocessor: bool | str = False, **kwargs):
        super().__init__(**kwargs)
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {sorted(QUANTIZATIONS)}, "
                             f"got {quantization!r}")
        self.qstep_range = check_qstep_range(qstep_range)
        if self.qstep_range:
            qstep = math.sqrt(self.qstep_range[0] * self.qstep_range[1])
        self.scenario = scenario
        self.quantization = quantization
        self.gamma = float(gamma)
        self.penalty_weight = float(penalty_weight)
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
        # Convolution weights depend only on the channel count: create them all
        # now, so optimizers and distribution strategies see them before step 1.
        self.preprocessor(tf.zeros([1, 1, 1, 3]), self.preprocessor_level())
        self.postprocessor(tf.zeros([1, 1, 1, 3]), self.level())

    @property
    def conditioned(self) -> bool:
        return self.qstep_range is not None

    @property
    def preprocessor_conditioned(self) -> bool:
        """Whether the pre-processor reads the step (its output depends on it)."""
        return self.preprocessor_conditioning != "off"

    @property
    def qtables(self) -> tf.Tensor:
        """The positive quantisation tables `[2, 64]`, `QSTEP_FLOOR + exp(parameter)`.

        Logarithmic, so that Adam, whose updates are about the learning rate
        in size, moves a step by a *relative* amount: with a linear (ELU)
        parameter, 1,200 steps at lr 1e-3 moved a step of 16 only to 15.5.
        """
        steps = QSTEP_FLOOR + tf.exp(tf.convert_to_tensor(self.qstep_parameter))
        return tf.broadcast_to(steps, [tables.TABLE_SLOTS, 64])

    @property
    def qstep(self) -> tf.Tensor:
        """The tables' scale (`tables.scale`): the step itself while flat."""
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
        own): the step while flat, else the tables (NumPy `[2, 64]`)."""
        if self.quantization == "flat":
            return float(self.qstep if qstep is None else qstep)
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
        bottleneck = self.scenario.to_bottleneck(
            self.preprocessor(x, self.preprocessor_level(qstep)))
        decoded, bits = proxy_roundtrip(bottleneck, self.tables_at(qstep),
                                        rate_model=self.rate_model,
                                        **self.scenario.jpeg_mode.kwargs())
        upsampled = self.scenario.from_bottleneck(decoded, x.shape[1:3])
        qstep = self.qstep if qstep is None else tf.cast(qstep, tf.float32)
        return Forward(x, bottleneck, decoded, self.postprocessor(upsampled, self.level(qstep)),
                       bits, qstep)

    def loss_terms(self, forward: Forward) -> dict:
        """The loss and its terms (batch means), and images in [0, 1] for
        TensorBoard (`images`: source, bottleneck, decoded, reconstruction)."""
        peak = self.scenario.peak
        source, reconstruction = forward.source, forward.reconstruction
        distortion = tf.reduce_mean(tf.square((reconstruction - source) * (255.0 / peak)))
        pixels = float(source.shape[1] * source.shape[2])
        bpp = tf.reduce_mean(forward.bits) / pixels
        b = forward.bottleneck
        penalty = tf.reduce_mean(tf.square(tf.nn.relu(b - 255.0)) + tf.square(tf.nn.relu(-b)))
        psnr = tf.reduce_mean(metrics.psnr_tf(reconstruction, source, self.scenario.bit_depth))
        # 1 at the model's own step (always, when unconditioned); a weight,
        # not something a trained step may learn to grow.
        weight = tf.stop_gradient(tf.square(self.qstep / forward.qstep))
        return {
            "loss": weight * distortion + self.gamma * bpp + self.penalty_weight * penalty,
            "distortion": distortion,
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
        return codec_input(self.scenario.to_bottleneck(
            self.preprocessor(source, self.preprocessor_level(qstep))))

    def postprocess(self, decoded, size, qstep=None) -> tf.Tensor:
        """Decoded uint8 bottleneck -> reconstruction `[b, *size, 3]` in the
        source dtype; `size` is the source's (height, width), `qstep` the
        tables' scale it was coded at (default: the model's own; only a
        conditioned model reads it)."""
        return self.scenario.to_source(
            self.postprocessor(self.scenario.from_bottleneck(decoded, size), self.level(qstep)))

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
        - `postprocess(decoded uint8 [h', w', 3], size int32 [2],
          qstep float32 []) -> [h, w, 3]`

        `qstep` is the scale of the tables the bottleneck is (was) coded
        with; only a conditioned processor reads it.
        """
        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], self.scenario.dtype),
                                      tf.TensorSpec([], tf.float32)])
        def preprocess(source, qstep):
            return self.preprocess(source[None], qstep)[0]

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
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
      `train_step(source) -> {name: scalar}` for `SCALARS`.
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
        return tape.gradient(loss, variables), {name: terms[name] for name in SCALARS}

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

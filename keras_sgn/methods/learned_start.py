"""`sgn-learned-start`: self-gradient training whose input step starts from a
point proposed by a small generator network, trained adversarially with the
classifier (FGSM-SDI, Jia et al. CVPR 2022, "Boosting Fast Adversarial
Training with Learnable Adversarial Initialization").

`sgn` starts its FGSM step from a uniform random point of the ball, the same
distribution for every image. Here a generator looks at the image and at the
classifier's input gradient there and proposes, per image, where in the ball
to start; it is trained to maximise the classifier's loss at the point the
classifier then trains on, so the start follows the classifier as it learns.

The generator is training state, not part of the classifier: it lives on the
method (`build_state` creates it, with its own Adam optimizer), the run's
backups keep its weights and optimizer state (`save_own_variables` /
`load_own_variables`, like `sgn-memory`'s memory), and the saved `model.keras`
is the plain classifier (inference and evaluation never see the generator).
"""

import threading

import keras
import numpy as np
import tensorflow as tf

from keras_sgn import attacks
from keras_sgn import layers as sgn_layers
from keras_sgn.methods.base import check_option, eval_forward, loss_scale
from keras_sgn.methods.self_gradient import SelfGradientTraining
from keras_sgn.names import GENERATOR_INPUTS

_TINY = 1e-12


def build_generator(example_shape, width, with_gradient):
    """The generator: `(image[, fed gradient])` stacked on the channel axis ->
    a perturbation direction in [-1, 1] of the image's shape.

    Images (`H, W, C`) get a convolutional network that works at half
    resolution, so that it costs a fraction of a small classifier's pass: a
    stride-2 3x3 convolution of `width` channels, a residual block of two 3x3
    convolutions, a stride-2 3x3 transposed convolution back to `C` channels
    and tanh, cropped to `H, W` (odd sizes round up on the way down). Flat
    examples (`D,`) get the same shape with dense layers. FGSM-SDI's design,
    without BatchNorm; float32 whatever the mixed-precision policy.
    """
    shape = tuple(int(d) for d in example_shape)
    if len(shape) == 3:
        def layer(units, activation=None, strides=1):
            return keras.layers.Conv2D(units, 3, strides=strides, padding="same",
                                       activation=activation, dtype="float32")

        def last_layer(units):
            return keras.layers.Conv2DTranspose(units, 3, strides=2, padding="same",
                                                activation="tanh", dtype="float32")
    elif len(shape) == 1:
        def layer(units, activation=None, strides=1):  # no resolution to halve
            return keras.layers.Dense(units, activation=activation, dtype="float32")

        def last_layer(units):
            return layer(units, "tanh")
    else:
        raise ValueError("sgn-learned-start's generator takes images (height, width, "
                         f"channels) or flat examples. Received: example_shape={shape}.")
    channels = shape[-1]
    inputs = keras.Input(shape[:-1] + (channels * (2 if with_gradient else 1),),
                         dtype="float32")
    hidden = layer(width, "relu", strides=2)(inputs)
    residual = layer(width)(layer(width, "relu")(hidden))
    hidden = keras.layers.Activation("relu", dtype="float32")(
        keras.layers.Add(dtype="float32")([hidden, residual]))
    outputs = last_layer(channels)(hidden)
    if len(shape) == 3:
        # Twice the rounded-up half size: one row / column too many for odd sizes.
        extra = [int(outputs.shape[axis]) - shape[axis - 1] for axis in (1, 2)]
        outputs = keras.layers.Cropping2D(((0, extra[0]), (0, extra[1])),
                                          dtype="float32")(outputs)
    return keras.Model(inputs, outputs, name="learned_start_generator")


def multiply_adds(model):
    """Multiply-adds of one example's forward pass through `model`'s dense and
    convolution layers (others are counted as free)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            # Each input pixel scatters one kernel: input pixels x kernel size.
            input_pixels = np.prod(layer.input.shape[1:-1])
            total += int(input_pixels * np.prod(layer.kernel.shape))
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            output_pixels = np.prod(layer.output.shape[1:-1])
            total += int(output_pixels * np.prod(layer.kernel.shape))
    return total


def fed_gradient(gradient, generator_input):
    """The input gradient as the generator sees it: its sign, or scaled per
    example to a largest magnitude of 1 (`"normalized"`)."""
    if generator_input == "sign":
        return tf.sign(gradient)
    axes = list(range(1, len(gradient.shape)))
    return gradient / (tf.reduce_max(tf.abs(gradient), axis=axes, keepdims=True) + _TINY)


class SelfGradientLearnedStart(SelfGradientTraining):
    """`sgn-learned-start`: `sgn` whose input step starts from a generator's
    proposal, the generator trained to maximise the classifier's loss.

    One step on a batch `(x, y)`:

    1. input gradient `g = dCE/dx` at the clean images (inference mode; not
       with `generator_input="none"`);
    2. proposal: `start = proj(x + epsilon * G([x, f(g)]))`, `G` ending in
       tanh, `f` the sign of `g` or `g` scaled to a largest magnitude of 1
       (`generator_input`), `proj` onto the ball and [0, 1];
    3. the step of `sgn` from that start: pass 1 gives the input and
       hidden-site gradients, the feedback pass trains the classifier on
       `x_fb = proj(start + step_size * sign(g_0))` with the hidden-site
       feedback;
    4. the generator takes an ascent step (its Adam, `generator_learning_rate`)
       on the classifier's training loss at `x_fb`, differentiated through
       `x_fb`'s dependence on the start (the sign is a constant) into the
       generator's weights. The gradient with respect to `x_fb` comes out of
       the feedback pass's own backward pass (the one that gives the weight
       gradients), so training the generator costs no pass of the classifier.

    Deviation from FGSM-SDI, stated: FGSM-SDI updates the generator every 20
    batches with two extra passes of the classifier, before the classifier's
    update; here the generator is updated every batch, from the classifier's
    weights of the same step (simultaneous ascent and descent), at the cost of
    the generator's own backward pass only. The generator has no BatchNorm and
    works at half resolution (so that it costs less than the classifier).

    Expected cost (`cost`): 3 forward+backward passes of the classifier per
    step (the clean gradient, pass 1, the feedback pass), 2 with
    `generator_input="none"`, plus the generator's forward and backward pass,
    which `cost` leaves out: the generator works at half resolution, about
    0.27M multiply-adds per 28x28 image at the default width 8, 0.44 of
    `sgn_mnist_cnn`'s 0.61M (`multiply_adds`). Measured on `sgn_mnist_cnn`
    (`tools/benchmark.py --dataset=fashion_mnist
    --methods=standard,sgn,sgn-learned-start --batch_size=128`, one loaded
    core, 6 runs): a step costs 3.0-3.6x `standard`'s (1.00-1.20x the 3 passes
    declared), against `sgn`'s 1.5-2.1x; the earlier generator of full
    resolution, width 16 (3.95M multiply-adds) cost 8.3-9.3x. On a ResNet-18
    the generator is the small part.

    The generator must be created before training: `build_state(num_examples,
    example_shape)` under the strategy's scope (`keras_sgn.training.train`
    does it; only `example_shape` matters). It is training state: backups keep
    its weights and optimizer, the saved model is the plain classifier.

    Args:
        generator_width: channels (units) of the generator's hidden layers
            (8).
        generator_learning_rate: Adam learning rate of the generator's ascent.
        generator_input: what the generator sees besides the image: `"sign"`
            (the sign of the input gradient, as FGSM-SDI), `"normalized"` (the
            gradient scaled per example to a largest magnitude of 1) or
            `"none"` (the image only; saves the clean-gradient pass).
        clean_weight, second_order: as for `sgn`.
        **kwargs: `epsilon`, `norm`, `step_size` (1.25 epsilon), `attack_steps`.
    """

    name = "sgn-learned-start"
    description = ("self-gradient training whose FGSM input step starts from a point "
                   "proposed by a generator trained adversarially (FGSM-SDI)")
    variant = True
    differentiates_feedback_input = True
    options = ("clean_weight", "second_order", "generator_width", "generator_learning_rate",
               "generator_input")

    def __init__(self, generator_width=8, generator_learning_rate=1e-3, generator_input="sign",
                 clean_weight=0.0, second_order=False, **kwargs):
        check_option("generator_width", int(generator_width) == generator_width >= 1,
                     "an integer >= 1 (channels of the generator's hidden layers)",
                     generator_width)
        rate = generator_learning_rate
        check_option("generator_learning_rate",
                     isinstance(rate, (int, float, np.number)) and not isinstance(rate, bool)
                     and np.isfinite(rate) and rate > 0,
                     "a finite number > 0 (Adam learning rate of the generator)", rate)
        check_option("generator_input", generator_input in GENERATOR_INPUTS,
                     f"one of {GENERATOR_INPUTS} (what the generator sees besides the image)",
                     generator_input)
        super().__init__(input_attack="fgsm", clean_weight=clean_weight,
                         second_order=second_order, random_start=False, **kwargs)
        self.generator_width = int(generator_width)
        self.generator_learning_rate = float(rate)
        self.generator_input = generator_input
        self.generator = None
        self.generator_optimizer = None
        # The start and the feedback image of the step being traced, per thread:
        # MirroredStrategy traces each replica's step in a thread of its own.
        self._pending = threading.local()

    @property
    def cost(self):
        return 2 if self.generator_input == "none" else 3

    # -- state ------------------------------------------------------------------
    def build_state(self, num_examples, example_shape):
        """Create the generator and its optimizer for examples of shape
        `example_shape` (call under the strategy's scope)."""
        self.generator = build_generator(example_shape, self.generator_width,
                                         self.generator_input != "none")
        self.generator_optimizer = keras.optimizers.Adam(self.generator_learning_rate)
        self.generator_optimizer.build(self.generator.trainable_variables)

    def _state(self):
        return {**{f"generator_{i}": v for i, v in enumerate(self.generator.weights)},
                **{f"generator_optimizer_{i}": v
                   for i, v in enumerate(self.generator_optimizer.variables)}}

    def save_own_variables(self, store):
        """Put the generator's weights and optimizer state into `store` (a
        dict; nothing before `build_state`)."""
        if self.generator is not None:
            for key, variable in self._state().items():
                store[key] = np.asarray(variable.numpy())

    def load_own_variables(self, store):
        """Set the generator and its optimizer from `store`."""
        if self.generator is None:
            raise ValueError("sgn-learned-start: call build_state(num_examples, example_shape) "
                             "before loading its generator. Received: a method without one.")
        state = self._state()
        if set(store) != set(state):
            raise ValueError(f"sgn-learned-start's generator has {len(state)} saved values. "
                             f"Received: {len(store)} (another generator_width or "
                             "generator_input).")
        for key, variable in state.items():
            value = np.asarray(store[key])
            if value.shape != tuple(variable.shape):
                raise ValueError(f"sgn-learned-start's {key} is {tuple(variable.shape)}. "
                                 f"Received: {value.shape} (another generator_width, "
                                 "generator_input or dataset).")
            variable.assign(value)

    # -- the step -----------------------------------------------------------------
    def propose(self, model, x, y):
        """The generator's start for `(x, y)`: `proj(x + epsilon * G(...))`."""
        features = tf.cast(x, tf.float32)
        if self.generator_input != "none":
            gradient, _ = attacks.core.input_gradient(eval_forward(model), x, y,
                                                      attacks.core.cross_entropy_loss)
            features = tf.concat(
                [features, fed_gradient(tf.cast(gradient, tf.float32), self.generator_input)],
                axis=-1)
        direction = tf.cast(self.generator(features, training=True), x.dtype)
        return attacks.core.project(x + self.epsilon * direction, x, self.epsilon, self.norm)

    def _check_ready(self, model):
        if not sgn_layers.has_input_site(model):
            raise ValueError("sgn-learned-start proposes the input site's start, so the model "
                             "needs an input site. Received: a model without one; build it "
                             "with sites including 'input'.")
        if self.generator is None:
            raise ValueError(
                "sgn-learned-start trains a generator alongside the classifier: call "
                "method.build_state(num_examples, example_shape) under the strategy's scope "
                "before training (keras_sgn.training.train does). Received: no generator.")

    def all_gradients(self, model, x, y, seed):
        """`(loss, logits, classifier gradients, generator gradients)`; the
        generator's are those of the loss it ascends (the classifier's training
        loss at the feedback image), as its optimizer sums them over replicas."""
        self._check_ready(model)
        with tf.GradientTape() as tape:
            start = self.propose(model, x, y)
        self._pending.start = tf.stop_gradient(start)
        try:
            loss, logits, grads = super().gradients(model, x, y, seed)
            start_gradient = self._pending.start_gradient
        finally:
            self._pending.__dict__.clear()
        # Undo the classifier optimizer's loss scaling (mixed precision); the
        # replica's share of the global batch stays in.
        unscale = tf.math.divide_no_nan(1.0, tf.cast(loss_scale(model, 1.0), tf.float32))
        generator_grads = tape.gradient(start, self.generator.trainable_variables,
                                        output_gradients=start_gradient)
        return loss, logits, grads, [g * unscale for g in generator_grads]

    def gradients(self, model, x, y, seed):
        return self.all_gradients(model, x, y, seed)[:3]

    def _start(self, model, x, y, seed):
        return self._pending.start

    def _feedback_input(self, x, start, input_gradient):
        with tf.GradientTape() as tape:
            tape.watch(start)
            image = self._feedback_step(x, start, tf.stop_gradient(input_gradient))
        self._pending.feedback = (tape, start, image)
        return tf.stop_gradient(image)

    def _feedback_input_gradient(self, gradient):
        tape, start, image = self._pending.feedback
        self._pending.start_gradient = tf.cast(
            tape.gradient(image, start, output_gradients=gradient), tf.float32)

    def step(self, model, x, y, seed):
        """The classifier's descent step and the generator's ascent step."""
        loss, logits, grads, generator_grads = self.all_gradients(model, x, y, seed)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        self.generator_optimizer.apply_gradients(
            zip([-g for g in generator_grads], self.generator.trainable_variables))
        return loss, logits

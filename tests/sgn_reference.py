"""Independent references for the self-gradient tests: a tiny SGN whose layers
the tests can run by hand, and the attacks, the SGN step (and its variants)
and the inference-time feedback written with plain `tf.GradientTape` (no
attack core, no site machinery); `compare_gradients` checks a method's step
against one of them."""

import keras
import numpy as np
import tensorflow as tf

from keras_sgn.layers import SelfGradient
from keras_sgn.models import SGNModel

EPS = 0.1
SEED = tf.constant([3, 4])


class _InputRecorder(keras.layers.Layer):
    """Identity that keeps the images it sees in training-mode calls (eager only)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, inputs, training=None):
        if training:
            self.seen.append(tf.identity(inputs))
        return inputs


class Tiny:
    """A tiny SGN (dense, tanh, BatchNorm) with its layers at hand, so the tests
    can run the same function without any of keras_sgn's machinery."""

    def __init__(self, normalization="l2_relative", betas=(0.3, 0.05), **model_kwargs):
        keras.utils.set_random_seed(7)
        self.betas = betas
        self.normalization = normalization
        self.d1 = keras.layers.Dense(5, activation="tanh")
        self.bn = keras.layers.BatchNormalization(momentum=0.5)
        self.d2 = keras.layers.Dense(4, activation="tanh")
        self.d3 = keras.layers.Dense(3)
        self.recorder = _InputRecorder()
        inputs = keras.Input((6,))
        h = SelfGradient(input_site=True, name="site_input")(self.recorder(inputs))
        h = SelfGradient(beta=betas[0], normalization=normalization, name="site_stage1")(
            self.d1(h))
        h = SelfGradient(beta=betas[1], normalization=normalization, name="site_stage2")(
            self.d2(self.bn(h)))
        self.model = SGNModel(inputs, self.d3(h), **model_kwargs)

    def twin(self, **model_kwargs):
        """The same layers (shared weights) as an SGNModel with other options,
        e.g. `feedback_at_inference=True`."""
        return SGNModel(self.model.inputs, self.model.outputs, **model_kwargs)

    def logits(self, x, training, deltas=(0.0, 0.0)):
        a1 = self.d1(x) + deltas[0]
        return self.d3(self.d2(self.bn(a1, training=training)) + deltas[1])

    def self_gradient(self, x, labels=None):
        """Pass 1 in inference mode: `(loss, g0, [a1, a2], [g1, g2], [e1, e2])`
        with `g` the site gradients of the batch-mean loss and `e` those of each
        example's own loss (of the sum); `labels=None` uses the predicted ones."""
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            a1 = self.d1(x)
            tape.watch(a1)
            a2 = self.d2(self.bn(a1, training=False))
            tape.watch(a2)
            logits = self.d3(a2)
            if labels is None:
                labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
            per_example = ce(labels, logits)
            loss = tf.reduce_mean(per_example)
            total = tf.reduce_sum(per_example)
        g0, g1, g2 = tape.gradient(loss, [x, a1, a2])
        return loss, g0, [a1, a2], [g1, g2], tape.gradient(total, [a1, a2])

    def deltas(self, activations, mean_gradients, example_gradients):
        """`beta_s * N(g_s)`: `raw` is each example's own loss gradient, the
        scale-free normalisations take the mean-loss gradient."""
        gradients = example_gradients if self.normalization == "raw" else mean_gradients
        normalize = NORMALIZE[self.normalization]
        return [beta * normalize(a, g) for beta, a, g in zip(self.betas, activations, gradients)]


def ce(y, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def kl(p, logits):
    return tf.reduce_sum(p * (tf.math.log(p + 1e-12) - tf.nn.log_softmax(logits)), axis=-1)


def project(x_adv, x, epsilon=EPS):
    return tf.clip_by_value(x + tf.clip_by_value(x_adv - x, -epsilon, epsilon), 0.0, 1.0)


def uniform_start(x, seed=SEED, radius=EPS):
    return tf.clip_by_value(x + tf.random.stateless_uniform(x.shape, seed, -radius, radius),
                            0.0, 1.0)


def reference_pgd(forward, x, target, start, step_size, steps, loss=ce, epsilon=EPS):
    """L-inf PGD on the summed per-example loss, from `start`: the last iterate."""
    return reference_pgd_iterates(forward, x, target, start, step_size, steps, loss,
                                  epsilon)[-1]


def reference_pgd_iterates(forward, x, target, start, step_size, steps, loss=ce, epsilon=EPS):
    """Every iterate of L-inf PGD, `start` included (`steps + 1` of them)."""
    iterates = [start]
    for _ in range(steps):
        x_adv = iterates[-1]
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            total = tf.reduce_sum(loss(target, forward(x_adv)))
        iterates.append(project(x_adv + step_size * tf.sign(tape.gradient(total, x_adv)), x,
                                epsilon))
    return iterates


def reference_clean_step(tiny, x_train, y):
    """Mean cross-entropy at `x_train` in training mode and its weight gradients."""
    variables = tiny.model.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(ce(y, tiny.logits(x_train, training=True)))
    return loss, tape.gradient(loss, variables)


def _per_example_mean(tensor):
    return tf.reduce_mean(tensor, axis=1, keepdims=True)


# N(g), the feedback's normalisation (docs/guide.md, "The self-gradient mechanism").
NORMALIZE = {
    "l2_relative": lambda a, g: (tf.norm(a, axis=1, keepdims=True) * g
                                 / (tf.norm(g, axis=1, keepdims=True) + 1e-12)),
    "sign": lambda a, g: tf.sqrt(_per_example_mean(tf.square(a - _per_example_mean(a))))
    * tf.sign(g),
    "raw": lambda a, g: g,
}


def reference_sgn(tiny, x, y, *, step_size, input_steps, clean_weight, second_order,
                  delta_scale=1.0, noise=EPS, project_feedback=True, align_weight=0.0,
                  start=None):
    """The SGN step of docs/guide.md's "The self-gradient mechanism" written out, double
    backprop included: the deltas are differentiable functions of the weights when `second_order`.

    Variants: `delta_scale` multiplies every hidden delta (sgn-ramp); `noise`
    is the random start's radius and `project_feedback=False` leaves the
    feedback image unprojected (sgn-nfgsm); `align_weight` adds GradAlign's
    term between the clean and the start's input gradient (sgn-align); `start`
    replaces the random start (sgn-memory's remembered one)."""
    if start is None:
        start = uniform_start(x, radius=noise)
    start = reference_pgd(lambda z: tiny.logits(z, training=False), x, y, start, step_size,
                          input_steps)
    variables = tiny.model.trainable_variables
    with tf.GradientTape() as outer:
        clean_loss, g0, activations, *gradients = tiny.self_gradient(start, y)
        deltas = [delta_scale * d for d in tiny.deltas(activations, *gradients)]
        if not second_order:
            deltas = [tf.stop_gradient(d) for d in deltas]
        x_feedback = start + step_size * tf.sign(g0)
        x_feedback = (project(x_feedback, x) if project_feedback
                      else tf.clip_by_value(x_feedback, 0.0, 1.0))
        feedback_loss = tf.reduce_mean(ce(y, tiny.logits(x_feedback, True, deltas)))
        loss = (1.0 - clean_weight) * feedback_loss + clean_weight * clean_loss
        if align_weight:
            loss += align_weight * reference_misalignment(tiny, x, y, g0)
    return loss, outer.gradient(loss, variables)


def reference_misalignment(tiny, x, y, noisy_gradient):
    """GradAlign's `mean(1 - cos(grad at x, noisy_gradient))`, the clean
    gradient (inference mode) a constant."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(ce(y, tiny.logits(x, training=False)))
    clean = tf.stop_gradient(tape.gradient(total, x))
    cosine = tf.reduce_sum(clean * noisy_gradient, axis=1) / (
        tf.norm(clean, axis=1) * tf.norm(noisy_gradient, axis=1))
    return tf.reduce_mean(1.0 - cosine)


def reference_feedback_logits(tiny, x, step_size=0.0, epsilon=0.0):
    """Inference-time self-feedback: pass 1 against the predicted label, then
    the injected pass; differentiable end to end (nested tapes)."""
    _, g0, activations, *gradients = tiny.self_gradient(x)
    deltas = tiny.deltas(activations, *gradients)
    if epsilon > 0:
        x = project(x + step_size * tf.sign(g0), x, epsilon)
    return tiny.logits(x, False, deltas)


def tiny_batch():
    """Eight 6-feature examples of three classes for `Tiny`."""
    return tf.random.stateless_uniform((8, 6), [5, 6]), tf.constant([0, 1, 2, 0, 1, 2, 0, 1])


def compare_gradients(tiny, method, reference):
    """Run the method's gradients on `tiny_batch()`, restore the weights
    (BatchNorm's moving statistics move in training mode), run the reference,
    compare loss and gradients; returns the method's gradients."""
    x, y = tiny_batch()
    weights = tiny.model.get_weights()
    loss, _, grads = method.gradients(tiny.model, x, y, SEED)
    tiny.model.set_weights(weights)
    want_loss, want_grads = reference(x, y)
    tiny.model.set_weights(weights)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert len(grads) == len(want_grads) == 8
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    return grads

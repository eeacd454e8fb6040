"""Variants of the self-gradient reconstruction aimed at faster convergence
("chase the claim", docs/reproduce/fashion_mnist-variants). Each is a named method of
the registry, marked
`variant = True`, measured against `sgn`, `fast` and `pgd` by time to target:

| method      | idea                                                  | fwd+bwd per update |
|-------------|-------------------------------------------------------|--------------------|
| sgn-reuse   | Free-AT replays; each replay's one backward pass also | 1 (m per batch)    |
|             | gives the next replay's hidden-site feedback          |                    |
| sgn-ramp    | `sgn` with the hidden-site strength on a schedule     | 2                  |
| sgn-align   | `sgn` plus GradAlign (Andriushchenko & Flammarion     | about 4            |
|             | 2020), the noisy gradient taken from pass 1           |                    |
| sgn-nfgsm   | `sgn` with N-FGSM's input step (de Jorge et al. 2022):| 2                  |
|             | noise 2 epsilon, step epsilon, no projection          |                    |

Measured on Fashion-MNIST (docs/reproduce/fashion_mnist-variants, README
"Chasing the claim"): none reaches PGD-AT's validation target in 10 epochs, so
none beats `sgn` on time to target and none is kept as a method of the
comparison; they stay registered so that study reruns.

Why "reuse" is the Free-AT kind: a self-gradient is a per-example quantity
(the direction that hurts *this* image), and a new batch holds other images,
so the previous batch's gradients carry no per-example information; batch
statistics of them would be a universal perturbation, known to give little
per-example robustness. Replaying a batch is what lets one backward pass serve
both the weight update and the next perturbation.
"""

import tensorflow as tf

from keras_sgn import attacks
from keras_sgn import layers as sgn_layers
from keras_sgn.errors import ArgumentError
from keras_sgn.methods.adversarial import Free
from keras_sgn.methods.base import check_option, eval_forward
from keras_sgn.methods.replicas import replica_random_start
from keras_sgn.methods.self_gradient import SelfGradientTraining


class SelfGradientReuse(Free):
    """`sgn-reuse`: Free-AT with self-gradient feedback at the hidden sites.

    Each batch is replayed `replays` times. Replay `r` trains on
    `x_r` with `beta_s * N(g_s)` added at every hidden site, where `g_s` and the
    input gradient come from the backward pass of replay `r - 1`, the same
    backward pass that updated the weights. Replay 1 starts at a uniform random
    point of the ball with no hidden feedback; `x_{r+1} = proj(x_r + step_size
    * sign(grad_x))`. The site gradients are those at `a_s + delta_s` (the
    tensor the site passes on) and BatchNorm is in training mode, as in Free-AT.

    Expected cost: ONE forward+backward per weight update (standard training's
    cost), `replays` per batch; train `epochs / replays` epochs for the budget
    of the others (`budget_epochs`).

    Args:
        replays: updates per batch (m).
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon).
    """

    name = "sgn-reuse"
    description = ("Free-AT replays whose one backward pass per update also gives the next "
                   "replay's hidden-site self-gradient feedback")
    variant = True

    def feedback_sites(self, model):
        return sgn_layers.hidden_sites_of(model)


class SelfGradientRamp(SelfGradientTraining):
    """`sgn-ramp`: `sgn` with the hidden-site feedback strength on a schedule.

    Every hidden delta is multiplied by `s(t)`, `t` the optimizer's step:
    `"up"`: `min(1, t / ramp_steps)` (no feedback at first, full strength after
    `ramp_steps`: the early, fast-moving network trains like FGSM-RS);
    `"down"`: `max(0, 1 - t / ramp_steps)` (strong feedback early, none at the
    end, so the final network is not trained on a feedback it never sees at
    test time). The input step is that of `sgn`.

    Expected cost: that of `sgn` (2 forward+backward per step).

    Args:
        ramp: `"up"` or `"down"`.
        ramp_steps: optimizer steps of the ramp (about 2 epochs of
            Fashion-MNIST at batch 128 by default).
        **kwargs: the options of `sgn`.
    """

    name = "sgn-ramp"
    description = "self-gradient training with the hidden-site strength ramped over steps"
    variant = True
    RAMPS = ("up", "down")
    options = SelfGradientTraining.options + ("ramp", "ramp_steps")

    def __init__(self, ramp="up", ramp_steps=1000, **kwargs):
        check_option("ramp", ramp in self.RAMPS, f"one of {self.RAMPS}", ramp)
        check_option("ramp_steps", int(ramp_steps) == ramp_steps and ramp_steps >= 1,
                     "an integer >= 1 (optimizer steps)", ramp_steps)
        super().__init__(**kwargs)
        self.ramp = ramp
        self.ramp_steps = int(ramp_steps)

    def strength(self, step):
        """`s(t)`, the factor of every hidden delta at optimizer step `step`."""
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.ramp_steps), 1.0)
        return progress if self.ramp == "up" else 1.0 - progress

    def _deltas(self, model, first):
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ArgumentError("sgn-ramp reads the step counter of model.optimizer. Received: "
                                "a model without an optimizer; call model.compile(...) first.")
        scale = self.strength(optimizer.iterations)
        return {name: delta * tf.cast(scale, delta.dtype)
                for name, delta in super()._deltas(model, first).items()}


class _RandomStartFGSM(SelfGradientTraining):
    """A variant of `sgn` on its FGSM step from a random start (its own input
    step, if any, lives in the hooks): `input_attack` and `random_start` are
    fixed, the other options of `sgn` kept."""

    options = ("clean_weight", "second_order")

    def __init__(self, clean_weight=0.0, second_order=False, **kwargs):
        super().__init__(input_attack="fgsm", clean_weight=clean_weight,
                         second_order=second_order, random_start=True, **kwargs)


def _nonnegative(name, value, meaning):
    check_option(name, float(value) >= 0, f">= 0 ({meaning})", value)
    return float(value)


def _unit(gradient):
    """Each example's gradient scaled to unit L2 norm (zero stays zero), float32."""
    gradient = tf.cast(gradient, tf.float32)
    flat = tf.reshape(gradient, [tf.shape(gradient)[0], -1])
    return tf.math.divide_no_nan(flat, tf.norm(flat, axis=1, keepdims=True))


class SelfGradientAlign(_RandomStartFGSM):
    """`sgn-align`: `sgn` plus GradAlign against catastrophic overfitting.

    Loss of `sgn` plus `align_weight * mean(1 - cos(grad_x l(x), grad_x l(x')))`
    (Andriushchenko & Flammarion 2020), `x'` the uniform random start of the
    self-gradient pass, so its gradient is pass 1's input gradient and costs
    nothing more; the weight gradient flows through it (double backprop,
    pass 1 recorded). The clean gradient is a constant, as in GradAlign's code.
    Deviations, stated: both gradients are taken in inference mode (BatchNorm
    on moving statistics, as all our attacks), and an example with a zero
    gradient adds 0 to the mean instead of being dropped from it, so the term
    is the same on any number of replicas.

    Expected cost: about 4 forward+backward per step (pass 1 and its double
    backprop, the clean gradient, the feedback pass).

    Args:
        align_weight: lambda of GradAlign (0.2 at CIFAR10's 8/255).
        clean_weight, second_order: as for `sgn`.
        **kwargs: `epsilon`, `norm`, `step_size` (1.25 epsilon), `attack_steps`.
    """

    name = "sgn-align"
    description = "self-gradient training plus GradAlign (Andriushchenko & Flammarion 2020)"
    variant = True
    records_pass_one = True
    options = _RandomStartFGSM.options + ("align_weight",)

    def __init__(self, align_weight=0.2, **kwargs):
        self.align_weight = _nonnegative("align_weight", align_weight,
                                         "GradAlign's lambda; 0.2 at CIFAR10's 8/255")
        super().__init__(**kwargs)

    @property
    def cost(self):
        return 4

    def _extra_loss(self, model, x, y, first):
        if not sgn_layers.has_input_site(model):
            raise ArgumentError("sgn-align compares input gradients at x and at the random start, "
                                "so the model needs an input site. Received: a model without "
                                "one; build it with sites including 'input'.")
        clean, _ = attacks.core.input_gradient(eval_forward(model), x, y,
                                               attacks.core.cross_entropy_loss)
        cosine = tf.reduce_sum(tf.stop_gradient(_unit(clean)) * _unit(first["input_gradient"]),
                               axis=1)
        nonzero = tf.cast(cosine != 0.0, tf.float32)
        misalignment = (1.0 - cosine) * nonzero
        mean = tf.math.divide_no_nan(tf.reduce_sum(misalignment),
                                     tf.cast(tf.size(misalignment), tf.float32))
        return self.align_weight * mean


class SelfGradientNoise(_RandomStartFGSM):
    """`sgn-nfgsm`: `sgn` with the input step of N-FGSM (de Jorge et al. 2022).

    The self-gradient pass starts from `x + eta`, `eta` uniform in the ball of
    radius `noise_scale * epsilon` (clipped to [0, 1]); the feedback pass's
    image is `clip(x + eta + step_size * sign(g_0), 0, 1)`, NOT projected back
    to the epsilon-ball. N-FGSM reports that this stronger noise, without the
    projection, avoids catastrophic overfitting at FGSM-RS's cost. Hidden-site
    feedback as in `sgn`.

    Expected cost: that of `sgn` (2 forward+backward per step).

    Args:
        noise_scale: radius of the noise in units of epsilon (k = 2 in the paper).
        clean_weight, second_order: as for `sgn`.
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon), `attack_steps`.
    """

    name = "sgn-nfgsm"
    description = "self-gradient training with N-FGSM's input step (de Jorge et al. 2022)"
    variant = True
    input_attack_defaults = {"fgsm": (1.0, 1)}
    default_step_size, default_attack_steps = input_attack_defaults["fgsm"]
    options = _RandomStartFGSM.options + ("noise_scale",)

    def __init__(self, noise_scale=2.0, **kwargs):
        self.noise_scale = _nonnegative("noise_scale", noise_scale,
                                        "noise radius in units of epsilon; 2 in the paper")
        super().__init__(**kwargs)

    def _start(self, model, x, y, seed):
        return replica_random_start(x, self.noise_scale * self.epsilon, self.norm, seed)

    def _feedback_input(self, x, start, input_gradient):
        return tf.stop_gradient(tf.clip_by_value(
            attacks.core.ascent_step(start, input_gradient, self.step_size, self.norm), 0.0, 1.0))

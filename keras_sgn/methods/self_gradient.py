"""Self-gradient training (docs/guide.md, "The self-gradient mechanism"): `sgn` and `sgn-pgd`.

`SelfGradientTraining.gradients` is one step in four hooks, which the
variants of `keras_sgn.methods.variants` override: `_start` (the input of the
self-gradient pass), `_deltas` (hidden-site feedback from that pass),
`_feedback_input` (the input of the feedback pass) and `_extra_loss` (a term
added to the loss, differentiated through pass 1 when `records_pass_one`).
"""

import contextlib

import tensorflow as tf

from keras_sgn import attacks, feedback
from keras_sgn import layers as sgn_layers
from keras_sgn.methods.base import (
    TrainingMethod,
    check_option,
    eval_forward,
    loss_scale,
    mean_cross_entropy,
    regularization,
    scaled_for_gradient,
)
from keras_sgn.methods.replicas import global_weight, replica_random_start

# input attack -> (default step size as a fraction of epsilon, default attack steps)
INPUT_ATTACK_DEFAULTS = {"fgsm": (1.25, 1), "pgd": (0.25, 10)}


class SelfGradientTraining(TrainingMethod):
    """Self-gradient training (the project's reconstruction; docs/guide.md).

    1. Self-gradient pass from a random start `x'` (or after `attack_steps - 1`
       PGD steps for `input_attack="pgd"`): ONE backward pass yields the input
       gradient, the gradient at every hidden site and, if `clean_weight > 0`,
       the weight gradients of this pass.
    2. Feedback pass, BatchNorm in training mode: the input becomes
       `proj(x' + step_size * sign(g_0))` (if the model has an input site) and
       each hidden site adds `beta_s * N(g_s)` (site settings live on the
       `SelfGradient` layers).
    3. Loss `(1 - clean_weight) * CE(feedback) + clean_weight * CE(pass 1)`.

    Args:
        input_attack: `"fgsm"` (the `sgn` method, 2 passes) or `"pgd"`
            (`sgn-pgd`, `attack_steps + 1` passes).
        clean_weight: lambda, weight of the self-gradient pass loss.
        second_order: let the weight gradient flow through the deltas (double
            backprop) instead of treating them as constants.
        random_start: start the self-gradient pass from a uniform random point
            of the ball (FGSM-RS); False starts at `x`.
        **kwargs: `epsilon`, `norm`, `step_size` (default 1.25 epsilon for
            `fgsm`, epsilon/4 for `pgd`), `attack_steps`.
    """

    name = "sgn"
    description = "self-gradient training: an FGSM-RS input step plus hidden-site feedback"
    input_attack_defaults = INPUT_ATTACK_DEFAULTS
    INPUT_ATTACKS = tuple(INPUT_ATTACK_DEFAULTS)
    default_step_size, default_attack_steps = INPUT_ATTACK_DEFAULTS["fgsm"]
    options = ("input_attack", "clean_weight", "second_order", "random_start")
    # Whether the weight tape records pass 1 even at first order (for an
    # `_extra_loss` that differentiates pass 1's gradients).
    records_pass_one = False
    # Whether the same backward pass as the weight gradients also gives the
    # gradient with respect to the feedback pass's image, handed to
    # `_feedback_input_gradient` (for a method that trains its start).
    differentiates_feedback_input = False

    def __init__(self, input_attack="fgsm", clean_weight=0.0, second_order=False,
                 random_start=True, **kwargs):
        check_option("input_attack", input_attack in self.input_attack_defaults,
                     f"one of {tuple(self.input_attack_defaults)}", input_attack)
        check_option("clean_weight", 0.0 <= float(clean_weight) <= 1.0,
                     "in [0, 1] (weight of the self-gradient pass loss)", clean_weight)
        self.input_attack = input_attack
        self.default_step_size, self.default_attack_steps = (
            self.input_attack_defaults[input_attack])
        super().__init__(**kwargs)
        self.clean_weight = float(clean_weight)
        self.second_order = bool(second_order)
        self.random_start = bool(random_start)

    @property
    def cost(self):
        return 2 if self.input_attack == "fgsm" else self.attack_steps + 1

    def _start(self, model, x, y, seed):
        """The self-gradient pass's input: `x`, its random start, or that start
        after `attack_steps - 1` PGD steps."""
        start = x
        if self.random_start:
            start = replica_random_start(x, self.epsilon, self.norm, seed)
        if self.input_attack == "pgd":
            start = self.perturb(eval_forward(model), x, y, start, step_size=self.step_size,
                                 steps=self.attack_steps - 1)
        return start

    def _deltas(self, model, first):
        """Hidden-site deltas `beta_s * N(g_s)` from the self-gradient pass."""
        return feedback.feedback_deltas(sgn_layers.sites_of(model), first["activations"],
                                        first["site_gradients"],
                                        stop_gradient=not self.second_order)

    def _feedback_step(self, x, start, input_gradient):
        """One ascent step from `start`, projected (differentiable in `start`)."""
        return attacks.core.project(
            attacks.core.ascent_step(start, input_gradient, self.step_size, self.norm),
            x, self.epsilon, self.norm)

    def _feedback_input(self, x, start, input_gradient):
        """The feedback pass's image: one ascent step from `start`, projected."""
        return tf.stop_gradient(self._feedback_step(x, start, input_gradient))

    def _feedback_input_gradient(self, gradient):
        """Receives the gradient of the scaled loss with respect to the feedback
        pass's image when `differentiates_feedback_input` (nothing here)."""

    def _extra_loss(self, model, x, y, first):
        """A term added to the loss (none here)."""
        return 0.0

    def gradients(self, model, x, y, seed):
        variables = model.trainable_variables
        perturb_input = sgn_layers.has_input_site(model)
        start = self._start(model, x, y, seed) if perturb_input else x

        recorded = self.second_order or self.records_pass_one
        want_pass_one_weights = self.clean_weight > 0.0 and not recorded
        with tf.GradientTape() as tape:
            # First order: pass 1 is not recorded by the weight tape.
            with contextlib.nullcontext() if recorded else tape.stop_recording():
                first = feedback.self_gradient_pass(
                    eval_forward(model), start, y, variables if want_pass_one_weights else ())
                deltas = self._deltas(model, first)
            x_feedback = start
            if perturb_input:
                x_feedback = self._feedback_input(x, start, first["input_gradient"])
            watched = [x_feedback] if self.differentiates_feedback_input else []
            for image in watched:
                tape.watch(image)
            with sgn_layers.inject_sites(deltas):
                logits = model(x_feedback, training=True)
            loss = (1.0 - self.clean_weight) * mean_cross_entropy(y, logits)
            loss += regularization(model)
            loss += self._extra_loss(model, x, y, first)
            if recorded and self.clean_weight > 0.0:
                loss += self.clean_weight * first["loss"]
            scaled = scaled_for_gradient(model, loss, x)
        grads = tape.gradient(scaled, variables + watched)
        if watched:
            self._feedback_input_gradient(grads.pop())
        if want_pass_one_weights:
            grads = self._add_pass_one(model, x, grads, first["variable_gradients"])
            loss += self.clean_weight * first["loss"]
        return loss, logits, grads

    def _add_pass_one(self, model, x, grads, pass_one_grads):
        """`grads + clean_weight * pass_one_grads`, scaled like the loss (first order)."""
        weight = loss_scale(model, self.clean_weight * global_weight(x))
        return [g if g1 is None else (g1 * weight if g is None else g + g1 * weight)
                for g, g1 in zip(grads, pass_one_grads)]


class SelfGradientPGD(SelfGradientTraining):
    """Self-gradient training with a PGD-k input attack (`sgn-pgd`)."""

    name = "sgn-pgd"
    description = "self-gradient training with a PGD input attack"
    multi_step = True
    default_step_size, default_attack_steps = INPUT_ATTACK_DEFAULTS["pgd"]

    def __init__(self, input_attack="pgd", **kwargs):
        super().__init__(input_attack=input_attack, **kwargs)

"""Clean training and the adversarial-training baselines: PGD (Madry et al.
2018), Fast (FGSM-RS, Wong et al. 2020), Free (Shafahi et al. 2019) and TRADES
(Zhang et al. 2019). Attacks run in inference mode, updates in training mode."""

import tensorflow as tf

from keras_sgn import attacks, feedback
from keras_sgn import layers as sgn_layers
from keras_sgn.methods.base import (
    AttackingMethod,
    TrainingMethod,
    check_option,
    eval_forward,
    mean_cross_entropy,
    regularization,
    scaled_for_gradient,
)
from keras_sgn.methods.replicas import replica_normal, replica_random_start, replica_share


def _train_on(model, x_train, y):
    """Standard cross-entropy update on `x_train` (BatchNorm in training mode)."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(x_train, training=True)
        loss = mean_cross_entropy(y, logits) + regularization(model)
        scaled = scaled_for_gradient(model, loss, x_train)
    return loss, logits, tape.gradient(scaled, variables)


class Standard(TrainingMethod):
    """Clean training (the cost unit)."""

    name = "standard"
    description = "clean training (no adversary)"
    accuracy_name = "accuracy"
    run_options = {"epsilon": "epsilon", "norm": "norm", "step_size": "step_size"}

    def gradients(self, model, x, y, seed):
        return _train_on(model, x, y)


def attacked_rows(x, fraction):
    """How many of this replica's rows (a prefix) are attacked when the first
    `fraction` of the *global* batch is: N replicas attack the rows one
    replica would."""
    if fraction >= 1.0:
        return tf.shape(x)[0]
    offset, n, total = replica_share(x)
    wanted = tf.cast(tf.round(fraction * tf.cast(total, tf.float32)), tf.int32)
    return tf.clip_by_value(wanted - offset, 0, n)


class AdversarialTraining(AttackingMethod):
    """Train on PGD-k examples from a random start (Madry et al. 2018).

    Args:
        random_start: start the attack at a uniform random point of the ball.
        adversarial_fraction: the fraction of each batch that is attacked (its
            first rows; the rest trains clean), in (0, 1]. Croce et al. 2019
            train their Fashion-MNIST anchor with 0.5. The attack's cost
            shrinks with it: `attack_steps * fraction + 1` passes per step.
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon/4), `attack_steps` (10).
    """

    name = "pgd"
    description = "PGD adversarial training (Madry et al. 2018)"
    multi_step = True
    options = ("random_start", "adversarial_fraction")

    def __init__(self, random_start=True, adversarial_fraction=1.0, **kwargs):
        super().__init__(**kwargs)
        self.random_start = bool(random_start)
        fraction = adversarial_fraction
        check_option("adversarial_fraction",
                     isinstance(fraction, (int, float)) and 0 < fraction <= 1,
                     "in (0, 1] (the attacked share of each batch; 1 attacks all of it)",
                     fraction)
        self.adversarial_fraction = float(fraction)

    @property
    def cost(self):
        return self.attack_steps * self.adversarial_fraction + 1

    def gradients(self, model, x, y, seed):
        start = (replica_random_start(x, self.epsilon, self.norm, seed)
                 if self.random_start else x)
        if self.adversarial_fraction >= 1.0:
            x_adv = self.perturb(eval_forward(model), x, y, start,
                                 step_size=self.step_size, steps=self.attack_steps)
            return _train_on(model, x_adv, y)
        k = attacked_rows(x, self.adversarial_fraction)
        x_adv = self.perturb(eval_forward(model), x[:k], y[:k], start[:k],
                             step_size=self.step_size, steps=self.attack_steps)
        return _train_on(model, tf.concat([x_adv, x[k:]], axis=0), y)


class Fast(AdversarialTraining):
    """FGSM with a random start and step 1.25 epsilon (Wong et al. 2020)."""

    name = "fast"
    description = "FGSM with random start (Wong et al. 2020)"
    multi_step = False
    default_step_size = 1.25
    default_attack_steps = 1


class Free(TrainingMethod):
    """Free adversarial training (Shafahi et al. 2019): `replays` updates per
    batch, each backward pass also updating the perturbation.

    Deviation, stated: the perturbation starts at a uniform random point of the
    ball for every new batch instead of being carried over from the previous
    batch, which keeps the step free of per-replica state. Train for
    `epochs / replays` epochs to match the cost of the other methods
    (`budget_epochs`).

    Args:
        replays: minibatch replays m (updates per batch).
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon).
    """

    name = "free"
    description = "Free adversarial training (Shafahi et al. 2019)"
    default_step_size = 1.0
    options = ("replays",)

    def __init__(self, replays=8, **kwargs):
        super().__init__(**kwargs)
        check_option("replays", int(replays) == replays and replays >= 1,
                     "an integer >= 1 (updates per batch; 8 in the paper)", replays)
        self.replays = int(replays)

    @property
    def cost(self):
        return self.replays

    def budget_epochs(self, epochs):
        return max(1, round(epochs / self.replays))

    def feedback_sites(self, model):
        """Hidden sites whose feedback each replay takes from the previous
        replay's backward pass: none for Free-AT (`sgn-reuse` has them)."""
        return []

    def step(self, model, x, y, seed):
        """`replays` updates on one batch. Each replay's ONE backward pass gives
        the weight gradients, the next perturbation's input gradient and, at
        the `feedback_sites`, the gradients of the next replay's feedback."""
        variables, sites = model.trainable_variables, self.feedback_sites(model)
        x_adv = replica_random_start(x, self.epsilon, self.norm, seed)
        deltas = {}
        for replay in range(self.replays):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                with sgn_layers.inject_and_record_sites(deltas) as activations:
                    logits = model(x_adv, training=True)
                loss = mean_cross_entropy(y, logits) + regularization(model)
                scaled = scaled_for_gradient(model, loss, x)
            names = [site.name for site in sites if site.name in activations]
            grads = tape.gradient(scaled, variables + [x_adv] + [activations[n] for n in names])
            model.optimizer.apply_gradients(zip(grads[:len(variables)], variables))
            x_adv = tf.stop_gradient(attacks.core.project(
                attacks.core.ascent_step(x_adv, grads[len(variables)], self.step_size, self.norm),
                x, self.epsilon, self.norm))
            if names and replay + 1 < self.replays:
                # Gradients of the batch-mean loss, as feedback_deltas takes them.
                scale = scaled_for_gradient(model, tf.constant(1.0), x)
                unscale = tf.math.divide_no_nan(1.0, scale)
                site_gradients = {n: g * tf.cast(unscale, g.dtype)
                                  for n, g in zip(names, grads[len(variables) + 1:])}
                deltas = feedback.feedback_deltas(sites, activations, site_gradients)
        return loss, logits


class Trades(AttackingMethod):
    """TRADES (Zhang et al. 2019): CE(f(x)) + beta KL(f(x) || f(x_adv)).

    The inner attack maximises the KL from a start 0.001 N(0, 1) away from `x`.

    Args:
        trades_beta: weight of the KL (robustness) term.
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon/4), `attack_steps` (10).
    """

    name = "trades"
    description = "TRADES (Zhang et al. 2019)"
    multi_step = True
    options = ("trades_beta",)

    def __init__(self, trades_beta=6.0, **kwargs):
        super().__init__(**kwargs)
        check_option("trades_beta", float(trades_beta) >= 0,
                     ">= 0 (weight of the KL term; 6 in the paper)", trades_beta)
        self.trades_beta = float(trades_beta)

    def gradients(self, model, x, y, seed):
        clean_probabilities = tf.stop_gradient(tf.nn.softmax(
            tf.cast(model(x, training=False), tf.float32)))
        start = tf.clip_by_value(x + 0.001 * replica_normal(x, seed), 0.0, 1.0)
        x_adv = self.perturb(eval_forward(model), x, clean_probabilities, start,
                             step_size=self.step_size, steps=self.attack_steps,
                             loss_fn=attacks.core.kl_loss)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            adv_logits = model(x_adv, training=True)
            kl = attacks.core.kl_loss(tf.nn.softmax(tf.cast(logits, tf.float32)), adv_logits)
            robust = tf.math.divide_no_nan(tf.reduce_sum(kl), tf.cast(tf.size(kl), kl.dtype))
            loss = (mean_cross_entropy(y, logits) + self.trades_beta * robust
                    + regularization(model))
            scaled = scaled_for_gradient(model, loss, x)
        return loss, adv_logits, tape.gradient(scaled, variables)

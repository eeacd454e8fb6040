"""Training methods: one framework, one attack core (DESIGN section 3).

A method turns a batch `(x, y)` into a weight update. All methods share the
attack primitives of `keras_sgn.attacks` and are driven by
`SGNModel.train_step`, so they are compared like for like:

| method    | what                                          | fwd+bwd per step |
|-----------|-----------------------------------------------|------------------|
| standard  | clean training                                | 1                |
| fast      | FGSM with random start (Wong et al. 2020)     | 2                |
| pgd       | PGD-k adversarial training (Madry et al. 2018)| k+1              |
| free      | Free-AT, m replays (Shafahi et al. 2019)      | m                |
| trades    | TRADES (Zhang et al. 2019)                    | k+1 (+1 fwd)     |
| sgn       | self-gradient feedback (DESIGN section 2)     | 2                |
| sgn-pgd   | self-gradient with a PGD-k input attack       | k+1              |

Distribution (any `tf.distribute` strategy): every replica's gradient is taken
of its per-replica mean loss times `local_batch / global_batch`, because
`tf.distribute` sums gradients across replicas; that is the mean over the
global batch, as one replica would compute it, even when the last batch splits
unevenly. Reported losses are per-replica means, which metrics weighted by the
batch size then average correctly. Random starts are drawn for the *global*
batch from a seed that does not depend on the replica, and each replica takes
its own rows (`replica_random_start`): replicas draw distinct starts, and N
replicas see exactly the starts one replica would see at the same global batch.
"""

import contextlib
import difflib
import functools

import tensorflow as tf

from keras_sgn import attacks
from keras_sgn import layers as sgn_layers


def _replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(x):
    """`(offset, local, total)`: where this replica's examples sit in the global
    batch. `x` is this replica's batch (rows are examples).

    Outside a multi-replica strategy this is `(0, n, n)`. With a static batch
    dimension (drop_remainder, TPU) the shares are equal and no communication
    is needed; otherwise the replicas' sizes are all-gathered, so an uneven last
    batch (e.g. 41 examples over 2 replicas) is placed exactly. Replicas hold
    consecutive rows of the global batch in replica-id order, which is how
    `tf.distribute` splits a batched dataset.
    """
    n = tf.shape(x)[0]
    context = tf.distribute.get_replica_context()
    replicas = _replicas()
    if context is None or replicas == 1:
        return tf.constant(0, tf.int32), n, n
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    if x.shape[0] is not None:
        return replica * n, n, n * replicas
    sizes = context.all_gather(tf.reshape(n, [1]), axis=0)
    return tf.reduce_sum(sizes[:replica]), n, tf.reduce_sum(sizes)


def _global_rows(x, draw):
    """`draw(x_global)` evaluated on the global batch and sliced back to this
    replica's rows; `x_global` holds `x` at this replica's rows (zeros elsewhere).
    `draw` must treat examples independently (random starts do)."""
    offset, n, total = replica_share(x)
    rank = len(x.shape)
    padded = tf.pad(x, [[offset, total - offset - n]] + [[0, 0]] * (rank - 1))
    begin = tf.pad(tf.reshape(offset, [1]), [[0, rank - 1]])
    return tf.slice(draw(padded), begin, tf.shape(x))


def replica_random_start(x, epsilon, norm, seed):
    """`attacks.random_start` for this replica's rows of the global batch.

    `seed` must be the same on every replica (`SGNModel._step_seed()`): the
    start is drawn for the whole global batch and each replica keeps its rows,
    so replicas get distinct starts and the result does not depend on the
    number of replicas. With one replica it is exactly `attacks.random_start`.
    """
    return _global_rows(x, lambda images: attacks.random_start(images, epsilon, norm, seed))


def _replica_normal(x, seed):
    """Standard normal noise shaped like `x`, drawn for the global batch (see
    `replica_random_start`)."""
    return _global_rows(x, lambda images: tf.random.stateless_normal(
        tf.shape(images), seed, dtype=images.dtype))


def _mean_ce(y, logits):
    # divide_no_nan: a replica may receive no examples of an uneven last batch.
    losses = attacks.cross_entropy_loss(y, logits)
    return tf.math.divide_no_nan(tf.reduce_sum(losses),
                                 tf.cast(tf.size(losses), losses.dtype))


def _global_weight(x, dtype=tf.float32):
    """This replica's share of the global batch, `local / global`: gradients of
    `share * local mean`, summed over replicas, are those of the global mean."""
    _, n, total = replica_share(x)
    return tf.math.divide_no_nan(tf.cast(n, dtype), tf.cast(total, dtype))


def _regularization(model):
    return tf.add_n(model.losses) if model.losses else 0.0


def _scaled_for_gradient(model, loss, x):
    """Scale a per-replica mean loss for cross-replica summing (by this
    replica's share of the global batch `x` belongs to) and loss scaling."""
    loss = loss * _global_weight(x, loss.dtype)
    optimizer = getattr(model, "optimizer", None)
    return optimizer.scale_loss(loss) if optimizer is not None else loss


def _forward_eval(model):
    return lambda images: model(images, training=False)


class TrainingMethod:
    """Base class: a named recipe for the loss of one batch.

    Args:
        epsilon: threat-model radius in pixel units (8/255 for CIFAR10 L-inf).
        norm: `"linf"` or `"l2"`.
        step_size: attack step; default depends on the method.
        attack_steps: steps of the inner attack where the method has one.

    Subclasses implement `gradients(model, x, y, seed) -> (loss, logits, grads)`;
    `loss` is the unscaled per-replica mean, `logits` are the ones the training
    accuracy is measured on.
    """

    name = None
    default_step_size = 0.25  # as a fraction of epsilon
    default_attack_steps = 10
    # Set by SGNModel.compile(jit_compile_attack=...): XLA-compile the inner
    # attack per replica (whole-step XLA fails under multi-device Mirrored).
    jit_compile = False

    def __init__(self, epsilon=8 / 255, norm="linf", step_size=None, attack_steps=None):
        attack_steps = self.default_attack_steps if attack_steps is None else attack_steps
        attacks.check_attack_args(epsilon, attack_steps, norm, step_size=step_size)
        self.epsilon = float(epsilon)
        self.norm = norm
        self.attack_steps = int(attack_steps)
        self.step_size = float(
            self.default_step_size * self.epsilon if step_size is None else step_size
        )

    def get_config(self):
        return {
            "epsilon": self.epsilon,
            "norm": self.norm,
            "step_size": self.step_size,
            "attack_steps": self.attack_steps,
        }

    @property
    def cost(self):
        """Forward+backward passes per step, relative to standard training."""
        return 1

    def gradients(self, model, x, y, seed):
        raise NotImplementedError

    def _perturb(self, forward, x, target, start, **options):
        def run(x, target, start):
            return attacks.perturb(forward, x, target, start=start, epsilon=self.epsilon,
                                   norm=self.norm, **options)

        if self.jit_compile:
            run = tf.function(run, jit_compile=True)
        return run(x, target, start)

    def step(self, model, x, y, seed):
        """Compute and apply one update; returns `(loss, logits)`."""
        loss, logits, grads = self.gradients(model, x, y, seed)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, logits

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _train_on(model, x_train, y):
    """Standard cross-entropy update on `x_train` (BatchNorm in training mode)."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(x_train, training=True)
        loss = _mean_ce(y, logits) + _regularization(model)
        scaled = _scaled_for_gradient(model, loss, x_train)
    return loss, logits, tape.gradient(scaled, variables)


class Standard(TrainingMethod):
    """Clean training (the cost unit)."""

    name = "standard"

    def gradients(self, model, x, y, seed):
        return _train_on(model, x, y)


class AdversarialTraining(TrainingMethod):
    """Train on PGD-k examples from a random start (Madry et al. 2018).

    Args:
        random_start: start the attack at a uniform random point of the ball.
        **kwargs: `epsilon`, `norm`, `step_size` (epsilon/4), `attack_steps` (10).
    """

    name = "pgd"

    def __init__(self, random_start=True, **kwargs):
        super().__init__(**kwargs)
        self.random_start = bool(random_start)

    def get_config(self):
        return {**super().get_config(), "random_start": self.random_start}

    @property
    def cost(self):
        return self.attack_steps + 1

    def gradients(self, model, x, y, seed):
        start = (replica_random_start(x, self.epsilon, self.norm, seed)
                 if self.random_start else x)
        x_adv = self._perturb(_forward_eval(model), x, y, start, step_size=self.step_size,
                              steps=self.attack_steps)
        return _train_on(model, x_adv, y)


class Fast(AdversarialTraining):
    """FGSM with a random start and step 1.25 epsilon (Wong et al. 2020)."""

    name = "fast"
    default_step_size = 1.25
    default_attack_steps = 1


class Free(TrainingMethod):
    """Free adversarial training (Shafahi et al. 2019): `replays` updates per
    batch, each backward pass also updating the perturbation.

    Deviation, stated: the perturbation starts at a uniform random point of the
    ball for every new batch instead of being carried over from the previous
    batch, which keeps the step free of per-replica state. Train for
    `epochs / replays` epochs to match the cost of the other methods.
    """

    name = "free"
    default_step_size = 1.0

    def __init__(self, replays=8, **kwargs):
        super().__init__(**kwargs)
        if int(replays) != replays or replays < 1:
            raise ValueError(f"replays must be an integer >= 1, got {replays}.")
        self.replays = int(replays)

    def get_config(self):
        return {**super().get_config(), "replays": self.replays}

    @property
    def cost(self):
        return self.replays

    def step(self, model, x, y, seed):
        variables = model.trainable_variables
        x_adv = replica_random_start(x, self.epsilon, self.norm, seed)
        for _ in range(self.replays):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                logits = model(x_adv, training=True)
                loss = _mean_ce(y, logits) + _regularization(model)
                scaled = _scaled_for_gradient(model, loss, x)
            grads = tape.gradient(scaled, variables + [x_adv])
            model.optimizer.apply_gradients(zip(grads[:-1], variables))
            x_adv = tf.stop_gradient(attacks.project(
                attacks.ascent_step(x_adv, grads[-1], self.step_size, self.norm),
                x, self.epsilon, self.norm))
        return loss, logits


class Trades(TrainingMethod):
    """TRADES (Zhang et al. 2019): CE(f(x)) + beta KL(f(x) || f(x_adv))."""

    name = "trades"

    def __init__(self, trades_beta=6.0, **kwargs):
        super().__init__(**kwargs)
        if not float(trades_beta) >= 0:
            raise ValueError(f"trades_beta must be >= 0, got {trades_beta}.")
        self.trades_beta = float(trades_beta)

    def get_config(self):
        return {**super().get_config(), "trades_beta": self.trades_beta}

    @property
    def cost(self):
        return self.attack_steps + 1

    def gradients(self, model, x, y, seed):
        clean_probabilities = tf.stop_gradient(tf.nn.softmax(
            tf.cast(model(x, training=False), tf.float32)))
        start = tf.clip_by_value(
            x + 0.001 * _replica_normal(x, seed), 0.0, 1.0)
        x_adv = self._perturb(_forward_eval(model), x, clean_probabilities, start,
                              step_size=self.step_size, steps=self.attack_steps,
                              loss_fn=attacks.kl_loss)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            adv_logits = model(x_adv, training=True)
            kl = attacks.kl_loss(tf.nn.softmax(tf.cast(logits, tf.float32)), adv_logits)
            robust = tf.math.divide_no_nan(tf.reduce_sum(kl), tf.cast(tf.size(kl), kl.dtype))
            loss = _mean_ce(y, logits) + self.trades_beta * robust + _regularization(model)
            scaled = _scaled_for_gradient(model, loss, x)
        return loss, adv_logits, tape.gradient(scaled, variables)


class SelfGradientTraining(TrainingMethod):
    """Self-gradient training (DESIGN section 2; the project's reconstruction).

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
    INPUT_ATTACKS = ("fgsm", "pgd")

    def __init__(self, input_attack="fgsm", clean_weight=0.0, second_order=False,
                 random_start=True, step_size=None, attack_steps=None, **kwargs):
        if input_attack not in self.INPUT_ATTACKS:
            raise ValueError(
                f"input_attack must be one of {self.INPUT_ATTACKS}, got {input_attack!r}.")
        if not 0.0 <= float(clean_weight) <= 1.0:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}.")
        self.input_attack = input_attack
        self.default_step_size = 1.25 if input_attack == "fgsm" else 0.25
        if attack_steps is None:
            attack_steps = 1 if input_attack == "fgsm" else 10
        super().__init__(step_size=step_size, attack_steps=attack_steps, **kwargs)
        self.clean_weight = float(clean_weight)
        self.second_order = bool(second_order)
        self.random_start = bool(random_start)

    def get_config(self):
        return {
            **super().get_config(),
            "input_attack": self.input_attack,
            "clean_weight": self.clean_weight,
            "second_order": self.second_order,
            "random_start": self.random_start,
        }

    @property
    def cost(self):
        return 2 if self.input_attack == "fgsm" else self.attack_steps + 1

    def gradients(self, model, x, y, seed):
        variables = model.trainable_variables
        sites = sgn_layers.sites_of(model)
        perturb_input = any(site.input_site for site in sites)
        forward = _forward_eval(model)

        start = x
        if perturb_input and self.random_start:
            start = replica_random_start(x, self.epsilon, self.norm, seed)
        if perturb_input and self.input_attack == "pgd":
            start = self._perturb(forward, x, y, start, step_size=self.step_size,
                                  steps=self.attack_steps - 1)

        want_pass_one_weights = self.clean_weight > 0.0 and not self.second_order
        with tf.GradientTape() as tape:
            # First order: pass 1 is not recorded by the weight tape.
            with (tape.stop_recording() if not self.second_order
                  else contextlib.nullcontext()):
                first = sgn_layers.self_gradient_pass(
                    forward, start, y, variables if want_pass_one_weights else ())
                deltas = sgn_layers.feedback_deltas(
                    sites, first["activations"], first["site_gradients"],
                    stop_gradient=not self.second_order)
            x_feedback = start
            if perturb_input:
                x_feedback = tf.stop_gradient(attacks.project(
                    attacks.ascent_step(start, first["input_gradient"], self.step_size,
                                        self.norm),
                    x, self.epsilon, self.norm))
            with sgn_layers.inject_sites(deltas):
                logits = model(x_feedback, training=True)
            feedback_loss = _mean_ce(y, logits)
            loss = (1.0 - self.clean_weight) * feedback_loss + _regularization(model)
            if self.second_order and self.clean_weight > 0.0:
                loss += self.clean_weight * first["loss"]
            scaled = _scaled_for_gradient(model, loss, x)
        grads = tape.gradient(scaled, variables)
        if want_pass_one_weights:
            weight = self.clean_weight * _global_weight(x)
            optimizer = getattr(model, "optimizer", None)
            weight = optimizer.scale_loss(weight) if optimizer is not None else weight
            grads = [
                g if g1 is None else (g1 * weight if g is None else g + g1 * weight)
                for g, g1 in zip(grads, first["variable_gradients"])
            ]
            loss += self.clean_weight * first["loss"]
        return loss, logits, grads


METHODS = {
    "standard": Standard,
    "fast": Fast,
    "pgd": AdversarialTraining,
    "free": Free,
    "trades": Trades,
    "sgn": SelfGradientTraining,
    "sgn-pgd": functools.partial(SelfGradientTraining, input_attack="pgd"),
}


def list_methods():
    return sorted(METHODS)


def get(method, **kwargs):
    """A training method by name (`standard`, `fast`, `pgd`, `free`, `trades`,
    `sgn`, `sgn-pgd`), configured by `kwargs`; a `TrainingMethod` passes through.

    Example:

    ```python
    method = keras_sgn.methods.get("sgn", epsilon=8/255, clean_weight=0.2)
    ```
    """
    if isinstance(method, TrainingMethod):
        if kwargs:
            raise ValueError("Pass method options either in the TrainingMethod or as "
                             f"keyword arguments, not both (got {sorted(kwargs)}).")
        return method
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown method {method!r}.{hint} Valid methods: {', '.join(list_methods())}.")
    try:
        instance = METHODS[method](**kwargs)
    except TypeError as error:
        raise ValueError(f"Bad option for method {method!r}: {error}") from None
    instance.name = method
    return instance


def serialize(method):
    return {"name": method.name, "config": method.get_config()}


def deserialize(config):
    return get(config["name"], **config["config"])


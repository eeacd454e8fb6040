"""`TrainingMethod`, the contract every training method keeps, and the loss
helpers they share.

Losses are per-replica means; `scaled_for_gradient` turns one into what the
replica differentiates (see `keras_sgn.methods.replicas`).
"""

import tensorflow as tf

from keras_sgn import attacks
from keras_sgn.errors import ArgumentError
from keras_sgn.methods.replicas import global_weight


def mean_cross_entropy(y, logits):
    """Mean cross-entropy of this replica's examples (0 if it got none)."""
    # divide_no_nan: a replica may receive no examples of an uneven last batch.
    losses = attacks.core.cross_entropy_loss(y, logits)
    return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype))


def regularization(model):
    return tf.add_n(model.losses) if model.losses else 0.0


def loss_scale(model, value):
    """`value` times the optimizer's loss scale (mixed precision), if any."""
    optimizer = getattr(model, "optimizer", None)
    return optimizer.scale_loss(value) if optimizer is not None else value


def scaled_for_gradient(model, loss, x):
    """Scale a per-replica mean loss for cross-replica summing (by this
    replica's share of the global batch `x` belongs to) and loss scaling."""
    return loss_scale(model, loss * global_weight(x, loss.dtype))


def eval_forward(model):
    """The model in inference mode (BatchNorm on moving statistics), as attacks run it."""
    return lambda images: model(images, training=False)


def check_option(name, ok, requirement, value):
    """Raise the house error for constructor argument `name` unless `ok`."""
    if not ok:
        raise ArgumentError(f"{name} must be {requirement}. Received: {name}={value!r}.")


class TrainingMethod:
    """Base class: a named recipe for the loss of one batch.

    Args:
        epsilon: threat-model radius in pixel units (8/255 for CIFAR10 L-inf).
        norm: `"linf"` or `"l2"`.
        step_size: attack step; default `default_step_size * epsilon`.
        attack_steps: steps of the inner attack where the method has one.

    Subclasses implement `gradients(model, x, y, seed) -> (loss, logits, grads)`;
    `loss` is the unscaled per-replica mean, `logits` are the ones the training
    accuracy is measured on. A method whose update is not one gradient (Free)
    overrides `step` instead.
    """

    name = None
    description = None  # one sentence, used in model cards and reports
    multi_step = False  # whether the cost grows with `attack_steps`
    # A variant of the reconstruction under study (docs/reproduce/fashion_mnist-variants),
    # not one of the methods of docs/guide.md's "Training methods":
    # `list_methods(variants=False)` leaves it out.
    variant = False
    # Name of the training-accuracy metric: what `logits` of `gradients` are
    # measured on (perturbed inputs for every adversarial method).
    accuracy_name = "adv_accuracy"
    default_step_size = 0.25  # as a fraction of epsilon
    default_attack_steps = 10
    # Constructor arguments beyond the four above: `get_config` returns them
    # from the attributes of the same names.
    options = ()
    # The shared run-configuration fields (keras_sgn.config) this method takes,
    # mapped to its constructor arguments. Its own options (Free-AT's replays...)
    # are declared in keras_sgn.method_options, TF-free, so the tools make flags
    # of them; `registry.run_options(name)` joins both.
    run_options = {"epsilon": "epsilon", "norm": "norm", "step_size": "step_size",
                   "attack_steps": "attack_steps"}
    # Set by SGNModel.compile(jit_compile_attack=...): XLA-compile the inner
    # attack per replica (whole-step XLA fails under multi-device Mirrored).
    jit_compile = False
    # A method with per-example state across epochs: its training batches carry
    # each example's index in the split, `(images, labels, index)`, and `step`
    # takes it as `index=` (`keras_sgn.data.load(..., with_index=True)`).
    keyed_by_example = False

    def __init__(self, epsilon=8 / 255, norm="linf", step_size=None, attack_steps=None):
        attack_steps = self.default_attack_steps if attack_steps is None else attack_steps
        attacks.core.check_attack_args(epsilon, attack_steps, norm, step_size=step_size)
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
            **{option: getattr(self, option) for option in self.options},
        }

    @property
    def cost(self):
        """Forward+backward passes per step, relative to standard training."""
        return 1

    def budget_epochs(self, epochs):
        """Epochs that give this method the compute of `epochs` epochs of the others."""
        return int(epochs)

    def gradients(self, model, x, y, seed):
        raise NotImplementedError

    def perturb(self, forward, x, target, start, **options):
        """`attacks.perturb` in this method's threat model (XLA-compiled if asked)."""
        def run(x, target, start):
            return attacks.core.perturb(forward, x, target, start=start, epsilon=self.epsilon,
                                        norm=self.norm, **options)

        if self.jit_compile:
            run = tf.function(run, jit_compile=True)
        return run(x, target, start)

    def build_state(self, num_examples, example_shape):
        """Create the method's per-example state for a training split of
        `num_examples` examples of shape `example_shape`, under the strategy's
        scope (none here; `keyed_by_example` methods have some)."""

    def save_own_variables(self, store):
        """Put the training state outside the model (per-example state) into
        the dict `store`, as Keras layers do; backups keep it."""

    def load_own_variables(self, store):
        """Restore what `save_own_variables` put into `store`."""

    def step(self, model, x, y, seed):
        """Compute and apply one update; returns `(loss, logits)`."""
        loss, logits, grads = self.gradients(model, x, y, seed)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, logits

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class AttackingMethod(TrainingMethod):
    """A method that runs an inner attack of `attack_steps` steps before its
    update: `attack_steps + 1` forward+backward passes per step."""

    @property
    def cost(self):
        return self.attack_steps + 1

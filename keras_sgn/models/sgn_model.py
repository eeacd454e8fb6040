"""`SGNModel`: a functional Keras model whose `train_step` owns the self-gradient tape."""

import keras
import tensorflow as tf

from keras_sgn import attacks, feedback
from keras_sgn import layers as sgn_layers
from keras_sgn import methods as sgn_methods


def _check_images(x):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(
            f"images (x) must be float32 in [0, 1], got dtype {x.dtype.name}. "
            "Divide uint8 images by 255 (keras_sgn.data does this).")
    message = ("images (x) must be in [0, 1]: divide uint8 images by 255 and keep "
               "mean/std normalisation inside the model (keras_sgn.data does this).")
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(x, tf.cast(0.0, x.dtype), message=message),
        tf.debugging.assert_less_equal(x, tf.cast(1.0, x.dtype), message=message),
    ]):
        return tf.identity(x)


@keras.saving.register_keras_serializable(package="keras_sgn")
class SGNModel(keras.Model):
    """A functional classifier (logits out) trained by a named method.

    Build it like any functional model, placing `keras_sgn.layers.SelfGradient`
    sites between stages, or use a builder of `keras_sgn.models`. `compile`
    selects the training method by name; `fit` then runs it in a custom
    `train_step`, and validation reports `accuracy` and `robust_accuracy`
    (PGD on the validation batch, BatchNorm in inference mode). The training
    accuracy is `adv_accuracy` for methods that train on perturbed inputs
    (measured on those inputs, so it reads lower than `val_accuracy`) and
    `accuracy` for `standard`.

    Args:
        inputs, outputs: as for a functional `keras.Model`; outputs are logits.
        feedback_at_inference: research option. At inference the model runs a
            self-gradient pass against its own predicted label and injects the
            feedback before the final pass. Attacks then differentiate through
            the feedback (nested tapes); evaluate such models with a
            gradient-free attack too.
        feedback_step_size, feedback_epsilon: input-site step and radius of the
            inference-time feedback (0 leaves the input untouched).
        **kwargs: standard `keras.Model` arguments (`name`...).

    Example:

    ```python
    model = keras_sgn.models.get("sgn_small_cnn")
    model.compile(optimizer="adam", method="sgn", epsilon=0.1)
    model.fit(keras_sgn.data.load("digits", "train", batch_size=64), epochs=5,
              validation_data=keras_sgn.data.load("digits", "validation"))
    ```

    Reference:
        Aboutalebi, Shafiee, Wong. "Self-Gradient Networks", arXiv 2011.09364.
    """

    # *args/**kwargs keep Keras treating this class as functional (config,
    # cloning, saving); the SGN options are keyword-only.
    def __init__(self, *args, feedback_at_inference=False, feedback_step_size=0.0,
                 feedback_epsilon=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.feedback_at_inference = bool(feedback_at_inference)
        self.feedback_step_size = float(feedback_step_size)
        self.feedback_epsilon = float(feedback_epsilon)
        self.method = None
        self.attack_seed = 0
        self.eval_steps = 10
        self.eval_restarts = 1
        self.jit_compile_attack = False
        self._loss_metric = keras.metrics.Mean(name="loss")
        self._accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._robust_metric = keras.metrics.SparseCategoricalAccuracy(name="robust_accuracy")

    # -- serialisation ------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            feedback_at_inference=self.feedback_at_inference,
            feedback_step_size=self.feedback_step_size,
            feedback_epsilon=self.feedback_epsilon,
        )
        return config

    # -- inference ----------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        if (not self.feedback_at_inference or training
                or sgn_layers.active_site_mode() is not None):
            return super().call(inputs, training=training, mask=mask)
        return self._call_with_feedback(inputs)

    def _call_with_feedback(self, x):
        """Inference-time self-feedback; differentiable end to end on purpose,
        so attacks go through it."""
        def forward(images):
            return super(SGNModel, self).call(images, training=False)

        x = tf.convert_to_tensor(x)
        first = feedback.self_gradient_pass(forward, x)
        deltas = feedback.feedback_deltas(
            sgn_layers.sites_of(self), first["activations"], first["site_gradients"],
            stop_gradient=False)
        if self.feedback_epsilon > 0 and sgn_layers.has_input_site(self):
            x = attacks.core.project(
                attacks.core.ascent_step(x, first["input_gradient"], self.feedback_step_size,
                                         "linf"),
                x, self.feedback_epsilon, "linf")
        with sgn_layers.inject_sites(deltas):
            return super().call(x, training=False)

    # -- training -----------------------------------------------------------
    def compile(self, optimizer="adam", method="standard", *, seed=0, eval_steps=10,
                eval_restarts=1, jit_compile_attack=False, run_eagerly=False,
                steps_per_execution=1, **method_options):
        """Configure training.

        Args:
            optimizer: a Keras optimizer or its name.
            method: a method name (see `keras_sgn.methods.list_methods()`) or a
                `keras_sgn.methods.TrainingMethod`.
            seed: seed of the attacks' random starts (combined with the step
                counter and the replica id, so each step and replica differ).
            eval_steps, eval_restarts: the validation PGD attack (step epsilon/4,
                random start) behind `robust_accuracy`.
            jit_compile_attack: compile attacks with XLA, per replica. The
                whole step is never XLA-compiled: that fails under multi-device
                `MirroredStrategy`.
            run_eagerly, steps_per_execution: as in `keras.Model.compile`.
            **method_options: the constructor arguments of the method: the
                shared `epsilon`, `norm`, `step_size`, `attack_steps`, and its
                own (`clean_weight`, `replays`...; `keras_sgn.method_options`
                declares which run settings set them).
        """
        self.method = sgn_methods.get(method, **method_options)
        self.method.jit_compile = bool(jit_compile_attack)
        attacks.core.check_attack_args(self.method.epsilon, eval_steps, self.method.norm,
                                       restarts=eval_restarts)
        self.attack_seed = int(seed)
        self.eval_steps = int(eval_steps)
        self.eval_restarts = int(eval_restarts)
        self.jit_compile_attack = bool(jit_compile_attack)
        super().compile(optimizer=optimizer, run_eagerly=run_eagerly,
                        steps_per_execution=steps_per_execution, jit_compile=False)

    def get_compile_config(self):
        if self.method is None or self.optimizer is None:
            return None
        return {
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "method": sgn_methods.serialize(self.method),
            "seed": self.attack_seed,
            "eval_steps": self.eval_steps,
            "eval_restarts": self.eval_restarts,
            "jit_compile_attack": self.jit_compile_attack,
        }

    def compile_from_config(self, config):
        config = dict(config)
        method = sgn_methods.deserialize(config.pop("method"))
        optimizer = keras.optimizers.deserialize(config.pop("optimizer"))
        self.compile(optimizer=optimizer, method=method, **config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self._loss_metric, self._accuracy_metric, self._robust_metric]

    def _step_seed(self, offset=0, per_replica=False):
        """A stateless seed `[attack_seed + offset, step]`, distinct per step.

        By default it is the SAME on every replica: training methods draw a
        random start for the whole global batch from it and each replica keeps
        its own rows (`keras_sgn.methods.replicas.replica_random_start`), so replicas
        draw distinct starts and N replicas train exactly like one replica at
        the same global batch. `per_replica=True` folds the replica id in
        (`+ replica * 7919`) for draws that are not sliced from a global batch
        (validation PGD with several restarts).
        """
        step = tf.cast(self.optimizer.iterations, tf.int32)
        seed = tf.constant(self.attack_seed + offset, tf.int32)
        if per_replica:
            context = tf.distribute.get_replica_context()
            replica = 0 if context is None else context.replica_id_in_sync_group
            seed += tf.cast(replica, tf.int32) * 7919
        return tf.stack([seed, step])

    def _require_compiled(self):
        if self.method is None:
            raise RuntimeError("Call model.compile(optimizer, method=...) before fit/evaluate.")

    def train_step(self, data):
        self._require_compiled()
        # A method keyed by example takes `(images, labels, index)` batches.
        x, y, index = keras.utils.unpack_x_y_sample_weight(data)
        x = _check_images(x)
        keyed = {"index": index} if self.method.keyed_by_example else {}
        with sgn_layers.plain_sites():
            loss, logits = self.method.step(self, x, y, self._step_seed(), **keyed)
        self._loss_metric.update_state(loss, sample_weight=tf.shape(x)[0])
        self._accuracy_metric.update_state(y, logits)
        # Named for what it is measured on: `adv_accuracy` for a method that
        # trains on perturbed inputs, `accuracy` for standard training.
        return {"loss": self._loss_metric.result(),
                self.method.accuracy_name: self._accuracy_metric.result()}

    def test_step(self, data):
        self._require_compiled()
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = _check_images(x)
        logits = self(x, training=False)
        x_adv = self.attack(x, y)
        adv_logits = self(x_adv, training=False)
        # divide_no_nan: a replica may get no example from a small last batch.
        per_example = attacks.core.cross_entropy_loss(y, logits)
        loss = tf.math.divide_no_nan(tf.reduce_sum(per_example),
                                     tf.cast(tf.size(per_example), per_example.dtype))
        self._loss_metric.update_state(loss, sample_weight=tf.shape(x)[0])
        self._accuracy_metric.update_state(y, logits)
        self._robust_metric.update_state(y, adv_logits)
        return {"loss": self._loss_metric.result(), "accuracy": self._accuracy_metric.result(),
                "robust_accuracy": self._robust_metric.result()}

    def attack(self, x, y):
        """The validation attack: PGD-`eval_steps` at the method's epsilon, step
        epsilon/4, random start, keeping each example's worst iterate (an
        example fooled at any step counts as fooled) over every restart.

        With one restart the random start is drawn for the global batch and
        sliced per replica, like in training, so `val_robust_accuracy` does not
        depend on the number of replicas; with several restarts each replica
        draws its own starts (`_step_seed(per_replica=True)`).
        """
        method = self.method
        forward = lambda images: self(images, training=False)  # noqa: E731

        if self.eval_restarts == 1:
            def run(x, y, start):
                x_adv, _, _ = attacks.core.pgd_run(
                    forward, x, y, start=start, epsilon=method.epsilon,
                    step_size=method.epsilon / 4, steps=self.eval_steps, norm=method.norm)
                return x_adv

            randomness = sgn_methods.replicas.replica_random_start(x, method.epsilon, method.norm,
                                                                   self._step_seed(1000))
        else:
            def run(x, y, seed):
                return attacks.core.worst_case_pgd(
                    forward, x, y, epsilon=method.epsilon, step_size=method.epsilon / 4,
                    steps=self.eval_steps, norm=method.norm, restarts=self.eval_restarts,
                    seed=seed)

            randomness = self._step_seed(1000, per_replica=True)

        if self.jit_compile_attack:
            run = tf.function(run, jit_compile=True)
        return run(x, y, randomness)

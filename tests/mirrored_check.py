"""Run by tests/test_distributed.py in a fresh process: splits the CPU into two
logical devices (only possible before TensorFlow initialises) and compares a
2-replica MirroredStrategy with one replica at the same global batch."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_sgn import attacks, data, models, training  # noqa: E402

x, y = next(iter(data.load("digits", "train", batch_size=128, shuffle=False)))
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
methods = {
    "standard": {},
    "pgd": {"random_start": False, "attack_steps": 3},
    "sgn": {"random_start": False},
}


def run(strategy, method):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.get("sgn_small_cnn", width=8, batch_norm=False)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method, epsilon=0.05,
                      eval_steps=3, **methods[method])
    initial = [w.numpy() for w in model.trainable_weights]
    history = model.fit(dataset, epochs=2, verbose=0).history
    evaluation = model.evaluate(dataset, return_dict=True, verbose=0)
    final = [w.numpy() for w in model.trainable_weights]
    change = max(np.abs(a - b).max() for a, b in zip(initial, final))
    return model, final, history, evaluation, float(change)


single = tf.distribute.get_strategy()
mirrored = training.get_strategy("mirrored")
report = {"replicas": mirrored.num_replicas_in_sync, "methods": {}}
for method in methods:
    _, w1, h1, e1, change = run(single, method)
    model, w2, h2, e2, _ = run(mirrored, method)
    report["methods"][method] = {
        "max_weight_difference": float(max(np.abs(a - b).max() for a, b in zip(w1, w2))),
        "max_weight_change": change,
        "loss": [h1["loss"][-1], h2["loss"][-1]],
        "accuracy": [e1["accuracy"], e2["accuracy"]],
        "eval_loss": [e1["loss"], e2["loss"]],
    }


@tf.function
def replica_draws():
    def draw():
        seed = model._step_seed()
        return attacks.random_start(tf.zeros((2, 4)) + 0.5, 0.1, "linf", seed)

    return mirrored.experimental_local_results(mirrored.run(draw))


draws = [d.numpy() for d in replica_draws()]
report["random_starts_differ"] = bool(np.abs(draws[0] - draws[1]).max() > 1e-4)
try:
    training.check_global_batch_size(33, mirrored)
    report["batch_error"] = None
except ValueError as error:
    report["batch_error"] = str(error)
json.dump(report, open(sys.argv[1], "w"))

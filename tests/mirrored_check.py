"""Run by tests/test_distributed.py in a fresh process: splits the CPU into two
logical devices (only possible before TensorFlow initialises) and compares a
2-replica MirroredStrategy with one replica at the same global batch, random
starts included."""

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
from keras_sgn import methods as sgn_methods  # noqa: E402

x, y = next(iter(data.load("digits", "train", batch_size=128, shuffle=False)))
# 120 examples in batches of 32: the last batch (24) splits unevenly over the replicas.
uneven = tf.data.Dataset.from_tensor_slices((x[:120], y[:120])).batch(32)
even = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
# name -> (method, options, dataset, batch_norm, XLA attack); random starts are on
# (the default). BatchNorm runs synchronized under the strategy, as train() does.
runs = {
    "standard": ("standard", {}, even, False, False),
    "pgd": ("pgd", {"attack_steps": 3}, even, False, False),
    "sgn": ("sgn", {}, even, False, False),
    "pgd-uneven": ("pgd", {"attack_steps": 2}, uneven, False, False),
    "sgn-batchnorm": ("sgn", {}, even, True, False),
    "pgd-xla": ("pgd", {"attack_steps": 2}, even, False, True),
}


def run(strategy, name):
    method, options, dataset, batch_norm, xla = runs[name]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.get("sgn_small_cnn", width=8, batch_norm=batch_norm)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method, epsilon=0.05,
                      eval_steps=3, jit_compile_attack=xla, **options)
    if strategy.num_replicas_in_sync > 1:
        training.distribute.synchronize_batch_norm(model)
        training.distribute.prepare_distributed_fit(model, strategy)
    initial = [w.numpy() for w in model.trainable_weights]
    epochs = 2 if name in ("standard", "pgd", "sgn") else 1  # keep the check short
    history = model.fit(dataset, epochs=epochs, verbose=0).history
    evaluation = model.evaluate(dataset, return_dict=True, verbose=0)
    trained = [w.numpy() for w in model.trainable_weights]
    change = max(np.abs(a - b).max() for a, b in zip(initial, trained))
    final = [w.numpy() for w in model.weights]  # BatchNorm moving statistics included
    return model, final, history, evaluation, float(change)


single = tf.distribute.get_strategy()
mirrored = training.get_strategy("mirrored")
report = {"replicas": mirrored.num_replicas_in_sync, "methods": {}}
for name in runs:
    _, w1, h1, e1, change = run(single, name)
    model, w2, h2, e2, _ = run(mirrored, name)
    report["methods"][name] = {
        "max_weight_difference": float(max(np.abs(a - b).max() for a, b in zip(w1, w2))),
        "max_weight_change": change,
        "loss": [h1["loss"][-1], h2["loss"][-1]],
        "accuracy": [e1["accuracy"], e2["accuracy"]],
        "robust_accuracy": [e1["robust_accuracy"], e2["robust_accuracy"]],
        "eval_loss": [e1["loss"], e2["loss"]],
    }

# Each replica keeps its rows of one global draw: distinct per replica, and
# together exactly what one replica draws for the whole batch.
images = tf.random.uniform((6, 4), 0.2, 0.8, seed=1)
seed = tf.constant([5, 9])
global_start = sgn_methods.replicas.replica_random_start(images, 0.1, "linf", seed)


@tf.function
def replica_draws():
    def draw(local):
        return sgn_methods.replicas.replica_random_start(local, 0.1, "linf", seed)

    split = mirrored.experimental_distribute_values_from_function(
        lambda ctx: images[3 * ctx.replica_id_in_sync_group:3 * (ctx.replica_id_in_sync_group + 1)])
    return mirrored.experimental_local_results(mirrored.run(draw, args=(split,)))


draws = [d.numpy() for d in replica_draws()]
noise = [d - images[3 * i:3 * i + 3].numpy() for i, d in enumerate(draws)]
report["random_starts_differ"] = bool(np.abs(noise[0] - noise[1]).max() > 1e-4)
report["random_starts_match_global"] = float(
    np.abs(np.concatenate(draws) - global_start.numpy()).max())
report["single_replica_unchanged"] = float(
    np.abs(global_start.numpy()
           - attacks.core.random_start(images, 0.1, "linf", seed).numpy()).max())
try:
    training.distribute.check_global_batch_size(33, mirrored)
    report["batch_error"] = None
except ValueError as error:
    report["batch_error"] = str(error)
json.dump(report, open(sys.argv[1], "w"))

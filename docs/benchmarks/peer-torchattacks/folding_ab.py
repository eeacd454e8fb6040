"""Our `standard` suite with and without BatchNorm folding, alternating in one process.

    taskset -c 1 python docs/benchmarks/peer-torchattacks/folding_ab.py pgd-cnn-fashion-mnist 500 2

One thread; the first N test images in the original file order; each round evaluates a
fresh copy of the zoo model folded, then unfolded (the folding switched off for the
attacks), after a warm-up that traces the compiled attacks. Prints one JSON line per run:
process CPU seconds, wall seconds, robust accuracy and each attack's wall seconds.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras_sgn  # noqa: E402
from keras_sgn import evaluation  # noqa: E402
from keras_sgn.attacks import folding  # noqa: E402

name, n_examples, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
folded_forward = folding.folded_forward
for round_index in range(rounds):
    for mode in ("folded", "unfolded"):
        folding.folded_forward = folded_forward if mode == "folded" else (lambda model: None)
        model = keras_sgn.load_pretrained(name)  # fresh: its own compiled attacks
        settings = dict(attacks="standard", run_sanity_checks=False, verbose=0, order="original")
        evaluation.evaluate_robustness(model, "fashion_mnist", 0.1, "linf", n_examples=8,
                                       **settings)  # warm-up: tracing
        cpu, wall = time.process_time(), time.time()
        report = evaluation.evaluate_robustness(model, "fashion_mnist", 0.1, "linf",
                                                n_examples=n_examples, **settings)
        print(json.dumps({
            "round": round_index, "mode": mode, "cpu": round(time.process_time() - cpu, 2),
            "wall": round(time.time() - wall, 2), "robust": report["robust_accuracy"],
            "attack_seconds": {k: round(v, 2) for k, v in report["attack_seconds"].items()}}),
            flush=True)

"""Throwaway: the study's training path (keras_sgn.experiments.runs.train_run; when
epoch_times.json was measured, its own loop with the EpochRecorder the variants study
timed with, today a training.train run) for sgn and sgn-align, 4 short epochs each,
wall and CPU seconds per epoch, on one core."""

import json
import sys
import tempfile
import time

import keras

from keras_sgn.config import TrainConfig
from keras_sgn.experiments import runs


class Cpu(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.cpu, self.wall = [], []

    def on_epoch_begin(self, e, logs=None):
        self.c0, self.w0 = time.process_time(), time.perf_counter()

    def on_epoch_end(self, e, logs=None):
        self.cpu.append(round(time.process_time() - self.c0, 2))
        self.wall.append(round(time.perf_counter() - self.w0, 2))


out = {}
for method in sys.argv[1:]:
    cpu = Cpu()
    orig_fit = keras.Model.fit

    def fit(self, *a, callbacks=(), orig_fit=orig_fit, cpu=cpu, **k):
        return orig_fit(self, *a, callbacks=[cpu] + list(callbacks), **k)

    keras.Model.fit = fit
    config = TrainConfig(dataset="fashion_mnist", method=method, epochs=4, n_train=25600, seed=0)
    result = runs.train_run(config, tempfile.mkdtemp(), runs.Validation(n_examples=200),
                            n_test=200)
    keras.Model.fit = orig_fit
    c = [p["train_seconds"] for p in result["curve"]]
    out[method] = {
        "recorder_epoch_seconds": [round(b - a, 2) for a, b in zip([0] + c, c)],
        "wall_seconds": cpu.wall,
        "cpu_seconds": cpu.cpu,
        "steps_per_epoch": 200,
    }
    print(method, out[method], flush=True)
json.dump(out, open("epoch_times.json", "w"), indent=1)

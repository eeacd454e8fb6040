"""Run by tests/test_tuning.py in a fresh process: a tiny random search on a
digits subset that logs every trial's training to a file and can die in the
middle of its N-th trial (os._exit, as a killed machine would), so the test can
check that a resumed search does not train finished trials again.

    python tests/tuning_search.py DIRECTORY MAX_TRIALS FIT_LOG [CRASH_AT_FIT]
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_sgn import training, tuning  # noqa: E402

directory, max_trials, fit_log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
crash_at = int(sys.argv[4]) if len(sys.argv) > 4 else 0


class LoggedHyperModel(tuning.SGNHyperModel):
    calls = 0

    def fit(self, hp, model, *args, **kwargs):
        LoggedHyperModel.calls += 1
        with open(fit_log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "values": hp.values}, sort_keys=True) + "\n")
        if LoggedHyperModel.calls == crash_at:
            os._exit(3)  # dies mid-trial: the oracle has it RUNNING
        return super().fit(hp, model, *args, **kwargs)


config = training.TrainConfig(dataset="digits", epochs=1, n_train=64, n_eval=32, eval_steps=2,
                              verbose=0)
hypermodel = LoggedHyperModel(config, model_kwargs={"width": 8},
                              space={"second_order": False})
tuner = tuning.make_tuner(hypermodel, "random", max_trials=max_trials, directory=directory,
                          project_name="resume", tensorboard=False)
tuning.search(tuner, verbose=0)
tuning.write_outputs(tuner, hypermodel, os.path.join(directory, "out"))
print("done", len(tuner.oracle.trials))

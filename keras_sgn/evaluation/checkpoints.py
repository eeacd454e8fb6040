"""Checkpoints of a long robustness evaluation: one small file per attacked batch.

`evaluate_robustness(..., checkpoint_dir=DIR)` writes atomically, after each
batch, what the report needs of it to `DIR/batch-00012.npz`: per-example masks,
predictions, attack seconds, and no images but the few an `AdversarialExamples`
may show. Run again with the same `DIR`, it reads the stored batches instead of
attacking them: each batch's attacks draw from their own seed, so the report is
that of an uninterrupted run (the timings aside). `DIR/settings.json` holds what
decides the result (a hash of the model's weights, threat model, attacks, seed,
n_examples) and each batch file a hash of its images and labels: other settings
or other data are refused before any attack. Nothing is ever unpickled.
"""

import hashlib
import io
import json
import os
import shutil
import zipfile

import numpy as np

from keras_sgn import io_utils
from keras_sgn.errors import ArgumentError

#: Where `tools/evaluate.py` keeps the checkpoints, inside its --output_dir.
CHECKPOINTS_FOLDER = "checkpoints"
SETTINGS_FILE = "settings.json"
_FIELDS = ("clean", "robust", "per_attack", "attack_labels", "seconds", "clean_predictions",
           "adversarial_predictions", "attacks", "shown_rows", "shown_images", "data_sha256")
_START_OVER = ("Delete the folder to start over (tools/evaluate.py: --noresume), or give "
               "another checkpoint_dir (tools/evaluate.py: another --output_dir).")


def model_fingerprint(model):
    """The model's class and a sha256 of its weights (values, shapes, dtypes)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight))
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return {"class": type(model).__name__, "weights_sha256": digest.hexdigest()}


def _data_sha256(x, y):
    return hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.asarray(y).tobytes()).hexdigest()


def _shown_rows(y, outcome, n):
    """The rows `AdversarialExamples(n).add` may keep: the first n fooled, first n robust."""
    correct = outcome.clean_predictions == y
    fooled = correct & (outcome.adversarial_predictions != y)
    return np.union1d(np.flatnonzero(fooled)[:n], np.flatnonzero(correct & ~fooled)[:n])


def _differences(stored, now, prefix=""):
    """`key: stored X, now Y` for each setting that differs (nested keys dotted)."""
    lines = []
    for key in sorted(set(stored) | set(now)):
        old, new = stored.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: stored {old!r}, now {new!r}")
    return lines


def delete_checkpoints(directory):
    """Remove a checkpoint folder (once the report it led to is written)."""
    shutil.rmtree(directory, ignore_errors=True)


class BatchCheckpoints:
    """The checkpoint folder of one evaluation, with its JSON-ready `settings`;
    a ValueError if the folder holds an evaluation with other settings (or
    batch files without settings.json)."""

    def __init__(self, directory, settings):
        self.directory = str(directory)
        self.settings = json.loads(json.dumps(settings))  # as settings.json holds them
        path = os.path.join(self.directory, SETTINGS_FILE)
        if os.path.exists(path):
            stored = io_utils.read_json_object(path, _START_OVER)
            if stored != self.settings:
                changes = "; ".join(_differences(stored, self.settings))
                raise ArgumentError(
                    f"checkpoint_dir {self.directory!r} holds the checkpoints of another "
                    f"evaluation. Received: other settings ({changes}). " + _START_OVER)
        elif self._batch_files():
            raise ArgumentError(f"checkpoint_dir {self.directory!r} holds batch files but no "
                                f"{SETTINGS_FILE}: they cannot be trusted. " + _START_OVER)
        else:
            io_utils.atomic_write_json(path, self.settings)

    def _batch_files(self):
        names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
        return sorted(n for n in names if n.startswith("batch-") and n.endswith(".npz"))

    def path(self, batch_index):
        return os.path.join(self.directory, f"batch-{batch_index:05d}.npz")

    def _read(self, path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in _FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise io_utils.CorruptFileError(
                f"Checkpoint {path} is corrupt ({type(error).__name__}: {error}). Delete that "
                "file to attack its batch again, or delete its folder to start over.") from error

    def stored_examples(self):
        """How many examples the stored batches hold (every file read and checked)."""
        return sum(len(self._read(os.path.join(self.directory, n))["clean"])
                   for n in self._batch_files())

    def save(self, batch_index, x, y, outcome, shown=0):
        """Store `outcome` (a `BatchOutcome`) of the batch `(x, y)`; `shown`: the
        `n` of the `AdversarialExamples` offered this batch (0: none)."""
        rows = _shown_rows(y, outcome, shown) if shown else np.zeros((0,), np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, clean=outcome.clean, robust=outcome.robust,
                 per_attack=np.asarray(list(outcome.per_attack.values()), bool).reshape(
                     len(outcome.per_attack), len(y)),
                 attack_labels=np.asarray(list(outcome.per_attack), dtype=str),
                 seconds=np.asarray([outcome.seconds[k] for k in outcome.per_attack]),
                 clean_predictions=outcome.clean_predictions,
                 adversarial_predictions=outcome.adversarial_predictions,
                 attacks=np.asarray([str(a) for a in outcome.attacks], dtype=str),
                 shown_rows=rows, shown_images=np.asarray(outcome.adversarial)[rows],
                 data_sha256=np.asarray(_data_sha256(x, y)))
        io_utils.atomic_write_bytes(self.path(batch_index), buffer.getvalue())

    def load(self, batch_index, x, y):
        """The stored outcome of the batch `(x, y)` as `BatchOutcome` keyword
        arguments (None if not stored). A CorruptFileError if the file cannot be
        read, a ValueError if it was written for other images or labels."""
        path = self.path(batch_index)
        if not os.path.exists(path):
            return None
        stored = self._read(path)
        if str(stored["data_sha256"]) != _data_sha256(x, y):
            raise ArgumentError(
                f"Checkpoint {path} was written for other images or labels than batch "
                f"{batch_index} of this dataset. Received: another dataset, split, batch size "
                "or order for the same checkpoint_dir. " + _START_OVER)
        adversarial = np.array(x, copy=True)
        adversarial[stored["shown_rows"]] = stored["shown_images"]
        labels = [str(label) for label in stored["attack_labels"]]
        return dict(clean=stored["clean"], robust=stored["robust"],
                    per_attack=dict(zip(labels, stored["per_attack"])),
                    seconds=dict(zip(labels, stored["seconds"].tolist())),
                    clean_predictions=stored["clean_predictions"],
                    adversarial_predictions=stored["adversarial_predictions"],
                    adversarial=adversarial, attacks=stored["attacks"].astype(object))

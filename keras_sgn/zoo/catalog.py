"""The zoo's catalogue: the entry files of `keras_sgn/zoo_entries/`, validated.

Each entry (docs/zoo-and-hub.md) names the architecture, dataset, threat model,
training recipe (one `tools/train.py` command), the Hub `repo_id` and pinned
40-hex `revision`, the sha256 of every file and the metrics measured by
`tools/evaluate.py`.
"""

import dataclasses
import json
import os
import re
import warnings

from keras_sgn.registry import lookup
from keras_sgn.reporting.tables import markdown_table
from keras_sgn.zoo.errors import InvalidEntryError, UnknownModelError

#: The `keras_sgn/` folder: `package_dir` of an entry is relative to it.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Folder of the zoo entries (`<name>.json`); shipped inside the package.
ENTRIES_DIR = os.path.join(PACKAGE_ROOT, "zoo_entries")
#: Folder of the models shipped inside the package (`<name>/config.json`...).
PRETRAINED_DIR = os.path.join(PACKAGE_ROOT, "pretrained")

#: The files of a published model folder (a Keras directory model + card).
MODEL_FILES = ("config.json", "model.weights.h5", "metadata.json", "README.md")
#: The files `load_pretrained` needs (the card is for people).
LOAD_FILES = ("config.json", "model.weights.h5", "metadata.json")
STATUSES = ("published", "shipped-in-package", "recipe-only")
SCHEMA_VERSION = 1
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED_KEYS = ("name", "status", "dataset", "threat_model", "architecture", "recipe",
                  "repo_id", "revision", "files", "metrics")
_MEASURED_KEYS = ("clean_accuracy", "robust_accuracy", "protocol", "n_examples", "split")


def is_commit_sha(text):
    """Whether `text` is a pinned git commit: 40 lowercase hex digits."""
    return isinstance(text, str) and _COMMIT.fullmatch(text) is not None


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo, as read from `zoo_entries/<name>.json`.

    Attributes:
        name: the zoo name (`load_pretrained(name)`).
        status: `"published"` (on the Hub at a pinned revision),
            `"shipped-in-package"` (files inside `keras_sgn/pretrained/<name>/`)
            or `"recipe-only"` (no weights yet: train and publish it).
        repo_id, revision: the Hub repository and pinned 40-hex commit (None
            until published; `notes` says why).
        files: `{filename: {"sha256": hex, "size": bytes}}` of the model folder.
        metrics: measured by `tools/evaluate.py` (None until measured);
            includes the protocol.
        package_dir: folder (relative to `keras_sgn/`) of the shipped files.
        raw: the whole entry as a dict.
        path: the entry file.
    """

    name: str
    status: str
    dataset: str
    threat_model: dict
    architecture: dict
    recipe: dict
    repo_id: str
    revision: str
    files: dict
    metrics: dict
    package_dir: str
    description: str
    notes: str
    raw: dict
    path: str

    @property
    def available(self):
        """Whether weights exist (published or shipped), i.e. loadable without training."""
        return self.status in ("published", "shipped-in-package")

    @property
    def threat_model_text(self):
        tm = self.threat_model or {}
        eps = tm.get("epsilon_text") or (f"{tm['epsilon']:.4g}" if "epsilon" in tm else "?")
        return f"{tm.get('norm', '?')} eps={eps}"


def _fail(path, message):
    raise InvalidEntryError(f"zoo entry {path}: {message}")


def _check_identity(raw, path):
    """Keys present, the name matches the file, a known status, a pinned revision."""
    if not isinstance(raw, dict):
        _fail(path, "must be a JSON object.")
    for key in _REQUIRED_KEYS:
        if key not in raw:
            _fail(path, f"missing key {key!r}.")
    stem = os.path.splitext(os.path.basename(path))[0]
    if raw["name"] != stem:
        _fail(path, f"name {raw['name']!r} must equal the file name {stem!r}.")
    if raw["status"] not in STATUSES:
        _fail(path, f"status must be one of {STATUSES}, got {raw['status']!r}.")
    revision = raw["revision"]
    if revision is not None and not is_commit_sha(str(revision)):
        _fail(path, f"revision must be a pinned 40-hex commit sha (or null), got {revision!r}.")
    if revision is None and not raw.get("notes"):
        _fail(path, "revision is null: say why in 'notes'.")
    if "train_command" not in (raw["recipe"] or {}):
        _fail(path, "recipe needs a 'train_command' (one tools/train.py command).")


def _check_files(files, path):
    for filename, info in files.items():
        if filename not in MODEL_FILES:
            _fail(path, f"unexpected file {filename!r} (model files: {MODEL_FILES}).")
        if not (isinstance(info, dict) and _SHA256.fullmatch(str(info.get("sha256", "")))
                and isinstance(info.get("size"), int)):
            _fail(path, f"files[{filename!r}] needs a 64-hex 'sha256' and an integer 'size'.")


def _check_status(raw, files, path):
    """What each status promises: hashes and measured metrics, a pin, a shipped folder."""
    status = raw["status"]
    if status in ("published", "shipped-in-package"):
        missing = [f for f in MODEL_FILES if f not in files]
        if missing:
            _fail(path, f"status {status!r} needs the sha256 of every file; missing {missing}.")
        metrics = raw["metrics"] or {}
        for key in _MEASURED_KEYS:
            if key not in metrics:
                _fail(path, f"status {status!r} needs measured metrics with {key!r}.")
    if status == "published" and not (raw["repo_id"] and raw["revision"]):
        _fail(path, "status 'published' needs 'repo_id' and a pinned 'revision'.")
    if status == "shipped-in-package" and not raw.get("package_dir"):
        _fail(path, "status 'shipped-in-package' needs 'package_dir'.")
    package_dir = raw.get("package_dir")
    if package_dir and (os.path.isabs(package_dir)
                        or ".." in package_dir.replace("\\", "/").split("/")):
        _fail(path, f"package_dir must be a folder inside keras_sgn/, got {package_dir!r}.")


def check_entry(raw, path):
    """Validate one entry dict (as read from `path`); return a `ZooEntry`.

    Raises:
        InvalidEntryError: the entry is malformed; the message names the key.
    """
    _check_identity(raw, path)
    files = raw["files"] or {}
    _check_files(files, path)
    _check_status(raw, files, path)
    return ZooEntry(
        name=raw["name"], status=raw["status"], dataset=raw["dataset"],
        threat_model=raw["threat_model"], architecture=raw["architecture"],
        recipe=raw["recipe"], repo_id=raw["repo_id"], revision=raw["revision"], files=files,
        metrics=raw["metrics"], package_dir=raw.get("package_dir"),
        description=raw.get("description", ""), notes=raw.get("notes", ""), raw=raw, path=path)


def read_entry(path):
    """Read and validate one entry file."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except ValueError as error:  # not JSON, or not UTF-8
        raise InvalidEntryError(f"zoo entry {path}: not valid JSON ({error}).") from None
    try:
        return check_entry(raw, path)
    except (AttributeError, KeyError, TypeError) as error:  # a value of the wrong kind
        raise InvalidEntryError(f"zoo entry {path}: a value has the wrong type "
                                f"({type(error).__name__}: {error}).") from None


def read_entries(entries_dir=None):
    """`(valid, invalid)`: `{name: ZooEntry}` of the entry files that are valid, sorted by
    name, and `{file name without .json: InvalidEntryError}` of those that are not."""
    entries_dir = entries_dir or ENTRIES_DIR
    valid, invalid = {}, {}
    for filename in sorted(os.listdir(entries_dir)):
        if filename.endswith(".json"):
            try:
                entry = read_entry(os.path.join(entries_dir, filename))
            except InvalidEntryError as error:
                invalid[filename[:-len(".json")]] = error
            else:
                valid[entry.name] = entry
    return valid, invalid


def entries(entries_dir=None):
    """All valid zoo entries, `{name: ZooEntry}`, sorted by name. An invalid entry file
    is left out with a warning naming it and what is wrong: one damaged file does not
    make the rest of the zoo unusable."""
    valid, invalid = read_entries(entries_dir)
    for error in invalid.values():
        warnings.warn(f"{error} It is left out of the zoo: fix the file or remove it.",
                      stacklevel=2)
    return valid


def get_entry(name, entries_dir=None):
    """The entry called `name`.

    Raises:
        UnknownModelError: no such entry; the message lists close matches.
        InvalidEntryError: the entry file of `name` is malformed (the message names
            the key); the other entries stay usable.
    """
    known, invalid = read_entries(entries_dir)
    if isinstance(name, str) and name in invalid:
        raise invalid[name]
    return lookup(known, name, kind="pretrained model", error=UnknownModelError, cutoff=0.4,
                  advice="See keras_sgn.list_pretrained() for what each one is.")


def list_pretrained(entries_dir=None):
    """The zoo, one dict per model.

    Returns:
        A list of dicts with `name`, `dataset`, `threat_model` (e.g.
        `"linf eps=8/255"`), `clean_accuracy` and `robust_accuracy` (None until
        measured; measured by `tools/evaluate.py`, protocol in the entry),
        `available` (loadable without training) and `status`
        (`published`, `shipped-in-package` or `recipe-only`).

    Example:

    ```python
    print(keras_sgn.zoo.catalog.format_table(keras_sgn.list_pretrained()))
    ```
    """
    rows = []
    for entry in entries(entries_dir).values():
        metrics = entry.metrics or {}
        rows.append({
            "name": entry.name,
            "dataset": entry.dataset,
            "threat_model": entry.threat_model_text,
            "clean_accuracy": metrics.get("clean_accuracy"),
            "robust_accuracy": metrics.get("robust_accuracy"),
            "available": entry.available,
            "status": entry.status,
        })
    return rows


def format_table(rows):
    """`list_pretrained()` rows as a Markdown table."""
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    return markdown_table(
        ["name", "dataset", "threat model", "clean", "robust", "status"],
        [[r["name"], r["dataset"], r["threat_model"], pct(r["clean_accuracy"]),
          pct(r["robust_accuracy"]), r["status"]] for r in rows])

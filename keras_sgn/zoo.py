"""The model zoo: pretrained SGN classifiers, pinned, checksummed, loaded safely.

```python
import keras_sgn
for row in keras_sgn.list_pretrained():
    print(row["name"], row["clean_accuracy"], row["robust_accuracy"], row["status"])
model = keras_sgn.load_pretrained("sgn-cnn-digits")   # ships inside the package
```

Entries (DESIGN section 5) are the JSON files of `keras_sgn/zoo_entries/`, one per
model. They ship inside the package, so a non-editable install reads them. Each
names the architecture, dataset, threat model, training recipe (one
`tools/train.py` command), the Hub `repo_id` and pinned 40-hex `revision`,
the sha256 of every file and the metrics measured by `tools/evaluate.py`.

`load_pretrained` downloads with `huggingface_hub.hf_hub_download` at the
pinned commit (so a cached copy is used with no request at all), checks the
sha256 of every file *before* building anything, builds the model from
`config.json` with Keras `safe_mode=True` and loads `model.weights.h5` (HDF5:
no pickle anywhere). A file that fails its checksum is deleted from the cache
so it is never reused. Small models (`sgn-cnn-digits`) ship inside the package
and load with no network.
"""

import dataclasses
import difflib
import hashlib
import json
import logging
import os
import re
import time
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Folder of the zoo entries (`<name>.json`); shipped inside the package.
ENTRIES_DIR = os.path.join(_HERE, "zoo_entries")
#: Folder of the models shipped inside the package (`<name>/config.json`...).
PRETRAINED_DIR = os.path.join(_HERE, "pretrained")

#: The files of a published model folder (a Keras directory model + card).
MODEL_FILES = ("config.json", "model.weights.h5", "metadata.json", "README.md")
#: The files `load_pretrained` needs (the card is for people).
LOAD_FILES = ("config.json", "model.weights.h5", "metadata.json")
STATUSES = ("published", "shipped-in-package", "recipe-only")
SCHEMA_VERSION = 1
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)
_MAX_BACKOFF = 8.0

logger = logging.getLogger(__name__)

__all__ = [
    "ChecksumMismatchError",
    "DownloadError",
    "FileMissingOnHubError",
    "HubServerError",
    "HubUnreachableError",
    "InvalidEntryError",
    "NotPublishedError",
    "UnknownModelError",
    "ZooEntry",
    "ZooError",
    "format_table",
    "get_entry",
    "list_pretrained",
    "load_pretrained",
    "sha256_file",
]


# ---------------------------------------------------------------------------
# Errors: one class per thing that can go wrong, each with what to do next.


class ZooError(Exception):
    """Base class of the model zoo's errors."""


class UnknownModelError(ZooError, ValueError):
    """No zoo entry has this name (the message lists close matches)."""


class InvalidEntryError(ZooError, ValueError):
    """A zoo entry file is malformed."""


class NotPublishedError(ZooError):
    """The entry exists but its weights are not published yet (the message
    gives the commands that train, evaluate and publish it)."""


class DownloadError(ZooError, OSError):
    """Base class of the errors met while fetching a model's files."""


class HubUnreachableError(DownloadError, ConnectionError):
    """The Hub cannot be reached (network down, offline mode) and the files
    are not in the local cache."""


class HubServerError(DownloadError):
    """The Hub kept answering with server errors (5xx) after retries with backoff."""


class FileMissingOnHubError(DownloadError, FileNotFoundError):
    """The repository, the pinned revision or a file is not on the Hub (404)."""


class ChecksumMismatchError(DownloadError):
    """A file's size or sha256 differs from the zoo entry (truncated or
    modified). Nothing was loaded; a cached copy was deleted."""


# ---------------------------------------------------------------------------
# Entries.


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


def _check_entry(raw, path):
    """Validate one entry dict; return a `ZooEntry`."""
    if not isinstance(raw, dict):
        _fail(path, "must be a JSON object.")
    for key in ("name", "status", "dataset", "threat_model", "architecture", "recipe",
                "repo_id", "revision", "files", "metrics"):
        if key not in raw:
            _fail(path, f"missing key {key!r}.")
    name, status = raw["name"], raw["status"]
    stem = os.path.splitext(os.path.basename(path))[0]
    if name != stem:
        _fail(path, f"name {name!r} must equal the file name {stem!r}.")
    if status not in STATUSES:
        _fail(path, f"status must be one of {STATUSES}, got {status!r}.")
    revision = raw["revision"]
    if revision is not None and not _COMMIT.fullmatch(str(revision)):
        _fail(path, f"revision must be a pinned 40-hex commit sha (or null), got {revision!r}.")
    if revision is None and not raw.get("notes"):
        _fail(path, "revision is null: say why in 'notes'.")
    files = raw["files"] or {}
    for filename, info in files.items():
        if filename not in MODEL_FILES:
            _fail(path, f"unexpected file {filename!r} (model files: {MODEL_FILES}).")
        if not (isinstance(info, dict) and _SHA256.fullmatch(str(info.get("sha256", "")))
                and isinstance(info.get("size"), int)):
            _fail(path, f"files[{filename!r}] needs a 64-hex 'sha256' and an integer 'size'.")
    if "train_command" not in (raw["recipe"] or {}):
        _fail(path, "recipe needs a 'train_command' (one tools/train.py command).")
    if status in ("published", "shipped-in-package"):
        missing = [f for f in MODEL_FILES if f not in files]
        if missing:
            _fail(path, f"status {status!r} needs the sha256 of every file; missing {missing}.")
        metrics = raw["metrics"] or {}
        for key in ("clean_accuracy", "robust_accuracy", "protocol", "n_examples", "split"):
            if key not in metrics:
                _fail(path, f"status {status!r} needs measured metrics with {key!r}.")
    if status == "published" and not (raw["repo_id"] and revision):
        _fail(path, "status 'published' needs 'repo_id' and a pinned 'revision'.")
    if status == "shipped-in-package" and not raw.get("package_dir"):
        _fail(path, "status 'shipped-in-package' needs 'package_dir'.")
    package_dir = raw.get("package_dir")
    if package_dir and (os.path.isabs(package_dir)
                        or ".." in package_dir.replace("\\", "/").split("/")):
        _fail(path, f"package_dir must be a folder inside keras_sgn/, got {package_dir!r}.")
    return ZooEntry(
        name=name, status=status, dataset=raw["dataset"], threat_model=raw["threat_model"],
        architecture=raw["architecture"], recipe=raw["recipe"], repo_id=raw["repo_id"],
        revision=revision, files=files, metrics=raw["metrics"],
        package_dir=raw.get("package_dir"), description=raw.get("description", ""),
        notes=raw.get("notes", ""), raw=raw, path=path)


def read_entry(path):
    """Read and validate one entry file."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as error:
        raise InvalidEntryError(f"zoo entry {path}: not valid JSON ({error}).") from None
    return _check_entry(raw, path)


def entries(entries_dir=None):
    """All zoo entries, `{name: ZooEntry}`, sorted by name."""
    entries_dir = entries_dir or ENTRIES_DIR
    found = {}
    for filename in sorted(os.listdir(entries_dir)):
        if filename.endswith(".json"):
            entry = read_entry(os.path.join(entries_dir, filename))
            found[entry.name] = entry
    return found


def get_entry(name, entries_dir=None):
    """The entry called `name`.

    Raises:
        UnknownModelError: no such entry; the message lists close matches.
    """
    known = entries(entries_dir)
    if name in known:
        return known[name]
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown pretrained model {name!r}.{hint} Available: {sorted(known)} "
        "(see keras_sgn.list_pretrained()).")


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
    print(keras_sgn.zoo.format_table(keras_sgn.list_pretrained()))
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

    lines = ["| name | dataset | threat model | clean | robust | status |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['dataset']} | {r['threat_model']} | "
              f"{pct(r['clean_accuracy'])} | {pct(r['robust_accuracy'])} | {r['status']} |"
              for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Integrity.


def sha256_file(path, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _evict(path):
    """Delete a cached file: the snapshot link and the blob it points to."""
    removed = []
    for target in {os.path.realpath(path), path}:
        try:
            if os.path.lexists(target):
                os.remove(target)
                removed.append(target)
        except OSError as error:  # a read-only cache: say so, still refuse
            logger.warning("could not delete bad cached file %s: %s", target, error)
    return removed


def _verify(entry, filename, path, where, evict):
    """Raise `ChecksumMismatchError` unless `path` matches the entry."""
    expected = entry.files[filename]
    size = os.path.getsize(path)
    if size != expected["size"]:
        problem = (f"has {size} bytes, expected {expected['size']}"
                   + (" (truncated)" if size < expected["size"] else ""))
    else:
        actual = sha256_file(path)
        if actual == expected["sha256"]:
            return
        problem = f"sha256 {actual}, expected {expected['sha256']} (modified)"
    action = (f"The cached copy was deleted ({path}); the next call downloads it again."
              if evict and _evict(path) else
              "Nothing was loaded." if evict else
              "The installed package is damaged: reinstall keras-sgn.")
    raise ChecksumMismatchError(
        f"{entry.name}: {filename} from {where} failed verification: {problem}. "
        f"Refusing to load it. {action}")


# ---------------------------------------------------------------------------
# Download.


def _hub_errors():
    from huggingface_hub import errors

    def cls(name):
        return getattr(errors, name, None) or type(name, (Exception,), {})

    return {name: cls(name) for name in (
        "RemoteEntryNotFoundError", "EntryNotFoundError", "RevisionNotFoundError",
        "RepositoryNotFoundError", "GatedRepoError", "LocalEntryNotFoundError",
        "HfHubHTTPError", "OfflineModeIsEnabled", "FileMetadataError")}


def _transport_errors():
    try:
        import httpx2 as httpx
    except ImportError:
        try:
            import httpx
        except ImportError:
            return (ConnectionError, TimeoutError)
    return (httpx.TransportError, ConnectionError, TimeoutError)


def _status(error):
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _causes(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _download_file(entry, filename, revision, *, cache_dir, local_files_only, endpoint,
                   token, max_retries, backoff):
    """`hf_hub_download` with clear errors and bounded exponential backoff.

    `hf_hub_download` itself retries the metadata request (HEAD) with backoff
    when the server fails and nothing is cached; this loop adds retries for
    what it does not retry: 5xx on the download itself, dropped connections
    and truncated transfers.
    """
    from huggingface_hub import constants, hf_hub_download

    from keras_sgn import __version__

    e = _hub_errors()
    transport = _transport_errors()
    where = f"{entry.repo_id}@{revision} ({filename})"
    delay = backoff
    for attempt in range(max_retries + 1):
        retry_error = None
        try:
            return hf_hub_download(
                entry.repo_id, filename, revision=revision, cache_dir=cache_dir,
                local_files_only=local_files_only, endpoint=endpoint, token=token,
                library_name="keras-sgn", library_version=__version__)
        except (e["RemoteEntryNotFoundError"], e["EntryNotFoundError"]) as error:
            if isinstance(error, e["LocalEntryNotFoundError"]):
                raise _not_cached(entry, where, error, local_files_only, constants, e) from error
            raise FileMissingOnHubError(
                f"{entry.name}: {filename} is not in {entry.repo_id} at revision {revision} "
                "(HTTP 404). The zoo entry pins files the Hub does not have: report it, or "
                "pass revision= for another commit.") from error
        except e["RevisionNotFoundError"] as error:
            raise FileMissingOnHubError(
                f"{entry.name}: revision {revision} does not exist in {entry.repo_id} "
                "(HTTP 404).") from error
        except (e["RepositoryNotFoundError"], e["GatedRepoError"]) as error:
            raise FileMissingOnHubError(
                f"{entry.name}: repository {entry.repo_id} not found, or private/gated and "
                "no valid token was sent (log in with `hf auth login` or set HF_TOKEN)."
            ) from error
        except e["HfHubHTTPError"] as error:
            if _status(error) not in _RETRY_STATUS:
                raise DownloadError(f"{entry.name}: downloading {where} failed: {error}") from error
            retry_error = error
        except transport as error:
            retry_error = error
        except OSError as error:
            if "Consistency check failed" not in str(error):
                raise
            retry_error = error  # size differs from the announced one: truncated transfer
        if attempt < max_retries:
            logger.warning("%s: %s; retrying in %.2gs (%d/%d)", where,
                           type(retry_error).__name__, delay, attempt + 1, max_retries)
            time.sleep(delay)
            delay = min(_MAX_BACKOFF, delay * 2)
    tries = f"after {max_retries + 1} attempts with exponential backoff"
    if isinstance(retry_error, e["HfHubHTTPError"]):
        raise HubServerError(
            f"{entry.name}: the Hub answered HTTP {_status(retry_error)} for {where} {tries}. "
            "The server is having trouble: try again later.") from retry_error
    if isinstance(retry_error, transport):
        raise HubUnreachableError(
            f"{entry.name}: the connection to the Hub failed for {where} {tries}: "
            f"{retry_error}") from retry_error
    raise ChecksumMismatchError(
        f"{entry.name}: {where} kept arriving truncated {tries}; nothing was loaded.") \
        from retry_error


def _not_cached(entry, where, error, local_files_only, constants, e):
    """Map hf's `LocalEntryNotFoundError` (no usable response, no cache) to ours."""
    causes = _causes(error)
    offline = local_files_only or constants.is_offline_mode() or any(
        isinstance(c, e["OfflineModeIsEnabled"]) for c in causes)
    if offline:
        return HubUnreachableError(
            f"{entry.name}: {where} is not in the local cache and downloads are disabled "
            f"({'local_files_only=True' if local_files_only else 'HF_HUB_OFFLINE=1'}). "
            "Load it once with network access, or point cache_dir= at a cache that has it.")
    for cause in causes:
        status = _status(cause)
        if isinstance(cause, e["HfHubHTTPError"]) and status in _RETRY_STATUS:
            return HubServerError(
                f"{entry.name}: the Hub answered HTTP {status} for {where} after retries with "
                "exponential backoff, and no cached copy exists. Try again later.")
        if isinstance(cause, e["FileMetadataError"]):
            return HubUnreachableError(
                f"{entry.name}: the endpoint answering for {where} does not behave like the "
                f"Hugging Face Hub ({cause}). Check HF_ENDPOINT, proxy and firewall settings.")
    return HubUnreachableError(
        f"{entry.name}: cannot reach the Hub for {where} (network down?) and it is not in the "
        "local cache. Connect once to download it (it is then used offline), or set "
        "HF_ENDPOINT to a reachable mirror.")


# ---------------------------------------------------------------------------
# Loading.


def _not_published(entry):
    recipe = entry.recipe
    steps = [recipe["train_command"]]
    steps += [recipe[k] for k in ("evaluate_command", "publish_command") if recipe.get(k)]
    return NotPublishedError(
        f"{entry.name} is not published yet (status {entry.status!r}: {entry.notes}). "
        "Train, evaluate and publish it with:\n  " + "\n  ".join(steps))


def build_from_files(config_path, weights_path):
    """Build a model from a Keras `config.json` in safe mode and load its
    `model.weights.h5`. The model comes back uncompiled."""
    import keras

    import keras_sgn  # noqa: F401  (registers the custom objects)

    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if not (isinstance(config, dict) and "class_name" in config and "config" in config):
        raise ZooError(f"{config_path} is not a Keras model config.")
    config["compile_config"] = None  # inference model: never rebuild an optimizer
    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise ZooError(f"{config_path} describes a {type(model).__name__}, not a model.")
    model.load_weights(weights_path)
    return model


def load_pretrained(name, revision=None, cache_dir=None, local_files_only=False, *,
                    endpoint=None, token=None, max_retries=3, backoff=0.5,
                    entries_dir=None):
    """Load a pretrained model of the zoo, verified, ready for inference.

    Args:
        name: a zoo name (`list_pretrained()`), or a `ZooEntry`.
        revision: a Hub commit to load instead of the entry's pinned one. Files
            of another revision cannot be checked against the entry's sha256:
            a warning says so. Default: the pinned revision (or, for models
            shipped in the package, the shipped files).
        cache_dir: Hugging Face cache folder (default: `HF_HUB_CACHE`).
        local_files_only: never touch the network; use the cache
            (`HF_HUB_OFFLINE=1` does the same). Files already cached at the pinned
            commit are used without any request anyway.
        endpoint: Hub URL (default: `HF_ENDPOINT` or huggingface.co).
        token: Hub token for private repos (default: `HF_TOKEN` or the login).
        max_retries, backoff: retries (and first wait, seconds, doubling) on
            server errors, dropped connections and truncated downloads.
        entries_dir: read entries from this folder instead of the package's.

    Returns:
        An uncompiled Keras model (an `SGNModel`) returning logits for float32
        images in [0, 1]; normalisation is inside the model.

    Raises:
        UnknownModelError: no such name (close matches listed).
        NotPublishedError: weights not published yet (commands to make them given).
        HubUnreachableError: network down or offline, and not cached.
        HubServerError: the Hub kept failing (5xx) after retries.
        FileMissingOnHubError: repository, revision or file not on the Hub.
        ChecksumMismatchError: a file is truncated or modified; nothing is
            loaded and the bad cached file is deleted.

    Example:

    ```python
    model = keras_sgn.load_pretrained("sgn-cnn-digits")
    logits = model.predict(images)   # images: float32 in [0, 1], shape (n, 8, 8, 1)
    ```
    """
    entry = name if isinstance(name, ZooEntry) else get_entry(name, entries_dir)
    if entry.status == "recipe-only" and revision is None:
        raise _not_published(entry)
    if revision is None and entry.package_dir:
        folder = os.path.join(_HERE, entry.package_dir)
        paths = {f: os.path.join(folder, f) for f in LOAD_FILES}
        for filename, path in paths.items():
            if not os.path.exists(path):
                raise ChecksumMismatchError(
                    f"{entry.name}: shipped file {path} is missing: the installed package is "
                    "incomplete; reinstall keras-sgn.")
            _verify(entry, filename, path, "the package", evict=False)
        return build_from_files(paths["config.json"], paths["model.weights.h5"])

    pinned = entry.revision
    if revision is None:
        if pinned is None:
            raise _not_published(entry)
        revision = pinned
    verify = revision == pinned
    if not verify:
        warnings.warn(
            f"{entry.name}: loading revision {revision!r}, not the pinned {pinned!r}; its files "
            "cannot be checked against the zoo entry's sha256 (safe_mode still applies).",
            stacklevel=2)
    if not entry.repo_id:
        raise _not_published(entry)
    paths = {}
    for filename in LOAD_FILES:  # download everything first ...
        paths[filename] = _download_file(
            entry, filename, revision, cache_dir=cache_dir, local_files_only=local_files_only,
            endpoint=endpoint, token=token, max_retries=max_retries, backoff=backoff)
    if verify:  # ... verify everything, then build: never half-loaded
        for filename, path in paths.items():
            _verify(entry, filename, path, f"{entry.repo_id}@{revision}", evict=True)
    return build_from_files(paths["config.json"], paths["model.weights.h5"])

"""`load_pretrained`: a zoo model, verified, built in safe mode, ready for inference."""

import json
import os
import warnings

from keras_sgn.zoo.catalog import LOAD_FILES, PACKAGE_ROOT, ZooEntry, get_entry
from keras_sgn.zoo.download import download_file
from keras_sgn.zoo.errors import ChecksumMismatchError, NotPublishedError, ZooError
from keras_sgn.zoo.integrity import verify_file


def not_published_error(entry):
    """The `NotPublishedError` of `entry`, with the commands that make its weights."""
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


def _load_shipped(entry):
    """The copy inside the installed package: verified, never evicted."""
    folder = os.path.join(PACKAGE_ROOT, entry.package_dir)
    paths = {f: os.path.join(folder, f) for f in LOAD_FILES}
    for filename, path in paths.items():
        if not os.path.exists(path):
            raise ChecksumMismatchError(
                f"{entry.name}: shipped file {path} is missing: the installed package is "
                "incomplete; reinstall keras-sgn.")
        verify_file(entry, filename, path, "the package", evict_bad=False)
    return build_from_files(paths["config.json"], paths["model.weights.h5"])


def _load_from_hub(entry, revision, download_options):
    """Download every file, verify every file (pinned revision only), then build:
    never half-loaded."""
    pinned = entry.revision
    if revision is None:
        if pinned is None:
            raise not_published_error(entry)
        revision = pinned
    verify = revision == pinned
    if not verify:
        warnings.warn(
            f"{entry.name}: loading revision {revision!r}, not the pinned {pinned!r}; its files "
            "cannot be checked against the zoo entry's sha256 (safe_mode still applies).",
            stacklevel=3)
    if not entry.repo_id:
        raise not_published_error(entry)
    paths = {filename: download_file(entry, filename, revision, **download_options)
             for filename in LOAD_FILES}
    if verify:
        for filename, path in paths.items():
            verify_file(entry, filename, path, f"{entry.repo_id}@{revision}", evict_bad=True)
    return build_from_files(paths["config.json"], paths["model.weights.h5"])


def load_pretrained(name, revision=None, cache_dir=None, local_files_only=False, *,
                    endpoint=None, token=None, max_retries=3, backoff=0.5,
                    entries_dir=None):
    """Load a pretrained model of the zoo, verified, ready for inference.

    `load_pretrained` downloads with `huggingface_hub.hf_hub_download` at the
    pinned commit (so a cached copy is used with no request at all), checks the
    sha256 of every file *before* building anything, builds the model from
    `config.json` with Keras `safe_mode=True` and loads `model.weights.h5` (HDF5:
    no pickle anywhere). A file that fails its checksum is deleted from the cache
    so it is never reused. Small models ship inside the package and load with no
    network.

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
        raise not_published_error(entry)
    if revision is None and entry.package_dir:
        return _load_shipped(entry)
    return _load_from_hub(entry, revision, dict(
        cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint,
        token=token, max_retries=max_retries, backoff=backoff))

"""Publishing: upload an exported folder in one commit, check what users will
download, and record the result in the zoo entry."""

import os
import tempfile

from keras_sgn import zoo
from keras_sgn.hub.export import file_info, read_folder
from keras_sgn.hub.metadata import PublishError, check_name, read_json
from keras_sgn.io_utils import atomic_write_json


def check_token(token=None):
    """Refuse to go on without a Hugging Face token (before any work is done).
    The token itself is never printed."""
    import huggingface_hub

    if token is None and huggingface_hub.get_token() is None:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (or "
                           "pass --local_dir to write the folder only).")


def upload_folder(folder, repo_id, *, private=False, revision=None, token=None, endpoint=None,
                  commit_message=None, api=None):
    """Create the repo if needed and upload the folder's model files in one commit.

    Args:
        folder: an exported folder (`export_folder`).
        repo_id: `namespace/name` on the Hub.
        private: create the repository private.
        revision: the branch to commit to (created if needed; default `main`).
        token: a Hub token; default `HF_TOKEN` or the `hf auth login` token.
            It is never printed or logged.
        endpoint: the Hub URL (default `HF_ENDPOINT` or huggingface.co).
        api: an `HfApi`-like object (tests).

    Returns:
        The 40-hex sha of the commit, to pin in the zoo entry.
    """
    from huggingface_hub import HfApi

    from keras_sgn import __version__

    read_folder(folder)  # refuses anything but a complete exported folder
    if api is None:
        check_token(token)
        api = HfApi(endpoint=endpoint, token=token, library_name="keras-sgn",
                    library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=folder, revision=revision,
        allow_patterns=list(zoo.catalog.MODEL_FILES),
        commit_message=commit_message or f"Upload {os.path.basename(folder.rstrip('/'))} "
                                          f"(keras-sgn {__version__})")
    commit = getattr(info, "oid", None)
    if not zoo.catalog.is_commit_sha(commit):
        raise PublishError(f"the Hub did not return a commit sha for the upload (got {commit!r}).")
    return commit


def verify_remote(repo_id, revision, files, *, endpoint=None, token=None):
    """Download the files of `repo_id@revision` into a throwaway cache and check
    their sha256 against `files`: what users will get is what was exported."""
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory() as cache:
        for filename, expected in files.items():
            path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache,
                                   endpoint=endpoint, token=token)
            if zoo.integrity.sha256_file(path) != expected["sha256"]:
                raise PublishError(f"{repo_id}@{revision}/{filename} differs from the export.")


def _still_shipped(existing, files):
    """The entry's `package_dir` if the shipped copy still holds exactly `files`."""
    package_dir = existing.get("package_dir")
    if not package_dir:
        return None
    try:
        if file_info(os.path.join(zoo.catalog.PACKAGE_ROOT, package_dir)) == files:
            return package_dir
    except OSError:
        pass
    return None


def _default_description(metadata):
    return (f"{metadata['architecture']['model']} trained with "
            f"{metadata['recipe']['train_config'].get('method')} on {metadata['dataset']}.")


def record_entry(entry_path, metadata, files, *, status, repo_id=None, revision=None,
                 package_dir=None, notes=None, description=None):
    """Write (or update) a zoo entry from an export and where it went.

    Fields measured or derived from the run (recipe, metrics, hashes,
    architecture) are replaced; a hand-written `description` and `notes` are
    kept unless new ones are given. A shipped copy (`package_dir`) is kept only
    if its files still match `files`. The entry is validated before it is
    written (atomically).
    """
    check_name(metadata["name"], "name")
    existing = read_json(entry_path) if os.path.exists(entry_path) else {}
    if package_dir is None:
        package_dir = _still_shipped(existing, files)
    if status == "published" and revision is None:
        raise PublishError("a published entry needs the pinned revision (commit sha).")
    entry = {
        "schema_version": zoo.catalog.SCHEMA_VERSION,
        "name": metadata["name"],
        "status": status,
        "description": (description or existing.get("description")
                        or _default_description(metadata)),
        "dataset": metadata["dataset"],
        "threat_model": metadata["threat_model"],
        "architecture": metadata["architecture"],
        "recipe": metadata["recipe"],
        "repo_id": repo_id or existing.get("repo_id") or metadata.get("repo_id"),
        "revision": revision,
        "files": files,
        "metrics": metadata["metrics"],
        "package_dir": package_dir,
        "notes": notes if notes is not None else existing.get("notes", ""),
        "versions": metadata.get("versions"),
    }
    if revision is None and existing.get("revision") and existing.get("files") == files:
        entry["revision"] = existing["revision"]  # same files: the old pin still holds them
    if entry["revision"] is None and not entry["notes"]:
        entry["notes"] = ("Not uploaded to the Hub yet, so there is no commit to pin; "
                          "tools/publish.py records it when it uploads.")
    zoo.catalog.check_entry(entry, entry_path)
    atomic_write_json(entry_path, entry)
    return entry

"""Fetching a model's files from the Hub: `hf_hub_download` with clear errors
and bounded exponential backoff.

huggingface_hub is imported inside the functions, when a model is downloaded:
`import keras_sgn` never needs it.
"""

import logging
import time

from keras_sgn.zoo.errors import (
    ChecksumMismatchError,
    DownloadError,
    FileMissingOnHubError,
    HubServerError,
    HubUnreachableError,
)

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
MAX_BACKOFF = 8.0

logger = logging.getLogger("keras_sgn.zoo")


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


def _not_cached(entry, where, error, local_files_only, e):
    """Map hf's `LocalEntryNotFoundError` (no usable response, no cache) to ours."""
    from huggingface_hub import constants

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
        if isinstance(cause, e["HfHubHTTPError"]) and status in RETRY_STATUS:
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


# What a 404 means, by huggingface_hub error class, most specific first.
_NOT_FOUND = (
    (("RevisionNotFoundError",), "revision {revision} does not exist in {repo_id} (HTTP 404)."),
    (("RepositoryNotFoundError", "GatedRepoError"),
     "repository {repo_id} not found, or private/gated and no valid token was sent (log in "
     "with `hf auth login` or set HF_TOKEN)."),
    (("RemoteEntryNotFoundError", "EntryNotFoundError"),
     "{filename} is not in {repo_id} at revision {revision} (HTTP 404). The zoo entry pins "
     "files the Hub does not have: report it, or pass revision= for another commit."),
)


def _missing(entry, filename, revision, error, local_files_only, e):
    """The error for a 404-like answer (or, for a cache miss, `_not_cached`'s)."""
    if isinstance(error, e["LocalEntryNotFoundError"]):
        where = f"{entry.repo_id}@{revision} ({filename})"
        return _not_cached(entry, where, error, local_files_only, e)
    message = next(text for names, text in _NOT_FOUND
                   if isinstance(error, tuple(e[name] for name in names)))
    return FileMissingOnHubError(f"{entry.name}: " + message.format(
        revision=revision, repo_id=entry.repo_id, filename=filename))


def _gave_up(entry, where, retry_error, attempts, e, transport):
    """The error after the last retry of a transient failure."""
    tries = f"after {attempts} attempts with exponential backoff"
    if isinstance(retry_error, e["HfHubHTTPError"]):
        return HubServerError(
            f"{entry.name}: the Hub answered HTTP {_status(retry_error)} for {where} {tries}. "
            "The server is having trouble: try again later.")
    if isinstance(retry_error, transport):
        return HubUnreachableError(
            f"{entry.name}: the connection to the Hub failed for {where} {tries}: "
            f"{retry_error}")
    return ChecksumMismatchError(
        f"{entry.name}: {where} kept arriving truncated {tries}; nothing was loaded.")


def download_file(entry, filename, revision, *, cache_dir, local_files_only, endpoint,
                  token, max_retries, backoff):
    """`hf_hub_download` with clear errors and bounded exponential backoff.

    `hf_hub_download` itself retries the metadata request (HEAD) with backoff
    when the server fails and nothing is cached; this loop adds retries for
    what it does not retry: 5xx on the download itself, dropped connections
    and truncated transfers.
    """
    from huggingface_hub import hf_hub_download

    from keras_sgn import __version__

    e = _hub_errors()
    transport = _transport_errors()
    not_found = tuple(e[name] for names, _ in _NOT_FOUND for name in names)
    where = f"{entry.repo_id}@{revision} ({filename})"
    delay, retry_error = backoff, None
    for attempt in range(max_retries + 1):
        try:
            return hf_hub_download(
                entry.repo_id, filename, revision=revision, cache_dir=cache_dir,
                local_files_only=local_files_only, endpoint=endpoint, token=token,
                library_name="keras-sgn", library_version=__version__)
        except not_found as error:
            raise _missing(entry, filename, revision, error, local_files_only, e) from error
        except e["HfHubHTTPError"] as error:
            if _status(error) not in RETRY_STATUS:
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
            delay = min(MAX_BACKOFF, delay * 2)
    raise _gave_up(entry, where, retry_error, max_retries + 1, e, transport) from retry_error

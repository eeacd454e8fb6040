"""The model zoo's errors: one class per thing that can go wrong, each message
saying what to do next."""

from keras_sgn.errors import UserError


class ZooError(UserError):
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

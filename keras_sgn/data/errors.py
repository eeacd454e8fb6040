"""The two ways loading real data can fail: the data is nowhere, or a copy of it is damaged."""

from keras_sgn.errors import UserError


class DatasetNotAvailableError(UserError, FileNotFoundError):
    """A dataset is not on this machine and was not downloaded (no network, or
    ``download=False``).

    The message lists every place that was looked in and the ways to get the data.
    ``command_line`` (when set) says the same on one line in command-line flag terms
    (``--data_dir``, ``--dataset=...``); the tools print that instead."""

    def __init__(self, message, *, command_line=None):
        super().__init__(message)
        self.command_line = command_line


class DatasetIntegrityError(UserError, ValueError):
    """A copy of a dataset (found or downloaded) is truncated, altered or not in the expected
    format.

    The message names the file and says how to replace it. Nothing of a damaged copy is
    loaded: the files are checked in full before any array is returned."""

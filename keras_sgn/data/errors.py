"""The two ways loading real data can fail: the data is nowhere, or a copy of it is damaged."""


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset is not on this machine (keras_sgn never downloads data).

    The message lists every place that was looked in and the ways to get the data."""


class DatasetIntegrityError(ValueError):
    """A copy of a dataset was found but is truncated, altered or not in the expected format.

    The message names the file and says how to replace it. Nothing of a damaged copy is
    loaded: the files are checked in full before any array is returned."""

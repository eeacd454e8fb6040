"""The model zoo: pretrained SGN classifiers, pinned, checksummed, loaded safely.

```python
import keras_sgn
for row in keras_sgn.list_pretrained():
    print(row["name"], row["clean_accuracy"], row["robust_accuracy"], row["status"])
model = keras_sgn.load_pretrained("sgn-cnn-digits")   # ships inside the package
```

Entries (docs/zoo-and-hub.md) are the JSON files of `keras_sgn/zoo_entries/`, one per
model. They ship inside the package, so a non-editable install reads them. Each
names the architecture, dataset, threat model, training recipe (one
`tools/train.py` command), the Hub `repo_id` and pinned 40-hex `revision`,
the sha256 of every file and the metrics measured by `tools/evaluate.py`.

`load_pretrained` downloads at the pinned commit, checks the sha256 of every
file *before* building anything and builds with Keras `safe_mode=True`.

Modules: `catalog` (entries, validation, listing), `loading` (`load_pretrained`),
`download` (the Hub, retries, errors), `integrity` (sha256), `errors`. Importing
the zoo imports only the standard library; huggingface_hub is imported when a
model is downloaded.
"""

# Loaded so that `zoo.<module>.<name>` works after importing the package.
from keras_sgn.zoo import integrity, loading  # noqa: F401
from keras_sgn.zoo.catalog import ZooEntry, entries, get_entry
from keras_sgn.zoo.errors import (
    ChecksumMismatchError,
    DownloadError,
    FileMissingOnHubError,
    HubServerError,
    HubUnreachableError,
    InvalidEntryError,
    NotPublishedError,
    UnknownModelError,
    ZooError,
)

__all__ = [
    "ZooEntry",
    "ZooError",
    "UnknownModelError",
    "ChecksumMismatchError",
    "DownloadError",
    "FileMissingOnHubError",
    "HubServerError",
    "HubUnreachableError",
    "InvalidEntryError",
    "NotPublishedError",
    "entries",
    "get_entry",
]

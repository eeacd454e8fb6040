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

from keras_sgn.zoo.catalog import (
    ENTRIES_DIR,
    LOAD_FILES,
    MODEL_FILES,
    PACKAGE_ROOT,
    PRETRAINED_DIR,
    SCHEMA_VERSION,
    STATUSES,
    ZooEntry,
    check_entry,
    entries,
    format_table,
    get_entry,
    is_commit_sha,
    list_pretrained,
    read_entry,
)
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
from keras_sgn.zoo.integrity import sha256_file
from keras_sgn.zoo.loading import build_from_files, load_pretrained

__all__ = [
    "ENTRIES_DIR",
    "LOAD_FILES",
    "MODEL_FILES",
    "PACKAGE_ROOT",
    "PRETRAINED_DIR",
    "SCHEMA_VERSION",
    "STATUSES",
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
    "build_from_files",
    "check_entry",
    "entries",
    "format_table",
    "get_entry",
    "is_commit_sha",
    "list_pretrained",
    "load_pretrained",
    "read_entry",
    "sha256_file",
]

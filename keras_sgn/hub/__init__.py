"""Export a training run as a Hub model folder, write its model card, publish it.

The folder (docs/zoo-and-hub.md) is a valid Keras directory model plus a card:

* `config.json`: the uncompiled inference model (Keras 3 format);
* `model.weights.h5`: its weights, no optimizer state;
* `metadata.json`: Keras' own keys plus versions, parameter count, the training
  recipe and the metrics measured by `tools/evaluate.py` (with the protocol);
* `README.md`: the model card, with `model-index` eval results.

So `keras.saving.load_model("hf://<repo_id>")` works once `keras_sgn` is imported,
and `keras_sgn.load_pretrained(name)` loads it verified against the zoo entry.

```python
result = keras_sgn.hub.export_folder("runs/digits", "export/sgn-cnn-digits",
                                     name="sgn-cnn-digits", report="runs/digits/eval")
commit = keras_sgn.hub.upload_folder("export/sgn-cnn-digits", "me/sgn-cnn-digits")
keras_sgn.hub.record_entry("keras_sgn/zoo_entries/sgn-cnn-digits.json", result["metadata"],
                           result["files"], status="published", repo_id="me/sgn-cnn-digits",
                           revision=commit)
```

Modules: `metadata` (metadata.json, metrics, reproduce commands), `card` (the
card's Hub metadata; its text is `keras_sgn.reporting.model_card`), `export`
(the folder), `upload` (upload, verify, record the zoo entry).
`tools/publish.py` does all of this from the command line.
"""

from keras_sgn.hub.card import card_front_matter, method_description, model_card
from keras_sgn.hub.export import check_reload, export_folder, file_info, read_folder
from keras_sgn.hub.metadata import (
    DEFAULT_NAMESPACE,
    FORMAT,
    PublishError,
    attack_suite,
    build_metadata,
    check_name,
    default_name,
    describe_model,
    epsilon_text,
    evaluate_command,
    json_safe,
    metrics_from_report,
    read_report,
    read_run,
    train_command,
    training_block,
)
from keras_sgn.hub.upload import check_token, record_entry, upload_folder, verify_remote
from keras_sgn.reporting.model_card import DATASET_NAMES, PAPER, wilson_interval

__all__ = [
    "DATASET_NAMES",
    "DEFAULT_NAMESPACE",
    "FORMAT",
    "PAPER",
    "PublishError",
    "attack_suite",
    "build_metadata",
    "card_front_matter",
    "check_name",
    "check_token",
    "default_name",
    "check_reload",
    "describe_model",
    "epsilon_text",
    "evaluate_command",
    "export_folder",
    "file_info",
    "json_safe",
    "method_description",
    "metrics_from_report",
    "model_card",
    "read_folder",
    "read_report",
    "read_run",
    "record_entry",
    "train_command",
    "training_block",
    "upload_folder",
    "verify_remote",
    "wilson_interval",
]

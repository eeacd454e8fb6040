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
keras_sgn.hub.upload.record_entry("keras_sgn/zoo_entries/sgn-cnn-digits.json", result["metadata"],
                           result["files"], status="published", repo_id="me/sgn-cnn-digits",
                           revision=commit)
```

Modules: `metadata` (metadata.json, metrics, reproduce commands), `card` (the
card's Hub metadata; its text is `keras_sgn.reporting.model_card`), `export`
(the folder), `upload` (upload, verify, record the zoo entry).
`tools/publish.py` does all of this from the command line.
"""

from keras_sgn.hub.card import model_card
from keras_sgn.hub.export import export_folder
from keras_sgn.hub.metadata import PublishError
from keras_sgn.hub.upload import upload_folder, verify_remote

__all__ = [
    "PublishError",
    "export_folder",
    "upload_folder",
    "model_card",
    "verify_remote",
]

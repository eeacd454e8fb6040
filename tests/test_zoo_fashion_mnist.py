"""The Fashion-MNIST zoo models shipped in the package: they load offline and
reproduce their cards' clean accuracy on all 10,000 test images exactly."""

import json
import os

import numpy as np
import pytest

import keras_sgn
from keras_sgn import data, zoo
from tests.helpers import collect

SHIPPED = ("sgn-cnn-fashion-mnist", "pgd-cnn-fashion-mnist", "pgd-lenet-fashion-mnist")


def _test_split():
    return collect(data.load("fashion_mnist", "test", batch_size=2000, shuffle=False))


@pytest.mark.real_data("fashion_mnist")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_fashion_mnist_model_reproduces_its_card(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = zoo.get_entry(name)
    assert entry.dataset == "fashion_mnist" and entry.metrics["n_examples"] == 10_000
    model = keras_sgn.load_pretrained(name)
    x, y = _test_split()
    predictions = np.argmax(model.predict(x, batch_size=1000, verbose=0), axis=-1)
    accuracy = float(np.mean(predictions == y))
    assert len(y) == 10_000
    assert accuracy == pytest.approx(entry.metrics["clean_accuracy"], abs=1e-9)
    card = open(os.path.join(zoo.catalog.PRETRAINED_DIR, name, "README.md")).read()
    assert f"| clean | {100 * accuracy:.2f}% |" in card
    # The robust number is a strong suite's (at least APGD-CE + APGD-T), with its protocol.
    names = [a["name"] for a in entry.metrics["protocol"]["attacks"]]
    assert {"apgd-ce", "apgd-t"} <= set(names)
    assert entry.metrics["robust_accuracy"] < accuracy


def test_fashion_mnist_entries_record_the_recipe_and_the_training_time():
    for name in SHIPPED:
        raw = json.load(open(zoo.get_entry(name).path))
        assert "--dataset=fashion_mnist" in raw["recipe"]["train_command"]
        assert f"--model={raw['architecture']['model']}" in raw["recipe"]["train_command"]
        metadata = json.load(open(os.path.join(zoo.catalog.PRETRAINED_DIR, name, "metadata.json")))
        assert metadata["training"]["train_seconds"] > 0

"""keras_sgn.evaluate_pretrained: a zoo model on its own dataset and threat model, in one line."""

import json

import pytest
from huggingface_hub import constants as hf_constants

import keras_sgn
from keras_sgn import zoo
from keras_sgn.attacks import parse_attacks


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # the shipped model needs none


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_evaluate_pretrained_uses_the_entry_and_writes_the_report(tmp_path):
    entry = zoo.get_entry("sgn-cnn-digits")
    report = keras_sgn.evaluate_pretrained(
        "sgn-cnn-digits", attacks="pgd-ce:steps=3", n_examples=24, run_sanity_checks=False,
        verbose=False, output_dir=str(tmp_path))
    assert (report["model"], report["dataset"], report["split"]) == (
        "sgn-cnn-digits", entry.dataset, "test")
    assert report["protocol"]["epsilon"] == entry.threat_model["epsilon"] == 0.1
    assert report["protocol"]["norm"] == entry.threat_model["norm"] == "linf"
    assert report["n_examples"] == 24 and report["clean_accuracy"] > 0.9
    assert 0.0 <= report["robust_accuracy"] <= report["clean_accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adversarial_examples.png", "report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "sgn-cnn-digits"


def test_evaluate_pretrained_quick_preset_by_default():
    report = keras_sgn.evaluate_pretrained("sgn-cnn-digits", n_examples=8,
                                           run_sanity_checks=False, verbose=False)
    assert [a["name"] for a in report["protocol"]["attacks"]] == [
        s.name for s in parse_attacks("quick")]
    assert "adversarial_examples" not in report and "sanity_checks" not in report


def test_evaluate_pretrained_refuses_unpublished_and_unknown_names_first():
    with pytest.raises(zoo.NotPublishedError, match="not published yet"):
        keras_sgn.evaluate_pretrained("sgn-resnet18-cifar10")  # before looking for CIFAR-10
    with pytest.raises(zoo.UnknownModelError, match="sgn-cnn-digits"):
        keras_sgn.evaluate_pretrained("sgn-cnn-digitz")

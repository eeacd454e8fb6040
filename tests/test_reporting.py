"""keras_sgn.reporting: the robustness report, its plot, and the model card."""

import copy
import json
import os

import pytest

from keras_sgn import hub, methods, zoo
from keras_sgn.attacks import parse_attacks
from keras_sgn.reporting import model_card as card
from keras_sgn.reporting import robustness_report

SHIPPED = os.path.join(zoo.catalog.PRETRAINED_DIR, "sgn-cnn-digits", "metadata.json")


def _report(with_sanity=True):
    report = {
        "model": "runs/demo/model.keras", "dataset": "digits", "split": "test",
        "clean_accuracy": 0.9, "robust_accuracy": 0.5,
        "per_attack": {"apgd-ce": 0.6, "pgd-cw:steps=2": 0.5}, "n_examples": 100,
        "protocol": {"norm": "linf", "epsilon": 0.1, "batchnorm": "inference mode",
                     "through_feedback_at_inference": False, "cascade": True,
                     "per_attack_means": "accuracy after this attack", "attacks": []},
    }
    if with_sanity:
        report.update(
            sanity_checks=[{"name": "large_epsilon_reaches_chance", "passed": False,
                            "detail": "...", "accuracy": 0.75}],
            sanity_passed=False, n_sanity_examples=64,
            accuracy_vs_epsilon=[{"epsilon": 0.0, "accuracy": 0.9},
                                 {"epsilon": 0.1, "accuracy": 0.5},
                                 {"epsilon": 0.8, "accuracy": 0.75}])
    return report


def test_markdown_report_tables():
    text = robustness_report.markdown_report(_report(), title="Digits")
    assert text.startswith("# Digits\n\n- model: `runs/demo/model.keras`\n")
    assert "- threat model: linf, epsilon = 0.1\n" in text
    assert "- attacked through inference-time feedback: no (model has none)" in text
    assert ("|  | accuracy |\n|---|---|\n| clean | 0.9000 |\n| apgd-ce | 0.6000 |\n"
            "| pgd-cw:steps=2 | 0.5000 |\n| **worst case over all attacks** | **0.5000** |"
            ) in text
    assert "Per-attack rows: accuracy after this attack." in text
    assert "## Sanity checks (64 examples): SOME FAILED" in text
    assert "| large_epsilon_reaches_chance | **FAIL** | accuracy=0.75 |" in text
    assert "| epsilon | accuracy |\n|---|---|\n| 0 | 0.9000 |\n| 0.1 | 0.5000 |\n| 0.8 | 0.7500 |" \
        in text
    plain = robustness_report.markdown_report(_report(with_sanity=False))
    assert "Sanity" not in plain and "Accuracy vs epsilon" not in plain


def test_write_report_writes_json_markdown_and_plot(tmp_path):
    robustness_report.write_report(_report(), str(tmp_path / "eval"))
    assert json.loads((tmp_path / "eval" / "report.json").read_text()) == _report()
    assert "worst case over all attacks" in (tmp_path / "eval" / "report.md").read_text()
    png = (tmp_path / "eval" / "accuracy_vs_epsilon.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    robustness_report.write_report(_report(with_sanity=False), str(tmp_path / "plain"))
    assert sorted(os.listdir(tmp_path / "plain")) == ["report.json", "report.md"]


def test_wilson_interval_literal_values():
    # 50 of 100: the textbook Wilson 95% interval is [0.4038, 0.5962].
    lo, hi = card.wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.40383, abs=1e-5) and hi == pytest.approx(0.59617, abs=1e-5)
    lo, hi = card.wilson_interval(1.0, 360)  # all correct: the lower end is n / (n + z^2)
    assert hi == 1.0 and lo == pytest.approx(360 / (360 + 1.96 ** 2), abs=1e-12)
    assert card.wilson_interval(0.3, 0) == (0.0, 1.0)


def _metadata():
    with open(SHIPPED, encoding="utf-8") as f:
        return json.load(f)


def _metadata_before_provenance():
    """The shipped metadata as older exports wrote it: no provenance, no git
    commit, no suite name, and an attack list that is no preset (the standard
    suite before FAB-T replaced PGD-CW)."""
    metadata = copy.deepcopy(_metadata())
    for key in ("provenance", "suite"):
        metadata["metrics"].pop(key, None)
    for key in ("git_commit", "git_dirty"):
        metadata.get("versions", {}).pop(key, None)
    metadata["metrics"]["protocol"]["attacks"] = [
        {"kind": "white-box", "name": "apgd-ce", "restarts": 1, "steps": 100},
        {"kind": "white-box", "n_target_classes": 9, "name": "apgd-t", "steps": 100},
        {"kind": "white-box", "name": "pgd-cw", "restarts": 2, "steps": 50},
        {"kind": "gradient-free", "n_queries": 5000, "name": "square"}]
    return metadata


def test_model_card_sections_come_from_the_metadata():
    metadata = _metadata()
    text = card.model_card(metadata, method_description="a described method")
    assert text.startswith("# sgn-cnn-digits\n")  # no front matter given
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Use", "## Robustness", "## Training", "## Limitations", "## Files",
                        "## Citation"]
    assert "`sgn` method (a described method) for the threat model" in text
    assert "- method: `sgn` (a described method), epsilon = 0.1" in text
    metrics = metadata["metrics"]
    robust = 100 * metrics["robust_accuracy"]
    lo, hi = card.wilson_interval(metrics["robust_accuracy"], metrics["n_examples"])
    assert (f"| **robust (worst case per example)** | **{robust:.2f}%** | "
            f"{100 * lo:.2f}% - {100 * hi:.2f}% |") in text
    assert "All 6 gradient-masking sanity checks passed" in text
    assert "digits is a toy dataset" in text
    assert f'keras.saving.load_model("hf://{metadata["repo_id"]}")' in text


def test_model_card_offers_the_loaders_that_work_where_the_folder_goes():
    metadata = copy.deepcopy(_metadata())
    metadata["distribution"] = {"destination": "local", "folder": "export/m", "run_dir": "r"}
    local = card.model_card(metadata)
    assert 'keras.saving.load_model("export/m", safe_mode=True)' in local
    assert "hf://" not in local and 'load_pretrained("' not in local.split("## Use")[1].split(
        "This folder is in no zoo")[0]
    # Its upload hint names a repository of the reader's: the default namespace is not theirs.
    assert f"--repo_id=YOUR_NAMESPACE/{metadata['name']}" in local
    metadata["distribution"]["destination"] = "package"
    shipped = card.model_card(metadata)
    assert f'keras_sgn.load_pretrained("{metadata["name"]}")' in shipped
    assert "hf://" not in shipped and "export/m" not in shipped


def test_the_card_commands_name_the_run_folder_when_it_is_in_the_working_directory(
        tmp_path, monkeypatch):
    from keras_sgn.hub.export import command_run_dir

    monkeypatch.chdir(tmp_path)
    assert command_run_dir(str(tmp_path / "runs" / "mine"), "sgn-x") == "runs/mine"
    assert command_run_dir("runs/mine", "sgn-x") == "runs/mine"
    assert command_run_dir("/elsewhere/mine", "sgn-x") == "runs/sgn-x"


def test_model_card_flags_failed_sanity_checks_and_feedback_at_inference():
    metadata = copy.deepcopy(_metadata())
    metadata["metrics"]["sanity_passed"] = False
    metadata["metrics"]["sanity_checks"]["large_epsilon_reaches_chance"] = False
    metadata["recipe"]["train_config"]["feedback_at_inference"] = True
    text = card.model_card(metadata, front_matter="license: apache-2.0\n")
    assert text.startswith("---\nlicense: apache-2.0\n---\n\n# sgn-cnn-digits\n")
    assert ("**Some gradient-masking sanity checks FAILED: `large_epsilon_reaches_chance`. "
            "Treat the robust accuracy with suspicion.**") in text
    assert "This model uses **feedback at inference**" in text
    assert "`sgn` method (sgn)" in text  # no description given: the name alone


def test_hub_card_takes_the_method_description_from_the_registry():
    metadata = _metadata()
    text = hub.model_card(metadata)
    description = methods.registry.method_class("sgn").description
    assert description and f"`sgn` method ({description})" in text
    clean = f"value: {100 * metadata['metrics']['clean_accuracy']:.2f}"
    assert text.startswith("---\n") and "model-index:" in text and clean in text
    metadata["recipe"]["train_config"]["method"] = "a-method-from-elsewhere"
    assert "`a-method-from-elsewhere` method (a-method-from-elsewhere)" in hub.model_card(metadata)


def test_figures_name_a_run_by_its_folder():
    from keras_sgn.reporting.plots import model_title

    assert model_title("runs/sgn-digits/model.keras") == "sgn-digits"
    assert model_title("/tmp/best.keras") == "best.keras"
    assert model_title("sgn-cnn-digits") == "sgn-cnn-digits"
    report = {**_report(), "model": "runs/demo/model.keras", "sanity_steps": 20}
    fig, ax = robustness_report.accuracy_vs_epsilon_figure(report)
    assert ax.get_title().startswith("Accuracy vs epsilon: demo on digits (linf)\nPGD-20")
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_accuracy_vs_epsilon_spreads_the_sweep_and_names_the_suite():
    # The sweep runs to 8x epsilon: on a linear axis the evaluated epsilon sat at
    # an eighth of the width; the legend called a `quick` run "the full suite".
    factors = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    report = {**_report(), "accuracy_vs_epsilon": [
        {"epsilon": 0.1 * f, "accuracy": max(0.0, 0.9 - f / 2)} for f in factors]}
    report["protocol"] = {**report["protocol"], "attacks": [{"name": "apgd-ce"},
                                                            {"name": "apgd-t"}]}
    fig, ax = robustness_report.accuracy_vs_epsilon_figure(report)
    left, right = ax.get_xlim()
    position = (ax.transScale.transform((0.1, 0))[0] - ax.transScale.transform((left, 0))[0]) / (
        ax.transScale.transform((right, 0))[0] - ax.transScale.transform((left, 0))[0])
    assert 0.35 < position < 0.75, position
    assert [round(t, 4) for t in ax.get_xticks()] == [round(0.1 * f, 4) for f in factors]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "robust accuracy, apgd-ce + apgd-t on 100 images (0.500)" in labels
    assert not any("full suite" in label for label in labels)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_model_card_and_report_record_the_software():
    metadata = copy.deepcopy(_metadata())
    metadata["versions"].update(git_commit="0123456789abcdef" * 2 + "01234567", git_dirty=False)
    metadata["metrics"]["provenance"] = {"keras_sgn": "9.9.9", "git_commit": None,
                                         "tensorflow": "2.99", "keras": "3.99"}
    text = card.model_card(metadata)
    assert ("Software: keras-sgn 0.1.0 (git 0123456789ab), TensorFlow 2.21.0, Keras 3.15.1, "
            "NumPy") in text
    assert "Evaluated with keras-sgn 9.9.9, TensorFlow 2.99, Keras 3.99." in text
    shipped = card.model_card(_metadata_before_provenance())  # versions only
    assert "Software: keras-sgn 0.1.0, TensorFlow 2.21.0, Keras 3.15.1" in shipped
    assert "Evaluated with" not in shipped
    report = {**_report(), "provenance": metadata["metrics"]["provenance"]}
    assert "- software: keras-sgn 9.9.9, TensorFlow 2.99, Keras 3.99\n" in (
        robustness_report.markdown_report(report))


def _card_with_training(training):
    metadata = copy.deepcopy(_metadata())
    metadata["training"] = training
    return card.model_card(metadata)


def test_model_card_names_the_validation_protocol_of_the_kept_epoch():
    from keras_sgn import training
    from keras_sgn.training import outputs

    config = training.TrainConfig(dataset="digits", n_eval=100).resolved()
    summary = {"epochs": 20, "best_epoch": 17, "best_val_robust_accuracy": 0.712,
               "train_seconds": 467.6, "replicas": 1, **outputs.validation_record(config)}
    assert summary["validation_estimate"]["n_examples"] == 100
    label = "PGD-10, cheap per-epoch estimate on 100 validation images; not a test number"
    assert summary["validation_protocol"] == label
    text = _card_with_training(summary)
    assert (f"- trained 20 epochs in 468 s of training wall time (1 replica); kept epoch 17 "
            f"by validation robust accuracy 71.20% ({label})") in text
    # The Hub metadata's training block carries the same words, copied from the summary.
    block = hub.metadata.training_block({**summary, "strategy": "default"})
    assert block["best_val_robust_accuracy_means"] == label and "strategy" not in block
    assert block["validation_estimate"] == summary["validation_estimate"]


def test_model_card_of_an_older_summary_says_the_validation_protocol_is_unknown():
    old = {"epochs": 20, "best_epoch": 17, "best_val_robust_accuracy": 0.717}
    text = _card_with_training(old)
    assert ("- trained 20 epochs (training wall time not recorded); kept epoch 17 by validation "
            "robust accuracy 71.70% (cheap per-epoch estimate on the validation split, its "
            "attack and size not recorded; not a test number)") in text
    assert "PGD-" not in text.split("## Training")[1]
    block = hub.metadata.training_block(old)
    assert block["best_val_robust_accuracy_means"] == card.validation_label(old)
    resumed = _card_with_training({**old, "train_seconds": 60.0, "replicas": 2,
                                   "resumed_from_epoch": 12})
    assert ("in 60 s of training wall time (2 replicas; after resuming from epoch 12: the "
            "epochs before are not counted)") in resumed
    assert "epochs, training wall time and kept epoch not recorded" in _card_with_training({})


def test_model_card_names_the_test_suite_and_the_commands():

    metadata = _metadata_before_provenance()  # no "suite": named from its attacks
    metadata["metrics"]["protocol"]["attacks"] = [
        {**spec.settings(), "name": spec.name, "kind": "white-box"}
        for spec in parse_attacks("quick")]
    assert hub.metadata.attack_suite(metadata["metrics"]["protocol"]) == "quick"
    assert hub.metadata.attack_suite(_metadata()["metrics"]["protocol"]) == "standard"
    assert hub.metadata.attack_suite(_metadata_before_provenance()["metrics"]["protocol"]) is None
    text = hub.model_card(metadata)
    n = metadata["metrics"]["n_examples"]
    assert f"with the `quick` attack suite on the test split ({n} images)" in text
    assert "linf eps=0.1, quick suite (apgd-ce, apgd-t), cascade," in text
    assert metadata["recipe"]["train_command"] in text
    assert metadata["metrics"]["evaluate_command"] in text
    assert "with the attacks listed below on the test split" in card.model_card(
        _metadata_before_provenance())


def test_publishing_carries_each_number_from_its_own_field():
    """The report's clean (0.9) and robust (0.5) accuracies land in the metadata, the
    card's model-index and its table, each from its own field (a fixture whose two
    numbers are equal could not tell them apart)."""
    report = {**_report(), "provenance": {"keras_sgn": "0.1.0", "git_commit": None}}
    metrics = hub.metadata.metrics_from_report(report, "runs/demo/model.keras", "runs/demo/eval")
    assert (metrics["clean_accuracy"], metrics["robust_accuracy"]) == (0.9, 0.5)
    metadata = {**_metadata(), "metrics": {**_metadata()["metrics"], **metrics}}
    front = hub.card.card_front_matter(metadata)
    assert "value: 90.0" in front and "value: 50.0" in front
    assert front.index("value: 90.0") < front.index("value: 50.0")  # clean, then robust
    text = card.model_card(metadata, method_description="a described method")
    assert "| clean | 90.00% |" in text
    assert "| **robust (worst case per example)** | **50.00%** |" in text

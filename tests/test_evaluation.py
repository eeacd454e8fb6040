"""evaluate_robustness: worst case, cascade, sanity checks and the masking detector."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sgn import evaluation
from keras_sgn.attacks import AttackSpec, parse_attacks
from keras_sgn.reporting.robustness_report import write_report


def _pixel_classifier():
    """Class = argmax of the first 3 inputs; the 4th input is an example id."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    model.layers[0].kernel.assign(np.vstack([np.eye(3), np.zeros((1, 3))]).astype("float32"))
    return model


def _fooling(ids):
    def attack(model, x, y, epsilon, norm, seed):
        x = np.array(x)
        for row in range(len(x)):
            if round(x[row, 3] * 10) in ids:
                x[row, :3] = 0.0
                x[row, (y[row] + 1) % 3] = 1.0
        attack.calls.append(sorted(round(v * 10) for v in x[:, 3]))
        return x

    attack.calls = []
    return attack


def _handcrafted():
    y = np.array([0, 1, 2, 0, 1, 2, 0], np.int32)
    x = np.zeros((7, 4), np.float32)
    x[np.arange(7), y] = 0.9
    x[:, 3] = np.arange(7) / 10
    x[6, :3] = [0.1, 0.8, 0.1]  # misclassified from the start
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


@pytest.mark.parametrize("cascade", [True, False])
def test_worst_case_is_the_per_example_minimum(cascade):
    a, b = _fooling({0, 1}), _fooling({1, 2, 3})
    report = evaluation.evaluate_robustness(
        _pixel_classifier(), _handcrafted(), epsilon=0.1,
        attacks=[AttackSpec("A", fn=a), AttackSpec("B", fn=b)], cascade=cascade,
        run_sanity_checks=False, verbose=False)
    assert report["clean_accuracy"] == pytest.approx(6 / 7)
    assert report["robust_accuracy"] == pytest.approx(2 / 7)  # only examples 4 and 5 survive
    if cascade:
        assert report["per_attack"] == pytest.approx({"A": 4 / 7, "B": 2 / 7})
        # B only ran on what A left robust: never on 0, 1 (fooled) or 6 (misclassified).
        assert sorted(sum(b.calls, [])) == [2, 3, 4, 5]
    else:
        assert report["per_attack"] == pytest.approx({"A": 4 / 7, "B": 3 / 7})
        assert sorted(sum(b.calls, [])) == [0, 1, 2, 3, 4, 5]


def test_attack_lists_and_presets_parse():
    specs = parse_attacks("pgd-ce;pgd-cw:steps=50,restarts=5")
    assert [s.label for s in specs] == ["pgd-ce", "pgd-cw:steps=50,restarts=5"]
    assert specs[1].settings() == {"steps": 50, "restarts": 5, "random_start": True,
                                   "step_size": None}
    # AutoAttack's standard version, in its order.
    assert [s.name for s in parse_attacks("standard")] == [
        "apgd-ce", "apgd-t", "fab-t", "square"]
    assert [s.name for s in parse_attacks("quick")] == ["apgd-ce", "apgd-t"]
    with pytest.raises(ValueError, match="attacks: unknown attack 'pgd-xx'"):
        parse_attacks("pgd-xx")
    with pytest.raises(ValueError, match="epsilon"):
        evaluation.evaluate_robustness(_pixel_classifier(), _handcrafted(), epsilon=-1,
                                       attacks="quick", verbose=False)


@pytest.fixture(scope="module")
def honest_and_masked(digits_arrays):
    """A small network adversarially trained on digits, and two masked copies."""
    from keras_sgn import models

    keras.utils.set_random_seed(0)
    x, y = digits_arrays("train")
    model = models.get("sgn_small_cnn", width=16, sites=())
    model.compile(keras.optimizers.Adam(2e-3), method="fast", epsilon=0.1)
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)

    inputs = keras.Input((8, 8, 1))
    frozen = keras.layers.Lambda(tf.stop_gradient)(inputs)  # zero input gradient
    zero_gradient = keras.Model(inputs, model(frozen))
    # Saturated logits: a hard clip has exactly zero gradient past its bounds on every CPU
    # (a softmax of 1e4-scaled logits does not: vectorised exp leaves its top probability
    # at 1 - 2^-24 on some CPUs, so its gradients are tiny but nonzero).
    saturated = keras.Model(inputs, keras.ops.clip(model(inputs) * 1e4, -1.0, 1.0))
    x_test, y_test = digits_arrays("test", 128)
    return model, zero_gradient, saturated, x_test, y_test


def _checks(model, x, y):
    checks, curve = evaluation.sanity_checks(model, x, y, epsilon=0.1, steps=10,
                                             square_queries=300)
    return {c["name"]: c for c in checks}, curve


def test_sanity_checks_stay_quiet_on_an_honest_model(honest_and_masked):
    model, _, _, x, y = honest_and_masked
    checks, curve = _checks(model, x, y)
    failed = [c for c in checks.values() if not c["passed"]]
    assert not failed, failed
    assert curve[0]["epsilon"] == 0 and curve[-1]["accuracy"] < 0.2


@pytest.mark.parametrize("which", [1, 2])
def test_masking_detector_fires_on_masked_models(honest_and_masked, which):
    masked, x, y = honest_and_masked[which], honest_and_masked[3], honest_and_masked[4]
    checks, _ = _checks(masked, x, y)
    assert not checks["input_gradients_finite_and_nonzero"]["passed"]
    assert checks["input_gradients_finite_and_nonzero"]["zero_fraction"] > 0.5
    # Blind gradient attacks leave accuracy high even at 8x epsilon.
    assert not checks["large_epsilon_reaches_chance"]["passed"]
    if which == 1:
        # Zeroed gradients, honest logits: the gradient-free attack sees through it.
        assert not checks["gradient_free_not_stronger_than_white_box"]["passed"]
        assert checks["gradient_free_not_stronger_than_white_box"]["square_only_fooled"] > 10


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_evaluate_robustness_report_and_files(honest_and_masked, tmp_path):
    model, _, _, x, y = honest_and_masked
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    report = evaluation.evaluate_robustness(model, dataset, epsilon=0.1, attacks="quick",
                                            n_examples=100, n_sanity_examples=64,
                                            square_queries=200, verbose=False)
    assert report["n_examples"] == 100 and report["n_sanity_examples"] == 64
    assert report["robust_accuracy"] <= min(report["per_attack"].values()) + 1e-12
    assert report["robust_accuracy"] < report["clean_accuracy"]
    write_report(report, str(tmp_path))
    saved = json.loads((tmp_path / "report.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "per_attack", "sanity_checks", "protocol"):
        assert key in saved
    text = (tmp_path / "report.md").read_text()
    assert "worst case over all attacks" in text and "Sanity checks" in text
    assert (tmp_path / "accuracy_vs_epsilon.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dataset_name_arrays_and_batches_give_one_report(honest_and_masked):
    """`evaluate_robustness` takes a dataset by name (its split loaded in file order), as
    arrays or as batches: the same images give the same numbers."""
    from keras_sgn import data

    model = honest_and_masked[0]
    options = dict(epsilon=0.1, attacks="apgd-ce:steps=5", n_examples=48, batch_size=16,
                   run_sanity_checks=False, verbose=False)
    by_name = evaluation.evaluate_robustness(model, "digits", split="test",
                                             model_label="digits-cnn", **options)
    x, y = next(iter(data.load("digits", "test", 48, n_examples=48)))
    by_arrays = evaluation.evaluate_robustness(model, (x.numpy(), y.numpy()), **options)
    assert (by_name["dataset"], by_name["split"], by_name["model"]) == (
        "digits", "test", "digits-cnn")
    assert by_name["n_examples"] == by_arrays["n_examples"] == 48
    for key in ("clean_accuracy", "robust_accuracy"):
        assert by_name[key] == by_arrays[key]
    assert by_name["robust_accuracy"] < by_name["clean_accuracy"]


def test_an_unknown_dataset_name_is_refused_before_any_attack(honest_and_masked):
    with pytest.raises(ValueError, match="Unknown dataset 'digit'.*Did you mean 'digits'"):
        evaluation.evaluate_robustness(honest_and_masked[0], "digit", epsilon=0.1)


def test_feedback_at_inference_models_are_attacked_through_the_feedback(digits_arrays):
    from keras_sgn import models

    x, y = digits_arrays("test", 32)
    model = models.get("sgn_small_cnn", width=4, feedback_at_inference=True, beta=0.05)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    report = evaluation.evaluate_robustness(model, dataset, epsilon=0.1,
                                            attacks="pgd-ce:steps=2", run_sanity_checks=False,
                                            verbose=False)
    assert report["protocol"]["through_feedback_at_inference"] is True
    assert "attacked through inference-time feedback: yes" in evaluation.markdown_report(report)

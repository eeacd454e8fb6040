"""What an evaluation shows a person: progress, the kept adversarial examples and
their grid, the accuracy-vs-epsilon figure, the meaning of per_attack, provenance."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sgn
from keras_sgn import evaluation, reporting
from keras_sgn.attacks import AttackSpec
from keras_sgn.evaluation import AdversarialExamples
from keras_sgn.reporting.robustness_report import write_report


def _pixel_classifier():
    """Class = argmax of the first 3 inputs; the 4th input is an example id."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    model.layers[0].kernel.assign(np.vstack([np.eye(3), np.zeros((1, 3))]).astype("float32"))
    return model


def _fooling(ids, shift=1):
    """An attack that moves examples `ids` to class (y + shift) % 3."""
    def attack(model, x, y, epsilon, norm, seed):
        x = np.array(x)
        for row in range(len(x)):
            if round(x[row, 3] * 10) in ids:
                x[row, :3] = 0.0
                x[row, (y[row] + shift) % 3] = 1.0
        return x

    return attack


def _data(batch_size=4):
    y = np.array([0, 1, 2, 0, 1, 2, 0], np.int32)
    x = np.zeros((7, 4), np.float32)
    x[np.arange(7), y] = 0.9
    x[:, 3] = np.arange(7) / 10
    x[6, :3] = [0.1, 0.8, 0.1]  # misclassified from the start
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


SUITE = [AttackSpec("A", fn=_fooling({0, 1})), AttackSpec("B", fn=_fooling({1, 2, 3}, 2))]


def test_run_attacks_keeps_the_first_fooling_image_per_example():
    x, y, _ = _data()
    outcome = evaluation.robustness.run_attacks(_pixel_classifier(), x, y, SUITE, 0.1, "linf", 0)
    np.testing.assert_array_equal(outcome.robust, [0, 0, 0, 0, 1, 1, 0])
    # 0 and 1 fooled by A (A's image kept even though B also moves 1), 2 and 3 by B.
    assert list(outcome.attacks) == ["A", "A", "B", "B", "B", "B", ""]
    np.testing.assert_array_equal(outcome.adversarial_predictions[:4], [1, 2, 1, 2])
    np.testing.assert_array_equal(outcome.adversarial[6], x[6])  # never attacked
    np.testing.assert_array_equal(outcome.clean_predictions, [0, 1, 2, 0, 1, 2, 1])
    without_cascade = evaluation.robustness.run_attacks(_pixel_classifier(), x, y, SUITE, 0.1,
                                                        "linf", 0, cascade=False)
    assert list(without_cascade.attacks[:2]) == ["A", "A"]  # the first fooling image stays
    np.testing.assert_array_equal(without_cascade.adversarial_predictions[:2], [1, 2])


def test_adversarial_examples_mix_fooled_and_robust_ones_and_are_bounded():
    _, _, dataset = _data(batch_size=2)
    examples = AdversarialExamples(3)
    evaluation.evaluate_robustness(_pixel_classifier(), dataset, 0.1, attacks=SUITE,
                                   run_sanity_checks=False, verbose=False, examples=examples)
    arrays = examples.arrays()
    assert len(examples) == 3 and examples.full
    # Two places (half, rounded up) for the first two fooled, one for a robust example.
    np.testing.assert_array_equal(arrays["labels"][:2], [0, 1])
    np.testing.assert_array_equal(arrays["adversarial_predictions"] != arrays["labels"],
                                  [True, True, False])
    assert arrays["clean"].shape == arrays["adversarial"].shape == (3, 4)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        AdversarialExamples(0)
    with pytest.raises(ValueError, match="No examples were kept"):
        AdversarialExamples(2).arrays()


def test_progress_moves_after_each_attack_and_is_quiet_when_asked(capsys):
    _, _, dataset = _data(batch_size=8)  # one batch of 7 examples, two attacks
    evaluation.evaluate_robustness(_pixel_classifier(), dataset, 0.1, attacks=SUITE,
                                   run_sanity_checks=False, verbose=True)
    out = capsys.readouterr().out
    assert out.startswith("Attacking 7 examples (linf, epsilon=0.1): A, B; worst case")
    frames = out.replace("\b", "").split("\r")
    assert any("3/7" in f for f in frames)  # after attack A, before the batch's end
    assert "7/7" in frames[-1] and "robust: 0.2857" in frames[-1]
    evaluation.evaluate_robustness(_pixel_classifier(), dataset, 0.1, attacks=SUITE,
                                   run_sanity_checks=False, verbose=False)
    assert capsys.readouterr().out == ""


def test_sanity_checks_show_progress_only_when_verbose(digits_linear, capsys):
    model, x, y = digits_linear
    evaluation.sanity_checks(model, x[:16], y[:16], 0.1, steps=1, square_queries=5)
    assert capsys.readouterr().out == ""
    evaluation.sanity_checks(model, x[:16], y[:16], 0.1, steps=1, square_queries=5,
                             verbose=True)
    out = capsys.readouterr().out
    assert out.startswith("Sanity checks on 16 examples: FGSM, PGD")
    assert "epsilon sweep (12 attacks)" in out and "18/18" in out


@pytest.mark.parametrize("cascade,meaning", [(True, "after_cascade"), (False, "alone")])
def test_report_names_what_per_attack_means_and_its_provenance(cascade, meaning):
    _, _, dataset = _data()
    report = evaluation.evaluate_robustness(_pixel_classifier(), dataset, 0.1, attacks=SUITE,
                                            cascade=cascade, run_sanity_checks=False,
                                            verbose=False)
    assert report["protocol"]["per_attack"] == meaning
    meanings = evaluation.robustness.PER_ATTACK_MEANINGS
    assert report["protocol"]["per_attack_means"] == meanings[cascade][1]
    if cascade:  # the cascade's last row is the worst case
        assert report["per_attack"]["B"] == report["robust_accuracy"]
    provenance = report["provenance"]
    assert provenance["keras_sgn"] == keras_sgn.__version__
    assert provenance["tensorflow"] == tf.__version__ and provenance["keras"] == keras.__version__
    assert provenance["numpy"] == np.__version__ and provenance["python"]
    json.dumps(report)  # still JSON-ready
    text = evaluation.markdown_report(report)
    assert f"- software: keras-sgn {keras_sgn.__version__}" in text


def _grid_arrays(n=4):
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(n, 8, 8, 1)).astype("float32")
    return {"clean": clean, "adversarial": np.clip(clean + 0.05, 0, 1),
            "labels": np.arange(n), "clean_predictions": np.arange(n),
            "adversarial_predictions": (np.arange(n) + 9) % 10,
            "attacks": ["apgd-ce:steps=50"] * (n - 1) + ["square"]}


def test_adversarial_examples_figure_titles_and_axes():
    fig, axes = reporting.adversarial_examples_figure(
        **_grid_arrays(), dataset="fashion_mnist", norm="linf", epsilon=0.1, model="m")
    assert axes.shape == (3, 4) and len(fig.axes) == 12
    titles = [[ax.get_title() for ax in row] for row in axes]
    assert titles[0][0] == "label T-shirt/top\nclean: T-shirt/top"
    assert titles[1][0] == "adversarial: Ankle boot\nfooled (apgd-ce)"
    assert titles[1][3] == "adversarial: Pullover\nfooled (square)"
    assert titles[2][0] == "||delta||_inf = 0.05"
    assert [axes[r, 0].get_ylabel() for r in range(3)] == [
        "clean", "adversarial", "perturbation"]
    assert fig._suptitle.get_text().startswith("Adversarial examples: m on fashion_mnist (linf, "
                                               "epsilon = 0.1)")
    digits_fig, digits_axes = reporting.adversarial_examples_figure(**_grid_arrays(2),
                                                                    dataset="digits")
    assert digits_axes[1][0].get_title().startswith("adversarial: 9\n")
    # The perturbation is drawn as is on a diverging scale of +-epsilon (nothing
    # saturates under L-inf), with a colour bar; an x10 grey image saturated at 0.05.
    image = axes[2][0].get_images()[0]
    np.testing.assert_allclose(image.get_array(), (
        _grid_arrays()["adversarial"][0] - _grid_arrays()["clean"][0])[..., 0], atol=1e-6)
    assert image.get_clim() == (-0.1, 0.1) and image.get_cmap().name == "RdBu_r"
    [bar] = axes[2][-1].child_axes  # the colour bar, right of the last perturbation
    assert bar.get_ylabel() == "pixel change"
    # Without an epsilon (L2) the scale is the largest change shown.
    l2_fig, l2_axes = reporting.adversarial_examples_figure(**_grid_arrays(2), norm="l2")
    assert l2_axes[2][0].get_images()[0].get_clim() == pytest.approx((-0.05, 0.05))
    import matplotlib.pyplot as plt

    plt.close(l2_fig)

    plt.close(fig), plt.close(digits_fig)


def test_the_grid_shows_robust_examples_beside_fooled_ones():
    # A grid of fooled images only hides what the attacks failed on.
    shown = evaluation.AdversarialExamples(4)
    x = np.zeros((6, 2, 2, 1), "float32") + np.arange(6)[:, None, None, None]
    y = np.zeros(6, int)
    fooled = np.array([1, 1, 1, 0, 0, 0])  # the first three fooled, the last three robust
    shown.add(x, y, x, y, fooled, ["a"] * 6)
    assert shown.full
    arrays = shown.arrays()
    np.testing.assert_array_equal(arrays["adversarial_predictions"], [1, 1, 0, 0])
    np.testing.assert_array_equal(arrays["clean"][:, 0, 0, 0], [0, 1, 3, 4])
    # One kind short: the other fills its places, and collection goes on meanwhile.
    only_fooled = evaluation.AdversarialExamples(4)
    only_fooled.add(x[:3], y[:3], x[:3], y[:3], fooled[:3], ["a"] * 3)
    assert not only_fooled.full and len(only_fooled) == 3
    np.testing.assert_array_equal(only_fooled.arrays()["clean"][:, 0, 0, 0], [0, 1, 2])


def test_accuracy_vs_epsilon_figure_is_titled_and_marks_epsilon():
    report = {
        "model": "sgn-cnn-digits", "dataset": "digits", "robust_accuracy": 0.8,
        "n_examples": 100, "n_sanity_examples": 64, "sanity_steps": 20,
        "protocol": {"norm": "linf", "epsilon": 0.1},
        "sanity_checks": [{"name": "large_epsilon_reaches_chance", "chance": 0.1}],
        "accuracy_vs_epsilon": [{"epsilon": 0.0, "accuracy": 0.95},
                                {"epsilon": 0.1, "accuracy": 0.82},
                                {"epsilon": 0.8, "accuracy": 0.0}],
    }
    fig, ax = reporting.accuracy_vs_epsilon_figure(report)
    title = ax.get_title()
    assert "sgn-cnn-digits on digits (linf)" in title and "PGD-20" in title
    assert "worst case per example, 64 images" in title
    assert ax.get_xlabel().startswith("epsilon (linf") and ax.get_ylabel() == "robust accuracy"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "evaluated epsilon = 0.1" in labels and "chance (0.1)" in labels
    star = ax.get_lines()[labels.index("robust accuracy, the attack suite on 100 images (0.800)")]
    assert list(star.get_xdata()) == [0.1] and list(star.get_ydata()) == [0.8]
    width, height = fig.get_size_inches()
    assert width >= 8 and height >= 5
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_write_report_draws_the_grid(tmp_path):
    _, _, dataset = _data()
    examples = AdversarialExamples(3)
    report = evaluation.evaluate_robustness(_pixel_classifier(), dataset, 0.1, attacks=SUITE,
                                            run_sanity_checks=False, verbose=False,
                                            examples=examples)
    report.update(model="pixels", dataset="digits", split="test")
    # The pixel model's inputs are not images; draw them as 2x2 grey ones.
    arrays = {**examples.arrays()}
    arrays["clean"] = arrays["clean"].reshape(-1, 2, 2, 1)
    arrays["adversarial"] = arrays["adversarial"].reshape(-1, 2, 2, 1)
    written = write_report(report, str(tmp_path), adversarial_examples=arrays)
    assert written == ["report.json", "report.md", "adversarial_examples.png"]
    assert (tmp_path / "adversarial_examples.png").read_bytes()[:4] == b"\x89PNG"

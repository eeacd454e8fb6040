"""Each sanity check alone, on numbers chosen to sit on either side of its rule."""

import numpy as np
import pytest

from keras_sgn.evaluation import checks


def _curve(*accuracies):
    return [{"epsilon": 0.1 * i, "accuracy": a} for i, a in enumerate(accuracies)]


def test_accuracy_non_increasing_in_epsilon():
    ok = checks.check_accuracy_non_increasing_in_epsilon(_curve(0.9, 0.5, 0.52, 0.1), 0.03)
    assert ok["passed"] and ok["largest_rise"] == pytest.approx(0.02)
    bad = checks.check_accuracy_non_increasing_in_epsilon(_curve(0.9, 0.5, 0.6, 0.1), 0.03)
    assert not bad["passed"] and bad["largest_rise"] == pytest.approx(0.1)
    assert bad["name"] == "accuracy_non_increasing_in_epsilon"


def test_iterative_at_least_as_strong_as_single_step():
    assert checks.check_iterative_at_least_as_strong_as_single_step(0.4, 0.5, 20, 0.03)["passed"]
    result = checks.check_iterative_at_least_as_strong_as_single_step(0.6, 0.5, 20, 0.03)
    assert not result["passed"] and "PGD-20" in result["detail"]


def test_more_steps_do_not_help_the_model():
    converged = checks.check_more_steps_do_not_help_the_model(0.5, 0.49, 10, 0.03)
    assert converged["passed"] and converged["converged"]
    not_converged = checks.check_more_steps_do_not_help_the_model(0.5, 0.3, 10, 0.03)
    assert not_converged["passed"] and not not_converged["converged"]  # fewer robust: fine
    helped = checks.check_more_steps_do_not_help_the_model(0.5, 0.6, 10, 0.03)
    assert not helped["passed"] and "PGD-20" in helped["detail"]


def test_large_epsilon_reaches_chance():
    assert checks.check_large_epsilon_reaches_chance(_curve(0.9, 0.19), 10)["passed"]
    result = checks.check_large_epsilon_reaches_chance(_curve(0.9, 0.21), 10)
    assert not result["passed"] and result["chance"] == 0.1 and result["accuracy"] == 0.21


def test_gradient_free_not_stronger_than_white_box():
    assert checks.check_gradient_free_not_stronger_than_white_box(0.48, 0.5, 1, 0.03)["passed"]
    result = checks.check_gradient_free_not_stronger_than_white_box(0.3, 0.5, 12, 0.03)
    assert not result["passed"] and result["square_only_fooled"] == 12


def test_input_gradients_finite_and_nonzero():
    healthy = np.linspace(0.1, 1.0, 100)
    assert checks.check_input_gradients_finite_and_nonzero(healthy)["passed"]
    few_zeros = healthy.copy()
    few_zeros[:5] = 0.0
    assert checks.check_input_gradients_finite_and_nonzero(few_zeros)["passed"]
    many_zeros = healthy.copy()
    many_zeros[:6] = 0.0
    result = checks.check_input_gradients_finite_and_nonzero(many_zeros)
    assert not result["passed"] and result["zero_fraction"] == 0.06
    one_nan = healthy.copy()
    one_nan[0] = np.nan
    result = checks.check_input_gradients_finite_and_nonzero(one_nan)
    assert not result["passed"] and result["nonfinite_fraction"] == 0.01


def test_check_results_are_json_ready():
    result = checks.check_result("x", np.bool_(True), "d", a=np.float32(0.1234567891), n=3)
    assert result == {"name": "x", "passed": True, "detail": "d", "a": 0.123457, "n": 3}
    assert type(result["passed"]) is bool and type(result["a"]) is float

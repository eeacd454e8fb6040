"""Tests of keras_sgn.models.registry: `get`, `list_models`, `register`."""

import functools

import pytest

import keras_sgn.models as M
from keras_sgn.models import registry
from tests.testing import run_bad_argument_test


@pytest.fixture
def fresh_registry(monkeypatch):
    # A copy, so a test's registrations do not leak into the others.
    monkeypatch.setattr(registry, "_BUILDERS", registry._BUILDERS.copy())


def test_register_makes_a_builder_available(fresh_registry):
    tiny = functools.partial(M.sgn_small_cnn, width=2)
    M.register("tiny_cnn", tiny)
    assert "tiny_cnn" in M.list_models()
    model = M.get("tiny_cnn", num_classes=3, name="mine")
    assert model.name == "mine" and model.get_layer("stage1_conv").filters == 2


def test_register_refuses_taken_names_and_non_builders(fresh_registry):
    run_bad_argument_test(M.register, dict(name="sgn_resnet18", builder=M.sgn_resnet18), "name")
    run_bad_argument_test(M.register, dict(name="", builder=M.sgn_resnet18), "name")
    run_bad_argument_test(M.register, dict(name="x", builder="sgn_resnet18"), "builder")
    assert "x" not in M.list_models()


def test_get_refuses_non_string_names():
    run_bad_argument_test(functools.partial(M.get, None), {}, "model", match="Valid names")

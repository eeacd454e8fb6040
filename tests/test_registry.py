"""Tests of keras_sgn.registry: close matches, the unknown-name error, `Registry`, and
every registry of the package refusing an unknown name through it."""

import collections.abc

import pytest

from keras_sgn import errors, recipes, registry
from keras_sgn.attacks import registry as attack_registry
from keras_sgn.data import catalog as data_catalog
from keras_sgn.methods import registry as method_registry
from keras_sgn.models import registry as model_registry
from keras_sgn.zoo import catalog as zoo_catalog
from keras_sgn.zoo.errors import UnknownModelError

NAMES = ("sgn", "pgd", "trades", "sgn-pgd")


def test_close_matches_best_first_and_none_for_other_types():
    assert registry.close_matches("sgm", NAMES)[0] == "sgn"
    assert registry.close_matches("zzzz", NAMES) == []
    assert registry.close_matches(None, NAMES) == []
    assert len(registry.close_matches("sgn-pg", NAMES, n=1)) == 1
    assert registry.close_matches("SGN", NAMES) == []
    assert registry.close_matches("SGN", NAMES, key=str.lower)[0] == "sgn"


def test_did_you_mean_text():
    assert registry.did_you_mean("sgm", ("sgn",)) == "Did you mean 'sgn'?"
    assert registry.did_you_mean("ab", ("abcd", "abc")) == "Did you mean 'abc' or 'abcd'?"
    assert registry.did_you_mean("ab", ("abcde", "abc", "abcd")) == (
        "Did you mean 'abc', 'abcd' or 'abcde'?")
    assert registry.did_you_mean("zzzz", NAMES) == ""


def test_lookup_returns_the_value():
    assert registry.lookup({"sgn": 1}, "sgn", kind="method") == 1


def test_lookup_error_names_kind_received_close_matches_and_valid_names():
    with pytest.raises(errors.ArgumentError) as error:
        registry.lookup(dict.fromkeys(NAMES), "sgm", kind="method", param="method")
    message = str(error.value)
    assert message.startswith("Unknown method 'sgm'. Received: method='sgm'. Did you mean 'sgn'")
    assert "Valid names: 'pgd', 'sgn', 'sgn-pgd', 'trades'." in message


def test_lookup_appends_advice_and_prefix():
    with pytest.raises(ValueError) as error:
        registry.lookup({"a": 1}, "b", kind="thing", advice="Register one first.",
                        prefix="things")
    message = str(error.value)
    assert message.startswith("things: unknown thing 'b'.")
    assert message.endswith("Valid names: 'a'. Register one first.")


def test_lookup_raises_the_callers_error_class():
    class MyError(errors.UserError, KeyError):
        pass

    with pytest.raises(MyError, match="Unknown entry"):
        registry.lookup({}, "x", kind="entry", error=MyError)
    with pytest.raises(errors.ArgumentError, match="No entry is registered"):
        registry.lookup({}, "x", kind="entry")
    with pytest.raises(errors.ArgumentError, match=r"Received: name=\['x'\]"):
        registry.lookup({"x": 1}, ["x"], kind="entry")  # an unhashable name is unknown


def test_registry_is_a_read_only_mapping():
    things = registry.Registry("thing", {"b": 2, "a": 1})
    assert isinstance(things, collections.abc.Mapping)
    assert not isinstance(things, collections.abc.MutableMapping)
    assert things["a"] == 1 and "b" in things and "c" not in things and len(things) == 2
    assert list(things) == ["b", "a"] and dict(things.items()) == {"b": 2, "a": 1}
    assert things.names() == ["a", "b"]
    with pytest.raises(KeyError):
        things["c"]
    with pytest.raises(TypeError):
        things["c"] = 3


def test_registry_get_errors_unless_a_default_is_given():
    things = registry.Registry("thing", {"apple": 1}, param="fruit", advice="Plant one.")
    assert things.get("apple") == 1
    assert things.get("pear", None) is None and things.get(["apple"], 0) == 0
    with pytest.raises(errors.ArgumentError) as error:
        things.get("aple")
    assert str(error.value) == ("Unknown thing 'aple'. Received: fruit='aple'. Did you mean "
                                "'apple'? Valid names: 'apple'. Plant one.")


def test_register_adds_and_refuses_taken_and_bad_names():
    things = registry.Registry("thing", error=UnknownModelError)
    assert things.register("a", 1) == 1 and things.get("a") == 1
    with pytest.raises(UnknownModelError, match=r"'a' is already registered\. Received: name='a'"):
        things.register("a", 2)
    for bad in ("", None, 3):
        with pytest.raises(UnknownModelError, match="must be a non-empty string. Received"):
            things.register(bad, 2)
    assert dict(things) == {"a": 1}


def test_copy_is_independent():
    things = registry.Registry("thing", {"a": 1}, param="fruit")
    copy = things.copy()
    copy.register("b", 2)
    assert "b" not in things and copy.names() == ["a", "b"]
    with pytest.raises(errors.ArgumentError, match="Received: fruit="):
        copy.get("c")


@pytest.mark.parametrize("lookup_name, name, expected, error", [
    (lambda name: method_registry.get(name), "sgm", "sgn", errors.ArgumentError),
    (lambda name: method_registry.method_class(name), "sgm", "sgn", errors.ArgumentError),
    (lambda name: model_registry.get(name), "sgn_mnist_cn", "sgn_mnist_cnn",
     errors.ArgumentError),
    (recipes.get_recipe, "fashion_mnst", "fashion_mnist", errors.ArgumentError),
    (data_catalog.check_name, "fashion-mnist", "fashion_mnist", errors.ArgumentError),
    (data_catalog.check_name, "CIFAR-10", "cifar10", errors.ArgumentError),
    (attack_registry.parse_attack, "apgd-c", "apgd-ce", errors.ArgumentError),
    (zoo_catalog.get_entry, "sgn-cnn-fashion-mnst", "sgn-cnn-fashion-mnist",
     UnknownModelError),
])
def test_every_registry_refuses_an_unknown_name_through_the_helper(
        monkeypatch, lookup_name, name, expected, error):
    calls = []
    message_of = registry.unknown_name_message

    def spy(*args, **kwargs):
        calls.append(args[0])
        return message_of(*args, **kwargs)

    monkeypatch.setattr(registry, "unknown_name_message", spy)
    with pytest.raises(error) as raised:
        lookup_name(name)
    message = str(raised.value)
    assert calls == [name]
    assert "unknown" in message.lower() and f"={name!r}." in message
    assert f"Did you mean {expected!r}" in message and "Valid names: " in message

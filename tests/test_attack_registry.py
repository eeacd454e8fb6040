"""The attack registry: typed options checked at parse time, AutoAttack's presets,
running every registered attack by name, and the per-iteration cost hook."""

import importlib

import numpy as np
import pytest

from keras_sgn import attacks
from tests.helpers import assert_in_ball

registry = importlib.import_module("keras_sgn.attacks.registry")


def test_options_are_typed_from_the_defaults():
    spec = registry.parse_attack("pgd-ce:random_start=False,steps=50,step_size=0.01")
    settings = spec.settings()
    assert settings["random_start"] is False
    assert settings["steps"] == 50 and isinstance(settings["steps"], int)
    assert settings["step_size"] == 0.01 and settings["restarts"] == 1
    assert registry.parse_attack("pgd-ce:random_start=true").settings()["random_start"] is True
    assert registry.parse_attack("pgd-ce:step_size=None").settings()["step_size"] is None
    rho = registry.parse_attack("apgd-ce:rho=1").settings()["rho"]
    assert rho == 1.0 and isinstance(rho, float)
    assert registry.parse_attack(" apgd-t : n_target_classes = 3 ").settings()[
        "n_target_classes"] == 3
    assert spec.label == "pgd-ce:random_start=False,steps=50,step_size=0.01"
    # Python values are checked and typed the same way (numpy integers included).
    direct = registry.AttackSpec("square", (("n_queries", np.int64(100)), ("p_init", 1)))
    assert direct.settings() == {"n_queries": 100, "p_init": 1.0}
    assert type(direct.settings()["n_queries"]) is int


@pytest.mark.parametrize("text,words", [
    ("apgd-ce:stpes=50", ["'stpes'", "'apgd-ce'", "steps, restarts, rho"]),
    ("pgd-cw:random_start=maybe", ["'random_start'", "'pgd-cw'", "true or false"]),
    ("apgd-t:steps=ten", ["'steps'", "'apgd-t'", "integer >= 1"]),
    ("apgd-ce:steps=0", ["'steps'", "integer >= 1", "steps='0'"]),
    ("apgd-ce:steps=2.5", ["'steps'", "integer >= 1"]),
    ("fab-t:beta=0", ["'beta'", "'fab-t'", "(0, 1]"]),
    ("fab:eta=0.9", ["'eta'", ">= 1"]),
    ("pgd:loss=dlr", ["'loss'", "'pgd'", "ce, cw"]),
    ("square:p_init=1.5", ["'p_init'", "'square'"]),
    ("square:n_queries", ["'n_queries'", "key=value", "n_queries, p_init"]),
    ("fgsm:steps=3", ["'steps'", "'fgsm'", "loss, random_start"]),
    ("apgd-xx", ["'apgd-xx'", "apgd-ce", "fab-t", "standard"]),
])
def test_bad_options_fail_at_parse_time_naming_attack_option_and_valid_ones(text, words):
    with pytest.raises(ValueError) as error:
        registry.parse_attacks("apgd-ce;" + text)  # the good first attack does not delay it
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_specs_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match="'restarts' of attack 'pgd-ce'"):
        registry.AttackSpec("pgd-ce", (("restarts", 0),))
    with pytest.raises(ValueError, match="'random_start'"):
        registry.AttackSpec("pgd-ce", (("random_start", 1),))  # a number is not a bool
    with pytest.raises(ValueError, match="unknown attack"):
        registry.AttackSpec("nope")
    custom = registry.AttackSpec("mine", (("anything", "goes"),), fn=lambda *args: args[1])
    assert custom.kind == "custom" and custom.settings() == {"anything": "goes"}


def test_presets_are_autoattacks():
    def names(preset):
        return [(s.name, s.settings()) for s in registry.parse_attacks(preset)]

    standard = names("standard")
    assert [name for name, _ in standard] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(s["steps"] == 100 for name, s in standard if name != "square")
    assert all(s["restarts"] == 1 for name, s in standard if name != "square")
    assert standard[1][1]["n_target_classes"] == 9 and standard[2][1]["n_target_classes"] == 9
    assert standard[3][1]["n_queries"] == 5000 and standard[3][1]["p_init"] == 0.8
    plus = dict(names("plus"))
    assert [name for name, _ in names("plus")] == ["apgd-ce", "apgd-dlr", "fab", "square",
                                                   "apgd-t", "fab-t"]
    assert plus["apgd-ce"]["restarts"] == plus["apgd-dlr"]["restarts"] == 5
    assert plus["fab"]["restarts"] == 5 and plus["fab-t"]["restarts"] == 1
    assert plus["apgd-t"]["restarts"] == 1 and plus["apgd-t"]["n_target_classes"] == 9
    assert names("quick") == standard[:2]
    fab = standard[2][1]
    assert (fab["alpha_max"], fab["eta"], fab["beta"]) == (0.1, 1.05, 0.9)
    assert registry.parse_attacks(" quick ") == registry.parse_attacks(["apgd-ce", "apgd-t"])


def test_custom_lists_and_errors():
    specs = registry.parse_attacks("pgd-ce; square:n_queries=1000;")
    assert [s.label for s in specs] == ["pgd-ce", "square:n_queries=1000"]
    assert registry.parse_attacks(specs) == specs
    with pytest.raises(ValueError, match="at least one attack"):
        registry.parse_attacks(" ; ")
    assert registry.get("fab-t").kind == "white-box"
    assert registry.get("square").iteration_option == "n_queries"
    with pytest.raises(ValueError, match="already registered"):
        registry.register("pgd-ce", attacks.pgd, "white-box", {})


def test_a_registered_attack_is_parsed_and_run_by_name(digits_mlp):
    model, x, y = digits_mlp

    def shift(model, x, y, *, epsilon, norm, seed, amount):
        return np.clip(x + amount * epsilon, 0.0, 1.0).astype(np.float32)

    registry.register("shift", shift, "custom", {"amount": registry.Option(1.0, float)})
    try:
        spec = registry.parse_attack("shift:amount=0.5")
        np.testing.assert_allclose(spec.run(model, x[:4], y[:4], 0.2, "linf"),
                                   np.clip(x[:4] + 0.1, 0, 1), rtol=1e-6)
    finally:
        del registry.ATTACKS["shift"]


_SMALL = {"fgsm": "", "pgd": ":steps=3,loss=cw", "pgd-ce": ":steps=3", "pgd-cw": ":steps=3",
          "apgd-ce": ":steps=3", "apgd-dlr": ":steps=3", "apgd-t": ":steps=3,n_target_classes=2",
          "fab": ":steps=3", "fab-t": ":steps=3,n_target_classes=2", "square": ":n_queries=20"}


@pytest.mark.parametrize("name", sorted(_SMALL))
def test_every_registered_attack_runs_by_name_within_the_ball(digits_mlp, name):
    assert set(_SMALL) == set(registry.ATTACKS)
    model, x, y = digits_mlp
    x, y = x[:24], y[:24]
    spec = registry.parse_attack(name + _SMALL[name])
    x_adv = np.asarray(spec.run(model, x, y, 0.1, "linf", seed=1))
    assert_in_ball(x_adv, x, 0.1, "linf")
    assert np.any(x_adv != x)


@pytest.mark.parametrize("name", ["pgd-ce", "fab", "fgsm"])
def test_cost_per_iteration_against_a_forward_backward_pass(digits_mlp, name):
    model, x, y = digits_mlp
    cost = attacks.timing.cost_per_iteration(model, x[:256], y[:256], name, epsilon=0.1,
                                             iterations=(2, 8), repeats=2)
    assert cost["attack"] == name and cost["batch_size"] == 256
    assert cost["iteration_option"] == (None if name == "fgsm" else "steps")
    assert cost["seconds_forward_backward"] > 0
    assert cost["seconds_per_iteration"] >= 0
    assert np.isfinite(cost["forward_backward_per_iteration"])
    # Timing on a shared CPU is noisy: only the order of magnitude is checked.
    assert cost["forward_backward_per_iteration"] < 200


@pytest.mark.parametrize("name", sorted(_SMALL))
def test_settings_written_out_parse_back_to_the_same_settings(name):
    # A report's protocol lists every setting; `name:key=value,...` of it must parse back.
    spec = registry.parse_attack(name + _SMALL[name])
    text = name + ":" + ",".join(f"{k}={v}" for k, v in spec.settings().items())
    assert registry.parse_attack(text).settings() == spec.settings()

"""The run configuration (keras_sgn/config.py), the dataset recipes
(keras_sgn/recipes.py) and the flags made from them (tools/flags.py)."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from absl import flags as absl_flags

from keras_sgn import config, recipes, training
from tests.helpers import tool_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = tuple(f.name for f in dataclasses.fields(config.TrainConfig))


tool_flags = tool_module("flags.py", "keras_sgn_tool_flags")


# -- field metadata ------------------------------------------------------------------

def test_every_field_has_a_group_and_help():
    specs = config.field_specs()
    assert tuple(s.name for s in specs) == FIELDS
    for spec in specs:
        assert spec.group in config.GROUPS, spec
        assert len(spec.help) > 10 and spec.help.endswith((".", ")")), spec
        assert spec.type in (str, int, float, bool), spec
    assert {s.group for s in specs} == set(config.GROUPS)
    assert [s.name for s in config.field_specs("evaluation")] == [
        "eval_steps", "test_steps", "test_restarts", "n_test", "test_order"]
    with pytest.raises(ValueError, match="group"):
        config.field_specs("optimisation")


def test_recipe_and_runtime_partition_the_fields():
    recipe, runtime = config.recipe_fields(), config.runtime_fields()
    assert not set(recipe) & set(runtime)
    assert sorted(recipe + runtime) == sorted(FIELDS)
    assert set(runtime) == {"data_dir", "download", "test_steps", "test_restarts", "n_test",
                            "test_order", "strategy", "tpu", "jit_compile", "output_dir",
                            "backup_every_steps", "verbose", "allow_large_epsilon", "overwrite"}
    for name in ("dataset", "model", "method", "seed", "epsilon", "sites", "beta",
                 "eval_steps", "n_train", "n_eval", "sync_batch_norm", "mixed_precision"):
        assert name in recipe
    # The fields a dataset recipe fills in are recipe fields.
    assert set(recipes.RECIPE_KEYS) <= set(recipe)


def test_a_resumed_run_may_change_the_runtime_fields_only():
    # What training._RESUME_MAY_CHANGE allowed before it moved into the metadata.
    assert set(config.resumable_fields()) == {
        "verbose", "test_steps", "test_restarts", "backup_every_steps", "jit_compile",
        "strategy", "tpu", "data_dir", "download", "output_dir", "allow_large_epsilon",
        "overwrite", "n_test", "test_order"}
    saved = config.TrainConfig(dataset="digits").resolved()
    for name, value in (("verbose", 2), ("output_dir", "elsewhere"), ("test_steps", 3)):
        training.run.check_resumable(saved.to_dict(), dataclasses.replace(saved, **{name: value}))
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        training.run.check_resumable(saved.to_dict(), dataclasses.replace(saved, seed=1))


def test_choices_come_from_the_registries():
    specs = {s.name: s for s in config.field_specs()}
    from keras_sgn import methods

    # The registry's list (it grows as methods are registered), the baselines included.
    assert specs["method"].choices == tuple(methods.list_methods())
    assert {"fast", "free", "pgd", "sgn", "sgn-pgd", "standard", "trades"} <= set(
        specs["method"].choices)
    assert specs["norm"].choices == ("linf", "l2")
    assert specs["strategy"].choices == training.STRATEGIES
    assert specs["dataset"].choices is None  # checked with close matches instead
    with pytest.raises(ValueError, match=r"norm must be one of \('linf', 'l2'\). Received"):
        config.TrainConfig(dataset="digits", norm="l3").resolved()


# -- dictionaries ----------------------------------------------------------------------

def test_to_dict_from_dict_round_trip():
    original = config.TrainConfig(dataset="digits", method="trades", trades_beta=3.0,
                                  beta="stage1=0.1", second_order=True, n_train=100)
    values = original.to_dict()
    assert list(values) == list(FIELDS) and values["trades_beta"] == 3.0
    assert config.TrainConfig.from_dict(values) == original
    assert config.TrainConfig.from_dict({"dataset": "digits"}) == config.TrainConfig(
        dataset="digits")


def test_from_dict_refuses_unknown_keys_naming_them():
    with pytest.raises(ValueError, match=r"\['epoch', 'zzz'\].*'epoch': did you mean 'epochs'"):
        config.TrainConfig.from_dict({"dataset": "digits", "epoch": 3, "zzz": 1})


def test_recipe_is_the_recipe_fields():
    resolved = config.TrainConfig(dataset="digits", verbose=0, seed=4).resolved()
    recipe = resolved.recipe()
    assert tuple(recipe) == config.recipe_fields()
    assert recipe["seed"] == 4 and recipe["model"] == "sgn_small_cnn"
    assert "verbose" not in recipe and "output_dir" not in recipe


@pytest.mark.parametrize("method,expected", [
    ("standard", {"epsilon": 0.1, "norm": "linf"}),
    ("pgd", {"epsilon": 0.1, "norm": "linf", "attack_steps": 3, "adversarial_fraction": 1.0}),
    ("free", {"epsilon": 0.1, "norm": "linf", "attack_steps": 3, "replays": 4}),
    ("trades", {"epsilon": 0.1, "norm": "linf", "attack_steps": 3, "trades_beta": 2.0}),
    ("sgn", {"epsilon": 0.1, "norm": "linf", "attack_steps": 3, "clean_weight": 0.5,
             "second_order": True}),
])
def test_method_options_are_what_the_method_takes(method, expected):
    options = config.TrainConfig(
        dataset="digits", method=method, attack_steps=3, free_replays=4, trades_beta=2.0,
        clean_weight=0.5, second_order=True).resolved().method_options()
    assert options == expected  # step_size unset: the method's own default


# -- settings that cannot give a usable model ---------------------------------------------

@pytest.mark.parametrize("kwargs,field,match", [
    (dict(epsilon=5.0), "epsilon", "implausible.*--allow_large_epsilon"),
    (dict(epsilon=0.5), "epsilon", "implausible"),
    (dict(norm="l2", epsilon=4.0), "epsilon", "implausible for l2"),  # 0.5 * sqrt(64)
    (dict(method="pgd", epsilon=0.0), "epsilon", "--method=standard --epsilon=0"),
    (dict(method="sgn", epsilon=0.0), "epsilon", "no adversary"),
    (dict(method="sgn", sites="none"), "sites", "--sites=default"),
    (dict(method="sgn-pgd", sites=""), "sites", "feedback sites"),
    (dict(epsilon=float("inf")), "epsilon", "finite"),
    (dict(dataset="cifar11"), "dataset", "cifar10"),
    (dict(clean_weight=2.0), "clean_weight", "Received"),
    (dict(test_steps=0), "test_steps", "Received"),
])
def test_settings_that_cannot_give_a_usable_model_are_refused(kwargs, field, match):
    with pytest.raises(config.ConfigError, match=match) as info:
        config.TrainConfig(**{"dataset": "digits", **kwargs}).resolved()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)  # what callers caught before


def test_plausible_and_forced_settings_pass():
    config.TrainConfig(dataset="digits", epsilon=0.49).resolved()
    config.TrainConfig(dataset="digits", norm="l2", epsilon=3.9).resolved()
    config.TrainConfig(dataset="digits", epsilon=5.0, allow_large_epsilon=True).resolved()
    config.TrainConfig(dataset="digits", method="standard", sites="none").resolved()
    config.TrainConfig(dataset="digits", method="sgn", sites="input").resolved()


def test_epsilon_zero_is_a_valid_clean_baseline_whose_method_loads_back():
    """It used to train, then save a step size of 0 that loading refuses."""
    from keras_sgn import methods

    options = config.TrainConfig(dataset="digits", method="standard",
                                 epsilon=0.0).resolved().method_options()
    assert options["epsilon"] == 0.0 and options["step_size"] > 0
    method = methods.get("standard", **options)
    assert methods.deserialize(methods.serialize(method)).get_config() == method.get_config()


# -- dataset recipes -------------------------------------------------------------------

def test_recipes_are_registered_data():
    assert recipes.list_recipes() == ["cifar10", "cifar100", "digits", "fashion_mnist",
                                      "mnist", "svhn_cropped"]
    assert recipes.get_recipe("fashion_mnist") == {
        "model": "sgn_mnist_cnn", "epsilon": 0.1, "epochs": 20, "batch_size": 128,
        "learning_rate": 1e-3, "lr_schedule": "cosine", "optimizer": "adam",
        "weight_decay": 0.0}
    copy = recipes.get_recipe("digits")
    copy["epochs"] = 1  # a copy: the registry is unchanged
    assert recipes.get_recipe("digits")["epochs"] == 30
    with pytest.raises(ValueError, match=r"Received: dataset='cifar11'\. Did you mean 'cifar10'"):
        recipes.get_recipe("cifar11")


def test_a_registered_recipe_is_what_resolved_uses(monkeypatch):
    monkeypatch.setitem(recipes.DATASET_RECIPES, "digits", recipes.get_recipe("digits"))
    recipes.register_recipe("digits", **{**recipes.get_recipe("digits"), "epochs": 7,
                                         "optimizer": "sgd"})
    resolved = config.TrainConfig(dataset="digits", optimizer="adam").resolved()
    assert (resolved.epochs, resolved.optimizer) == (7, "adam")  # given values win
    with pytest.raises(ValueError, match=r"unknown keys \['epoch'\].*no value for \['epochs'\]"):
        recipes.register_recipe("x", **{**{k: 1 for k in recipes.RECIPE_KEYS if k != "epochs"},
                                        "epoch": 3})
    assert "x" not in recipes.DATASET_RECIPES


# -- flags -------------------------------------------------------------------------------

def test_a_flag_for_every_field_with_its_type_default_and_help():
    flag_values = absl_flags.FlagValues()
    names = tool_flags.define_config_flags(flag_values)
    assert names == FIELDS
    for spec in config.field_specs():
        flag = flag_values[spec.name]
        assert flag.help.endswith(spec.help), spec.name  # enums prefix their choices
        assert flag.default == spec.default
    assert flag_values["method"].flag_type() == "string enum"
    assert flag_values["epochs"].flag_type() == "int"
    assert flag_values["second_order"].flag_type() == "bool"
    flag_values(["prog", "--dataset=digits", "--method=pgd", "--epochs=3", "--nosync_batch_norm",
                 "--beta=stage1=0.1", "--learning_rate=0.01"])
    parsed = tool_flags.config_from_flags(flag_values)
    assert parsed == config.TrainConfig(dataset="digits", method="pgd", epochs=3,
                                        sync_batch_norm=False, beta="stage1=0.1",
                                        learning_rate=0.01)
    assert tool_flags.config_from_flags(flag_values, epochs=5).epochs == 5


def test_a_tool_keeps_its_own_flags_of_a_field_name():
    flag_values = absl_flags.FlagValues()
    names = tool_flags.define_config_flags(
        flag_values, include=("dataset", "method", "verbose"),
        overrides={"method": {"choices": ("sgn", "sgn-pgd")}, "verbose": {"default": 2}})
    assert names == ("dataset", "method", "verbose")
    absl_flags.DEFINE_string("beta", None, "A search space.", flag_values=flag_values)
    flag_values(["prog", "--method=sgn-pgd", "--beta=0.001:0.1"])
    parsed = tool_flags.config_from_flags(flag_values)
    assert (parsed.method, parsed.verbose, parsed.beta) == ("sgn-pgd", 2, "0.01")
    with pytest.raises(absl_flags.IllegalFlagValueError):
        flag_values["method"].parse("pgd")  # not among this tool's choices
    with pytest.raises(ValueError, match=r"no field\(s\) \['epoch'\]"):
        tool_flags.define_config_flags(absl_flags.FlagValues(), exclude=("epoch",))
    with pytest.raises(ValueError, match="default, help and choices"):
        tool_flags.define_config_flags(absl_flags.FlagValues(), overrides={"seed": {"type": int}})


def _helpfull(tool):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), "--helpfull"],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert "flags:" in result.stdout, result.stderr[-2000:]  # absl exits 1 after help
    return result.stdout


def _count(text, name):
    return len(re.findall(rf"^\s+--(\[no\])?{name}:", text, flags=re.MULTILINE))


def test_train_tool_lists_each_field_once():
    text = _helpfull("train.py")
    for name in FIELDS + ("logical_cpus", "preemption_exit_code"):
        assert _count(text, name) == 1, name
    # The flags belong to the tool: its own --help section lists them.
    assert text.index("tools/train.py:") < text.index("--epochs:")
    assert config.field_specs()[0].help.split(",")[0] in text


def test_tune_tool_shares_the_train_flags():
    text = _helpfull("tune.py")
    for name in FIELDS + ("logical_cpus",):
        assert _count(text, name) <= 1, name
    assert _count(text, "dataset") == _count(text, "eval_steps") == 1
    from keras_sgn import tuning

    assert "sgn-pgd" in tuning.hypermodel.METHODS and "standard" not in tuning.hypermodel.METHODS
    tunable = '|'.join(tuning.hypermodel.METHODS)
    assert f"<{tunable}>: Training method." in text  # tune's own choices
    assert "'0.0005:0.01'" in text  # --learning_rate is tune's own: a search spec

"""The run configuration (keras_sgn/config.py), the dataset recipes
(keras_sgn/recipes.py) and the flags made from them (tools/flags.py)."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from absl import flags as absl_flags

from keras_sgn import config, method_options, recipes, training
from tests.helpers import tool_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = tuple(f.name for f in dataclasses.fields(config.TrainConfig))
# One flag per field (but `options`, whose entries are flags) and per method option.
FLAGS = tuple(name for name in FIELDS if name != "options") + tuple(
    option.field for option in method_options.declared())


tool_flags = tool_module("flags.py", "keras_sgn_tool_flags")


# -- field metadata ------------------------------------------------------------------

def test_every_field_has_a_group_and_help():
    specs = config.field_specs()
    assert tuple(s.name for s in specs) == FIELDS
    for spec in specs:
        assert spec.group in config.GROUPS, spec
        assert len(spec.help) > 10 and spec.help.endswith((".", ")")), spec
        assert spec.type in ((dict,) if spec.name == "options" else (str, int, float, bool)), spec
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
    original = config.TrainConfig(dataset="digits", method="sgn-pgd", clean_weight=0.2,
                                  beta="stage1=0.1", second_order=True, n_train=100)
    values = original.to_dict()
    assert list(values) == list(FIELDS)
    assert values["options"] == {"clean_weight": 0.2, "second_order": True}
    assert config.TrainConfig.from_dict(values) == original
    resolved = original.resolved()
    assert config.TrainConfig.from_dict(resolved.to_dict()) == resolved
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


@pytest.mark.parametrize("method,given,expected", [
    ("standard", {}, {"epsilon": 0.1, "norm": "linf"}),
    ("pgd", {}, {"epsilon": 0.1, "norm": "linf", "attack_steps": 3,
                 "adversarial_fraction": 1.0}),
    ("free", {"free_replays": 4}, {"epsilon": 0.1, "norm": "linf", "attack_steps": 3,
                                   "replays": 4}),
    ("trades", {"trades_beta": 2.0}, {"epsilon": 0.1, "norm": "linf", "attack_steps": 3,
                                      "trades_beta": 2.0}),
    ("sgn", {"clean_weight": 0.5}, {"epsilon": 0.1, "norm": "linf", "attack_steps": 3,
                                    "clean_weight": 0.5, "second_order": False}),
])
def test_method_options_are_what_the_method_takes(method, given, expected):
    resolved = config.TrainConfig(dataset="digits", method=method, attack_steps=3,
                                  **given).resolved()
    # The declared defaults are filled in, so equal runs have equal configs.
    assert resolved.options == {**method_options.defaults_of(method), **given}
    assert resolved.method_options() == expected  # step_size unset: the method's own default


# -- method options: declared by the methods -------------------------------------------

def test_every_method_option_is_declared_for_registered_methods_and_is_no_field():
    from keras_sgn import methods

    assert not {o.field for o in method_options.declared()} & set(FIELDS)
    registered = set(methods.list_methods())
    for option in method_options.declared():
        assert set(option.methods) <= registered, option
        assert option.type in (str, int, float, bool) and len(option.help) > 10, option
    # The constructor of each method takes the arguments its options set, at their defaults.
    for name in methods.list_methods():
        defaults = {o.argument: o.default for o in method_options.options_of(name)}
        method = methods.get(name, epsilon=0.1, **defaults)
        assert {k: method.get_config()[k] for k in defaults} == defaults, name


def test_an_option_of_another_method_is_refused_naming_it_and_the_fix():
    with pytest.raises(config.ConfigError, match=(
            r"trades_beta is an option of trades only, not of method 'pgd'.*Received: "
            r"trades_beta=3\.0 with method=pgd\. Remove trades_beta.*method=trades")) as info:
        config.TrainConfig(dataset="digits", method="pgd", trades_beta=3.0).resolved()
    assert info.value.field == "trades_beta"
    with pytest.raises(config.ConfigError, match="free, sgn-reuse only"):
        config.TrainConfig(dataset="digits", method="sgn", options={"free_replays": 2}).resolved()
    with pytest.raises(config.ConfigError, match=r"No method option 'trades_bet'.*'trades_beta'"):
        config.TrainConfig(dataset="digits", method="trades",
                           options={"trades_bet": 3.0}).resolved()
    with pytest.raises(config.ConfigError, match=r"generator_input must be one of"):
        config.TrainConfig(dataset="digits", method="sgn-learned-start",
                           generator_input="gradient").resolved()
    with pytest.raises(TypeError, match=r"'trade_beta': did you mean 'trades_beta'"):
        config.TrainConfig(method="trades", trade_beta=3.0)


def test_a_finish_method_takes_its_own_options():
    resolved = config.TrainConfig(dataset="digits", method="sgn", finish_method="pgd",
                                  adversarial_fraction=0.5, epochs=10).resolved()
    assert resolved.options == {"clean_weight": 0.0, "second_order": False,
                                "adversarial_fraction": 0.5}
    options, first_epoch = resolved.finish_options()
    assert options["adversarial_fraction"] == 0.5 and first_epoch == 8
    assert "adversarial_fraction" not in resolved.method_options()


def test_method_options_import_no_tensorflow():
    """The tools make flags of them, and their `--help` imports no TensorFlow."""
    code = ("import os, sys; os.environ['KERAS_SGN_LAZY_IMPORT'] = '1'; "
            "from keras_sgn import config, method_options; "
            "config.TrainConfig.from_dict({'method': 'pgd', 'trades_beta': 3.0}); "
            "assert method_options.options_of('trades'); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_a_new_method_declares_its_options_without_touching_the_config(monkeypatch):
    """An option declared for a newly registered method is a flag, a config value and a
    constructor argument; config.py knows nothing of it."""
    from keras_sgn import methods

    class WarmStart(methods.AdversarialTraining):
        options = methods.AdversarialTraining.options + ("warm_share",)

        def __init__(self, warm_share=0.1, **kwargs):
            super().__init__(**kwargs)
            if not 0 <= warm_share < 1:
                raise ValueError(f"warm_share must be in [0, 1). Received: {warm_share}.")
            self.warm_share = warm_share

    monkeypatch.setattr(methods.registry.METHODS, "_items",
                        {**methods.registry.METHODS._items, "pgd-warm": WarmStart})
    monkeypatch.setattr(method_options, "_DECLARED", dict(method_options._DECLARED))
    method_options.declare("warm_share", type=float, default=0.1, methods=("pgd-warm",),
                           help="Share of the epochs trained clean first.")
    method_options.take("pgd-warm", "adversarial_fraction")
    assert "warm_share" not in FIELDS

    resolved = config.TrainConfig(dataset="digits", method="pgd-warm", warm_share=0.3).resolved()
    assert resolved.options == {"warm_share": 0.3, "adversarial_fraction": 1.0}
    assert resolved.method_options()["warm_share"] == 0.3
    assert methods.get("pgd-warm", **resolved.method_options()).warm_share == 0.3
    with pytest.raises(config.ConfigError, match="warm_share must be in") as info:
        config.TrainConfig(dataset="digits", method="pgd-warm", warm_share=1.5).resolved()
    assert info.value.field == "warm_share"  # the method's own check, naming the option
    with pytest.raises(config.ConfigError, match="option of pgd-warm only"):
        config.TrainConfig(dataset="digits", method="pgd", warm_share=0.3).resolved()

    flag_values = absl_flags.FlagValues()
    tool_flags.define_config_flags(
        flag_values, overrides={"method": {"choices": config.names.METHODS + ("pgd-warm",)}})
    assert flag_values["warm_share"].help == (
        "Share of the epochs trained clean first. Methods: pgd-warm.")
    flag_values(["prog", "--dataset=digits", "--method=pgd-warm", "--warm_share=0.25"])
    assert tool_flags.config_from_flags(flag_values).options == {
        "warm_share": 0.25, "adversarial_fraction": 1.0}
    with pytest.raises(ValueError, match=r"already declared.*take"):
        method_options.declare("warm_share", type=float, default=0.1, methods=("x",), help="x.")


# -- config.json files of the earlier layout (each option a key of its own) -------------

LEGACY_SGN = {  # a resolved sgn run's config.json before `options` existed (abridged)
    "dataset": "digits", "method": "sgn", "epochs": 30, "clean_weight": 0.25,
    "second_order": False, "free_replays": 8, "trades_beta": 6.0, "memory_decay": 1.0,
    "memory_reset_every": 0, "adversarial_fraction": 1.0, "generator_width": 16,
    "generator_learning_rate": 0.001, "generator_input": "sign", "seed": 0}


def test_a_legacy_flat_config_loads_with_the_methods_options_only():
    loaded = config.TrainConfig.from_dict(LEGACY_SGN)
    assert loaded.options == {"clean_weight": 0.25, "second_order": False}
    assert loaded.resolved() == config.TrainConfig(dataset="digits", method="sgn", epochs=30,
                                                   clean_weight=0.25).resolved()
    pgd = config.TrainConfig.from_dict({**LEGACY_SGN, "method": "pgd",
                                        "adversarial_fraction": 0.5})
    assert pgd.options == {"adversarial_fraction": 0.5}
    # Compared with today's config of the same run, it is the same run.
    today = config.TrainConfig(dataset="digits", epochs=30, clean_weight=0.25).resolved()
    saved = {k: v for k, v in today.to_dict().items() if k != "options"}
    saved.update({k: v for k, v in LEGACY_SGN.items() if k not in saved})  # every option
    assert not training.run_folder.differences(config.saved_settings(saved), today.to_dict())
    training.run.check_resumable(saved, today)
    with pytest.raises(ValueError, match=r"\(clean_weight: 0\.25 -> 0\.5\)"):
        training.run.check_resumable(saved, dataclasses.replace(today, clean_weight=0.5))
    # A damaged config.json is compared as it is.
    assert config.saved_settings({"zzz": 1}) == {"zzz": 1}


def test_commands_and_model_cards_read_the_options_of_either_layout():
    from keras_sgn import hub

    today = config.TrainConfig(dataset="digits", clean_weight=0.25).resolved().to_dict()
    earlier = {**{k: v for k, v in today.items() if k != "options"},
               **{k: v for k, v in LEGACY_SGN.items() if k not in today}}
    command = hub.metadata.train_command(today, "runs/x")
    assert " --clean_weight=0.25 " in command and "options" not in command
    assert "second_order" not in command  # at its default
    assert hub.metadata.train_command(earlier, "runs/x") == command
    for values in (today, earlier):
        assert config.flat_settings(values)["clean_weight"] == 0.25
    recipe = hub.metadata._recipe("x", earlier, {"evaluate_command": "e"})
    assert recipe["train_config"]["options"] == {"clean_weight": 0.25, "second_order": False}


def test_the_study_state_folders_config_json_load():
    """The run folders of the committed studies (written before `options` existed)."""
    import glob
    import json

    paths = glob.glob(os.path.join(ROOT, "docs", "reproduce", "*", "state", "*", "config.json"))
    for path in paths:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        loaded = config.TrainConfig.from_dict(saved)
        taken = {o.field for o in method_options.options_of(loaded.method,
                                                             loaded.finish_method)}
        assert set(loaded.options) == taken, path
        assert all(loaded.options[k] == saved[k] for k in taken if k in saved), path


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
    assert names == FLAGS
    for spec in config.field_specs():
        if spec.name == "options":
            continue
        flag = flag_values[spec.name]
        assert flag.help.endswith(spec.help), spec.name  # enums prefix their choices
        assert flag.default == spec.default
    for option in method_options.declared():
        flag = flag_values[option.field]
        assert flag.help.endswith(f"Methods: {', '.join(option.methods)}."), option.field
        assert flag.default == option.default
    assert flag_values["method"].flag_type() == "string enum"
    assert flag_values["epochs"].flag_type() == "int"
    assert flag_values["second_order"].flag_type() == "bool"
    flag_values(["prog", "--dataset=digits", "--method=pgd", "--epochs=3", "--nosync_batch_norm",
                 "--beta=stage1=0.1", "--learning_rate=0.01", "--adversarial_fraction=0.5"])
    parsed = tool_flags.config_from_flags(flag_values)
    assert parsed == config.TrainConfig(dataset="digits", method="pgd", epochs=3,
                                        sync_batch_norm=False, beta="stage1=0.1",
                                        learning_rate=0.01, adversarial_fraction=0.5)
    assert tool_flags.config_from_flags(flag_values, epochs=5).epochs == 5


def test_a_flag_of_another_methods_option_is_refused_naming_the_flag():
    flag_values = absl_flags.FlagValues()
    tool_flags.define_config_flags(flag_values)
    flag_values(["prog", "--method=pgd", "--trades_beta=3"])
    with pytest.raises(config.ConfigError, match=(
            r"^--trades_beta is an option of trades only, not of method 'pgd' \(it would be "
            r"ignored\)\. Received: --trades_beta=3\.0 with --method=pgd\. Remove "
            r"--trades_beta, or train with a method that takes it \(--method=trades\)\.$")) as info:
        tool_flags.config_from_flags(flag_values)
    assert info.value.field == "trades_beta"
    # At its default, left out: only the method's own options are kept.
    flag_values = absl_flags.FlagValues()
    tool_flags.define_config_flags(flag_values)
    flag_values(["prog", "--method=trades", "--trades_beta=3"])
    assert tool_flags.config_from_flags(flag_values).options == {"trades_beta": 3.0}


def test_train_tool_refuses_a_foreign_option_in_one_line():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--method=pgd",
         "--trades_beta=3", "--output_dir=/nonexistent/never-written"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: --trades_beta is an option of trades only, not of method 'pgd' (it would be "
        "ignored). Received: --trades_beta=3.0 with --method=pgd. Remove --trades_beta, or "
        "train with a method that takes it (--method=trades)."]


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
    with pytest.raises(ValueError, match=r"no field\(s\) or method option\(s\) \['epoch'\]"):
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
    for name in FLAGS + ("logical_cpus", "preemption_exit_code"):
        assert _count(text, name) == 1, name
    assert "Weight of TRADES' KL (robustness) term. Methods: trades." in " ".join(text.split())
    # The flags belong to the tool: its own --help section lists them.
    assert text.index("tools/train.py:") < text.index("--epochs:")
    assert config.field_specs()[0].help.split(",")[0] in text


def test_tune_tool_shares_the_train_flags():
    text = _helpfull("tune.py")
    for name in FLAGS + ("logical_cpus",):
        assert _count(text, name) <= 1, name
    assert _count(text, "dataset") == _count(text, "eval_steps") == 1
    from keras_sgn import tuning

    assert "sgn-pgd" in tuning.hypermodel.METHODS and "standard" not in tuning.hypermodel.METHODS
    tunable = '|'.join(tuning.hypermodel.METHODS)
    assert f"<{tunable}>: Training method." in text  # tune's own choices
    assert "'0.0005:0.01'" in text  # --learning_rate is tune's own: a search spec

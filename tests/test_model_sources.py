"""keras_sgn.evaluation.sources: a saved file, a run folder or a zoo name -> the model, its
dataset and threat model, resolved one way for every tool and `evaluate_pretrained`."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from keras_sgn import errors, io_utils, recipes, zoo
from keras_sgn.evaluation import sources

ZOO_NAME = "sgn-cnn-digits"  # shipped in the package: loads offline
TOOL_FLAGS = dict(reference_flag="--model", run_dir_flag="--run_dir")


def _save_dense(path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.save(path)
    return model


def _run_folder(folder, config=None, model=True):
    """A finished tools/train.py-like run folder; its model.keras is a stand-in unless
    loaded (`model=False`: a run that has not written one yet, nor its summary)."""
    folder.mkdir(parents=True, exist_ok=True)
    if model:
        (folder / "model.keras").write_bytes(b"not loaded by the resolver")
        (folder / "summary.json").write_text("{}")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


RUN_CONFIG = {"dataset": "mnist", "norm": "linf", "epsilon": 0.2, "data_dir": "/data",
              "method": "sgn", "epochs": 3}


# -- which model -----------------------------------------------------------------------------

def test_a_saved_file_with_nothing_beside_it(tmp_path):
    path = tmp_path / "m.keras"
    model = _save_dense(path)
    source = sources.resolve_model(str(path))
    assert (source.label, source.path, source.entry, source.run_dir) == (
        str(path), str(path), None, None)
    assert dict(source.defaults) == {} and not source.is_zoo
    assert source.default_output_dir == str(tmp_path / "eval")
    loaded = sources.load(source)
    assert loaded.count_params() == model.count_params()
    x = np.zeros((2, 8, 8, 1), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_saved_file_takes_the_run_config_beside_it(tmp_path):
    _run_folder(tmp_path, RUN_CONFIG, model=False)
    path = tmp_path / "best.keras"
    path.write_bytes(b"x")
    source = sources.resolve_model(path)  # a pathlib.Path works too
    assert dict(source.defaults) == {"dataset": "mnist", "norm": "linf", "epsilon": 0.2,
                                     "data_dir": "/data"}  # only what evaluation uses


@pytest.mark.parametrize("how", ["run_dir", "reference"])
def test_a_run_folder(tmp_path, how):
    run = _run_folder(tmp_path / "run", RUN_CONFIG)
    source = (sources.resolve_model(run_dir=str(run)) if how == "run_dir" else
              sources.resolve_model(str(run)))
    assert source.run_dir == str(run) and source.path == str(run / "model.keras")
    assert source.label == str(run / "model.keras") and source.flag is None
    assert source.defaults["dataset"] == "mnist" and source.defaults["epsilon"] == 0.2
    assert source.default_output_dir == str(run / "eval")


def test_a_source_is_read_only(tmp_path):
    source = sources.resolve_model(run_dir=str(_run_folder(tmp_path, RUN_CONFIG)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.label = "other"
    with pytest.raises(TypeError):
        source.defaults["epsilon"] = 1.0


def test_an_unfinished_run_says_so(tmp_path):
    run = _run_folder(tmp_path / "run", RUN_CONFIG, model=False)
    with pytest.raises(sources.UnfinishedRunError) as info:
        sources.resolve_model(run_dir=str(run), **TOOL_FLAGS)
    assert isinstance(info.value, errors.MissingFileError)
    assert info.value.strerror == (f"--run_dir: no model.keras in {str(run)!r}. Give the "
                                   "--output_dir of a finished tools/train.py run.")
    (run / "backup").mkdir()
    with pytest.raises(sources.UnfinishedRunError, match="Training has not finished"):
        sources.resolve_model(str(run), **TOOL_FLAGS)
    # Its best epoch so far, written before the run finished: not the run's result.
    (run / "model.keras").write_bytes(b"not loaded by the resolver")
    with pytest.raises(sources.UnfinishedRunError, match=(
            r"holds no summary.json: its training has not finished.*--model=")):
        sources.resolve_model(run_dir=str(run), **TOOL_FLAGS)


def test_a_damaged_run_config_is_refused_naming_the_argument(tmp_path):
    run = _run_folder(tmp_path / "run")
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(io_utils.CorruptFileError, match=(
            rf"config.json is not a JSON object.*Received: --run_dir={run}\.")):
        sources.resolve_model(run_dir=str(run), **TOOL_FLAGS)


def test_a_zoo_name():
    source = sources.resolve_model(ZOO_NAME)
    assert source.is_zoo and source.entry.name == ZOO_NAME and source.path is None
    assert source.label == ZOO_NAME
    assert dict(source.defaults) == {"dataset": "digits", "norm": "linf", "epsilon": 0.1}
    assert source.default_output_dir == f"runs/{ZOO_NAME}/eval"
    assert sources.load(source).output_shape[-1] == 10  # shipped: no network


def test_an_unknown_name_lists_close_matches():
    with pytest.raises(sources.UnknownModelSourceError) as info:
        sources.resolve_model("sgn-cnn-digit", **TOOL_FLAGS)
    message = str(info.value)
    assert message.startswith("--model: no saved model at 'sgn-cnn-digit', and not a zoo "
                              "name either.")
    assert ZOO_NAME in message
    # Caught as an argument error, and as the zoo's own unknown-name error.
    assert isinstance(info.value, errors.ArgumentError)
    assert isinstance(info.value, zoo.UnknownModelError)


def test_both_or_neither_is_refused():
    with pytest.raises(sources.ModelSourceError,
                       match="^--run_dir and --model are exclusive: give one of them.$"):
        sources.resolve_model(ZOO_NAME, run_dir="runs/x", **TOOL_FLAGS)
    with pytest.raises(sources.ModelSourceError) as info:
        sources.resolve_model(**TOOL_FLAGS)
    assert str(info.value) == ("give --run_dir=RUN_DIR (a tools/train.py output dir) or "
                               "--model=PATH_OR_ZOO_NAME.")
    with pytest.raises(errors.ArgumentError, match="^give run_dir=RUN_DIR .* or reference="):
        sources.resolve_model()  # the Python API names its own arguments


def test_load_options_are_for_a_zoo_model_only(tmp_path):
    path = tmp_path / "m.keras"
    _save_dense(path)
    with pytest.raises(errors.ArgumentError, match="local_files_only: options of a zoo"):
        sources.load(sources.resolve_model(str(path)), local_files_only=True)


def test_a_damaged_file_is_corrupt_naming_the_flag(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"truncated")
    source = sources.resolve_model(str(path), **TOOL_FLAGS)
    with pytest.raises(io_utils.CorruptFileError, match=rf"^--model={path} is corrupt"):
        sources.load(source)


# -- which dataset and threat model ------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_model():
    return sources.resolve_model(ZOO_NAME)


def test_the_entry_says_the_threat_model(zoo_model):
    assert sources.resolve_threat_model(zoo_model) == ("digits", "linf", 0.1)


def test_what_the_caller_gives_wins(zoo_model):
    assert sources.resolve_threat_model(zoo_model, epsilon=0.05) == ("digits", "linf", 0.05)
    assert sources.resolve_threat_model(zoo_model, "mnist", "l2", 1.5) == ("mnist", "l2", 1.5)


def test_a_radius_for_another_norm_or_dataset_is_not_reused(zoo_model):
    # The entry's 0.1 is an L-inf radius on digits: L2 takes the L2 default...
    assert sources.resolve_threat_model(zoo_model, norm="l2") == ("digits", "l2", 0.5)
    # ...and another dataset takes that dataset's recipe radius.
    assert sources.resolve_threat_model(zoo_model, dataset="mnist") == (
        "mnist", "linf", recipes.DATASET_RECIPES["mnist"]["epsilon"])


def test_a_run_config_is_used_like_an_entry(tmp_path):
    source = sources.resolve_model(run_dir=str(_run_folder(tmp_path, RUN_CONFIG)))
    assert sources.resolve_threat_model(source) == ("mnist", "linf", 0.2)


def test_a_model_that_says_nothing_takes_the_recipe(tmp_path):
    assert sources.resolve_threat_model(None) == ("cifar10", "linf", 8 / 255)
    path = tmp_path / "m.keras"
    path.write_bytes(b"x")
    source = sources.resolve_model(str(path))
    assert sources.resolve_threat_model(source, "fashion_mnist") == (
        "fashion_mnist", "linf", recipes.DATASET_RECIPES["fashion_mnist"]["epsilon"])
    assert sources.default_epsilon("digits", "l2") == 0.5


def test_a_bad_dataset_or_radius_is_an_argument_error(zoo_model):
    with pytest.raises(errors.ArgumentError, match="^--dataset: .*'imagenet'"):
        sources.resolve_threat_model(zoo_model, dataset="imagenet", dataset_flag="--dataset")
    with pytest.raises(errors.ArgumentError, match="epsilon"):
        sources.resolve_threat_model(zoo_model, epsilon=-1.0)
    with pytest.raises(errors.ArgumentError):
        sources.resolve_threat_model(zoo_model, norm="l3")

"""Which model, which dataset, which threat model: one answer for every tool and the API.

A model is named one of three ways: a saved `.keras` file, a `tools/train.py` run folder
(its `model.keras`, with the run's `config.json` beside it) or a zoo name
(`keras_sgn.list_pretrained()`). `resolve_model` turns that name into a `ModelSource`:
the model's label, where it is, what its run or zoo entry says (`defaults`: dataset, norm,
epsilon, data_dir) and where its report goes by default. `resolve_threat_model` then picks
the dataset and threat model (what the caller gives, else what the run or entry says,
else the dataset's recipe), and `load` loads the model. `tools/evaluate.py`,
`tools/benchmark.py` and `evaluate_pretrained` all go through here, so they answer the
same way.

```python
source = resolve_model("sgn-cnn-digits")        # or "runs/x", or "runs/x/model.keras"
dataset, norm, epsilon = resolve_threat_model(source)
model = load(source)
```

The errors name the argument the caller gave; a tool passes its flag names
(`reference_flag="--model"`) so that its one `error:` line names the flag.
"""

import dataclasses
import errno
import os
import types

from keras_sgn import attacks, data, io_utils, recipes, zoo
from keras_sgn.errors import ArgumentError, MissingFileError, checked_arguments
from keras_sgn.evaluation.inputs import check_epsilon

#: The file a `tools/train.py` run writes once it has finished (its final test).
RUN_SUMMARY_FILE = "summary.json"
#: The file a finished `tools/train.py` run leaves its model in.
RUN_MODEL_FILE = "model.keras"
#: What a run's `config.json` or a zoo entry says that the evaluation uses.
DEFAULT_KEYS = ("dataset", "norm", "epsilon", "data_dir")
#: The folder, under a run folder or beside a model file, its report goes to by default.
EVAL_FOLDER = "eval"


class ModelSourceError(ArgumentError):
    """No model named, two named, or a name that is neither a file nor a zoo entry."""


class UnknownModelSourceError(ModelSourceError, zoo.UnknownModelError):
    """Neither a saved model at that path nor a zoo name (the message lists close
    matches of the zoo)."""


class UnfinishedRunError(MissingFileError):
    """A run folder holds no `model.keras` or no `summary.json` (training has not
    finished, or another folder)."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model as the caller named it, not loaded yet (`load` loads it).

    Attributes:
        label: how reports name the model (the zoo name, or the model file's path).
        path: the saved `.keras` file (None for a zoo model).
        entry: the `ZooEntry` (None for a file).
        run_dir: the run folder the model is from (None if not named as a run).
        defaults: what the run's `config.json` or the zoo entry says, read-only:
            some of `dataset`, `norm`, `epsilon`, `data_dir`.
        default_output_dir: where its report goes unless told (`RUN_DIR/eval`, the
            model file's folder `/eval`, or `runs/ZOO_NAME/eval`).
        flag: the argument that named the file, for `load`'s errors (None: the path alone).
    """

    label: str
    path: str | None = None
    entry: zoo.ZooEntry | None = None
    run_dir: str | None = None
    defaults: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}))
    default_output_dir: str | None = None
    flag: str | None = None

    @property
    def is_zoo(self):
        """Whether the model is a zoo entry's (`load` then downloads or reads the shipped
        files) rather than a saved file."""
        return self.entry is not None


def _defaults(values):
    return types.MappingProxyType({key: values[key] for key in DEFAULT_KEYS
                                   if values.get(key) is not None})


def _read_run_config(folder, received):
    """What the run's `config.json` in `folder` says ({} if there is none)."""
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        return _defaults({})
    return _defaults(io_utils.read_json_object(
        path, f"Received: {received}. Restore the run's config.json, or move it away and "
        "give --dataset, --norm and --epsilon."))


def _run_source(run_dir, flag):
    model_path = os.path.join(run_dir, RUN_MODEL_FILE)
    if not os.path.exists(model_path):
        hint = (" Training has not finished (a backup is there): rerun the train command."
                if os.path.isdir(os.path.join(run_dir, "backup")) else
                " Give the --output_dir of a finished tools/train.py run.")
        raise UnfinishedRunError(errno.ENOENT,
                                 f"{flag}: no {RUN_MODEL_FILE} in {run_dir!r}.{hint}")
    if not os.path.exists(os.path.join(run_dir, RUN_SUMMARY_FILE)):
        # model.keras of a run still training (or killed) is its best epoch so far: a
        # report of it must not pass for the run's result.
        raise UnfinishedRunError(
            errno.ENOENT, f"{flag}: {run_dir!r} holds no {RUN_SUMMARY_FILE}: its training has "
            f"not finished, and its {RUN_MODEL_FILE} is only the best epoch so far. Rerun its "
            "tools/train.py command to finish it (it resumes), or evaluate that file as it is "
            f"with --model={os.path.join(run_dir, RUN_MODEL_FILE)}. Received: {flag}={run_dir}.")
    return ModelSource(label=model_path, path=model_path, run_dir=run_dir,
                       defaults=_read_run_config(run_dir, f"{flag}={run_dir}"),
                       default_output_dir=os.path.join(run_dir, EVAL_FOLDER))


def _file_source(path, flag):
    folder = os.path.dirname(os.path.abspath(path))
    return ModelSource(label=path, path=path, flag=flag,
                       defaults=_read_run_config(folder, f"{flag}={path}"),
                       default_output_dir=os.path.join(os.path.dirname(path), EVAL_FOLDER))


def zoo_source(name, entries_dir=None):
    """The `ModelSource` of the zoo entry `name`; `zoo.UnknownModelError` (close
    matches listed) if there is none."""
    entry = zoo.get_entry(name, entries_dir)
    return ModelSource(label=entry.name, entry=entry,
                       defaults=_defaults(dict(entry.threat_model or {}, dataset=entry.dataset)),
                       default_output_dir=os.path.join("runs", entry.name, EVAL_FOLDER))


def resolve_model(reference=None, *, run_dir=None, entries_dir=None,
                  reference_flag="reference", run_dir_flag="run_dir"):
    """Which model: a saved `.keras` file, a run folder or a zoo name, as a `ModelSource`.

    Args:
        reference: a path to a saved `.keras` model, a `tools/train.py` run folder, or a
            zoo name (`keras_sgn.list_pretrained()`); an existing path wins over a zoo name.
        run_dir: instead of `reference`: a `tools/train.py` run folder.
        entries_dir: the zoo entries' folder (default: the package's).
        reference_flag, run_dir_flag: how the caller names the two arguments in its
            errors (a tool: `"--model"`, `"--run_dir"`).

    Returns:
        A `ModelSource`; nothing is loaded yet (`load`).

    Raises:
        ModelSourceError: both or neither given.
        UnknownModelSourceError: `reference` is no file and no zoo name.
        UnfinishedRunError: the run folder holds no `model.keras`, or no `summary.json`
            (its training has not finished).
        CorruptFileError: the run's `config.json` is damaged.
    """
    if run_dir and reference:
        raise ModelSourceError(f"{run_dir_flag} and {reference_flag} are exclusive: give one "
                               "of them.")
    if not (run_dir or reference):
        raise ModelSourceError(f"give {run_dir_flag}=RUN_DIR (a tools/train.py output dir) or "
                               f"{reference_flag}=PATH_OR_ZOO_NAME.")
    if run_dir:
        return _run_source(run_dir, run_dir_flag)
    reference = os.fspath(reference)
    if os.path.isdir(reference):
        return _run_source(reference, reference_flag)
    if os.path.exists(reference):
        return _file_source(reference, reference_flag)
    try:
        return zoo_source(reference, entries_dir)
    except zoo.UnknownModelError as error:
        raise UnknownModelSourceError(f"{reference_flag}: no saved model at {reference!r}, and "
                                      f"not a zoo name either. {error}") from None


def default_epsilon(dataset, norm="linf"):
    """The radius a dataset is attacked at when nothing says one: 0.5 for L2, else the
    dataset's recipe's L-inf epsilon (8/255 for a dataset without a recipe)."""
    if norm == "l2":
        return 0.5
    return recipes.DATASET_RECIPES.get(dataset, {}).get("epsilon", 8 / 255)


def resolve_threat_model(source, dataset=None, norm=None, epsilon=None, *,
                         dataset_flag="dataset"):
    """`(dataset, norm, epsilon)` to evaluate `source` at.

    Each is what the caller gives, else what the run or zoo entry says
    (`source.defaults`; None: a model that says nothing, as an untrained one), else the
    default: cifar10, linf, `default_epsilon`. A radius the run or entry gives for another
    norm or dataset than the one chosen is not reused.

    Raises:
        ArgumentError: an unknown dataset (named by `dataset_flag`), an epsilon or norm
            the attacks refuse.
    """
    defaults = source.defaults if source is not None else {}
    dataset = dataset or defaults.get("dataset") or "cifar10"
    try:
        data.info(dataset)  # an unknown name fails before anything loads
    except ValueError as error:
        raise ArgumentError(f"{dataset_flag}: {error}") from None
    norm = norm or defaults.get("norm") or "linf"
    if epsilon is None:
        same = (defaults.get("norm", "linf") == norm
                and defaults.get("dataset", dataset) == dataset)
        epsilon = defaults.get("epsilon") if same else None
    if epsilon is None:
        epsilon = default_epsilon(dataset, norm)
    check_epsilon(epsilon)
    with checked_arguments():
        attacks.core.check_attack_args(epsilon, 1, norm)
    return dataset, norm, epsilon


def load(source, **load_options):
    """The model of `source`: a zoo model with `keras_sgn.load_pretrained(entry,
    **load_options)` (`revision`, `cache_dir`, `local_files_only`...), a file with
    `io_utils.load_model_file` (a truncated or foreign file is a `CorruptFileError`)."""
    if source.is_zoo:
        return zoo.loading.load_pretrained(source.entry, **load_options)
    if load_options:
        raise ArgumentError(f"{', '.join(sorted(load_options))}: options of a zoo model's "
                            f"download, but {source.label!r} is a file.")
    import keras_sgn  # noqa: F401  (registers the custom objects)

    return io_utils.load_model_file(source.path, flag=source.flag)

"""keras_sgn.cli (a user's mistake is one line, a bug a traceback) and
keras_sgn.provenance (version, commit and library versions, never failing)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from absl import app, flags

import keras_sgn
from keras_sgn import cli, data, hub, io_utils, provenance, zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raised(error_class, message):
    try:
        raise error_class(message)
    except error_class as error:
        return error


def test_library_errors_are_user_errors_and_bugs_are_not():
    with pytest.raises(ValueError) as bad_epsilon:
        keras_sgn.evaluation.inputs.check_epsilon(float("nan"))
    assert cli.is_user_error(bad_epsilon.value)  # an ArgumentError: a ValueError too
    with pytest.raises(ValueError) as numpy_error:
        np.concatenate([])
    assert not cli.is_user_error(numpy_error.value)  # from inside NumPy: a bug
    assert not cli.is_user_error(_raised(KeyError, "x"))
    assert not cli.is_user_error(_raised(ValueError, "a plain ValueError is a bug"))
    assert cli.is_user_error(zoo.NotPublishedError("not published"))
    assert cli.is_user_error(data.DatasetNotAvailableError("no data"))
    assert cli.is_user_error(app.UsageError("--x: wrong"))
    assert cli.is_user_error(hub.PublishError("no report"))
    assert cli.error_line(ValueError("epsilon must be >= 0.")) == "error: epsilon must be >= 0."


def test_the_error_hierarchy():
    from keras_sgn import config, errors, training

    typed = [config.ConfigError, training.RunFolderError, training.RunFolderBusyError,
             io_utils.OutOfSpaceError, io_utils.CorruptFileError, training.distribute.StrategyError,
             training.callbacks.TrainingDiverged, data.DatasetNotAvailableError,
             data.DatasetIntegrityError, zoo.ZooError, zoo.UnknownModelError,
             zoo.ChecksumMismatchError, hub.PublishError, errors.ArgumentError,
             errors.MissingFileError]
    for error_class in typed:
        assert issubclass(error_class, errors.UserError), error_class
    # Code that catches the built-in kinds still does.
    for error_class, builtin in [(config.ConfigError, ValueError),
                                 (training.RunFolderError, ValueError),
                                 (training.callbacks.TrainingDiverged, ValueError),
                                 (io_utils.OutOfSpaceError, OSError),
                                 (data.DatasetNotAvailableError, FileNotFoundError),
                                 (zoo.UnknownModelError, ValueError),
                                 (errors.MissingFileError, FileNotFoundError)]:
        assert issubclass(error_class, builtin), (error_class, builtin)
    # A preemption is no mistake: the tools exit with its code, not as a user error.
    assert issubclass(training.callbacks.TrainingPreempted, errors.KerasSGNError)
    assert not issubclass(training.callbacks.TrainingPreempted, errors.UserError)
    error = config.ConfigError("epsilon", "epsilon=5 is implausible.\nPass --allow_large_epsilon.")
    assert cli.error_line(error) == (
        "error: --epsilon: epsilon=5 is implausible. Pass --allow_large_epsilon.")
    assert cli.error_line(training.RunFolderError("--output_dir=x is a file.")) == (
        "error: --output_dir=x is a file.")
    assert cli.error_line(io_utils.OutOfSpaceError(28, "Out of disk space.")) == (
        "error: Out of disk space.")  # not "[Errno 28] Out of disk space."


def test_the_errors_module_imports_no_tensorflow():
    code = ("import os, sys; os.environ['KERAS_SGN_LAZY_IMPORT'] = '1'; "
            "import keras_sgn.cli, keras_sgn.errors; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture
def run_tool(capsys):
    """`cli.run_tool(main, argv)` in this process: `(exit code, stderr)`."""
    def run(main, argv=("tool.py",), **kwargs):
        try:
            cli.run_tool(main, list(argv), **kwargs)
        except SystemExit as stop:
            return stop.code, capsys.readouterr().err
        finally:
            flags.FLAGS.unparse_flags()
        return 0, capsys.readouterr().err

    return run


def test_run_tool_prints_one_line_for_user_errors(run_tool):
    def main(argv):
        keras_sgn.evaluation.inputs.check_epsilon(-1)

    code, err = run_tool(main)
    assert code == cli.USAGE_EXIT_CODE
    assert err.startswith("error: epsilon must be a finite number >= 0")
    assert err.count("\n") == 1 and "Traceback" not in err

    def usage(argv):
        raise app.UsageError("--model: give a path or a zoo name.")

    assert run_tool(usage) == (2, "error: --model: give a path or a zoo name.\n")


def test_run_tool_keeps_the_traceback_of_bugs(run_tool, monkeypatch):
    def buggy(argv):
        return {}["missing"]

    with pytest.raises(KeyError):
        run_tool(buggy)
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")  # and of user errors, on request
    with pytest.raises(ValueError, match="epsilon"):
        run_tool(lambda argv: keras_sgn.evaluation.inputs.check_epsilon(-1))


def test_run_tool_reports_bad_flags_in_one_line(run_tool):
    code, err = run_tool(lambda argv: None, ("tool.py", "--no_such_flag=1"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: Unknown command line flag 'no_such_flag'")
    assert "tool.py --helpshort" in err


def test_provenance_names_version_commit_and_libraries():
    import keras
    import tensorflow as tf

    record = provenance.provenance()
    assert record["keras_sgn"] == keras_sgn.__version__
    assert (record["tensorflow"], record["keras"], record["numpy"]) == (
        tf.__version__, keras.__version__, np.__version__)
    assert record["python"].count(".") == 2
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    if shutil.which("git") and os.path.isdir(os.path.join(ROOT, ".git")):
        assert record["git_commit"] == head and len(head) == 40
        assert isinstance(record["git_dirty"], bool)
    assert provenance.library_version("no_such_library_xyz") is None
    assert set(provenance.provenance(("numpy",))) == {
        "keras_sgn", "git_commit", "git_dirty", "python", "numpy"}


def test_no_commit_outside_a_checkout_and_without_git(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "keras_sgn"
    package.mkdir(parents=True)
    assert provenance.git_state(str(package)) == (None, None)
    # A package installed inside some other repository has no commit of its own.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    provenance.git_state.cache_clear()
    assert provenance.git_state(str(package)) == (None, None)
    # The checkout's top folder holding the package does count.
    subprocess.run(["git", "init", "-q", str(package.parent)], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "c"], cwd=package.parent, check=True)
    provenance.git_state.cache_clear()
    commit, dirty = provenance.git_state(str(package))
    assert len(commit) == 40 and dirty is False
    provenance.git_state.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git at all: never fails
    try:
        assert provenance.git_commit() is None
    finally:
        provenance.git_state.cache_clear()


def test_default_publish_name_comes_from_the_run():
    assert hub.metadata.default_name({"method": "sgn", "model": "sgn_small_cnn",
                                      "dataset": "digits"}) == "sgn-small-cnn-digits"
    assert hub.metadata.default_name({"method": "pgd", "model": "sgn_wrn_28_10",
                                      "dataset": "fashion_mnist"}) == "pgd-wrn-28-10-fashion-mnist"
    name = hub.metadata.default_name({"method": "trades", "model": "My Net!", "dataset": "cifar10"})
    assert name == "trades-my-net-cifar10"

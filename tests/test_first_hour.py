"""A newcomer's first hour: data that downloads like the ecosystem's, a quiet start,
a fast `--help`, boolean flags that cannot be misread, and named classes.

No test here opens a network connection: downloads are served from a local folder by a fake
`keras_sgn.data.download.fetch`, and "offline" makes every socket call fail as on a machine
without a network.
"""

import errno
import gzip
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

from keras_sgn import cli, data
from keras_sgn.attacks import registry as attack_registry
from keras_sgn.data import catalog, download, idx, sources
from tests.helpers import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"train": 12, "test": 4}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """None of this machine's copies is found: HOME, the tfds folder, the system folders and
    the decoded-array cache are below `tmp_path`."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("KERAS_SGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"fashion_mnist": (str(tmp_path / "system"),),
                                                 "mnist": ()})
    return tmp_path


@pytest.fixture
def no_connection(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    for owner, name in ((socket, "getaddrinfo"), (socket, "create_connection"),
                        (socket.socket, "connect")):
        monkeypatch.setattr(owner, name, refuse)


@pytest.fixture
def offline(monkeypatch):
    """As on a machine without a network: every look-up and connection fails at once."""
    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    for owner, name in ((socket, "getaddrinfo"), (socket, "create_connection"),
                        (socket.socket, "connect")):
        monkeypatch.setattr(owner, name, unreachable)


def _idx_bytes(array, magic):
    return struct.pack(">I" + "I" * array.ndim, magic, *array.shape) + array.tobytes()


@pytest.fixture
def tiny_fashion(isolated, monkeypatch):
    """A miniature Fashion-MNIST (12 training, 4 test images) as the four .gz files of Keras'
    server, in `isolated/server`, with its sha256 values and sizes patched in; `fetch` serves
    them from there. Returns `(server folder, {split: (images, labels)}, requested urls)`."""
    rng = np.random.RandomState(0)
    server = isolated / "server"
    server.mkdir()
    arrays, digests = {}, {}
    for split, (images_stem, labels_stem) in idx.FILES.items():
        images = rng.randint(0, 256, (TINY[split], 28, 28)).astype(np.uint8)
        labels = (np.arange(TINY[split]) % 10).astype(np.uint8)
        arrays[split] = images, labels
        for stem, payload in ((images_stem, _idx_bytes(images, 0x0803)),
                              (labels_stem, _idx_bytes(labels, 0x0801))):
            (server / (stem + ".gz")).write_bytes(gzip.compress(payload))
            digests[stem] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(idx.SHA256, "fashion_mnist", digests)
    monkeypatch.setitem(catalog.ORIGINAL_SIZES, "fashion_mnist", dict(TINY))
    monkeypatch.setattr(catalog, "VALIDATION_SIZE", 2)
    catalog.cached_info.cache_clear()
    requested = []

    def fake_fetch(url, path, timeout=None):
        requested.append(url)
        shutil.copyfile(server / url.rsplit("/", 1)[1], path)

    monkeypatch.setattr(download, "fetch", fake_fetch)
    yield server, arrays, requested
    catalog.cached_info.cache_clear()


def _keras_cache(isolated):
    return isolated / "home" / ".keras" / "datasets" / "fashion-mnist"


def _rows(images):
    return sorted(bytes(row) for row in np.asarray(images, np.uint8).reshape(len(images), -1))


def test_a_missing_dataset_is_downloaded_verified_and_used(tiny_fashion, isolated):
    server, arrays, requested = tiny_fashion
    x, y = collect(data.load("fashion_mnist", "test", batch_size=8))
    assert sorted(requested) == sorted(download.KERAS_FILES["fashion_mnist"].values())
    assert all(url.startswith(download.KERAS_ORIGIN) for url in requested)
    # The verified files are in the Keras cache, where keras.datasets keeps them; no
    # temporary download is left beside them.
    cache = _keras_cache(isolated)
    assert sorted(os.listdir(cache)) == sorted(s + ".gz" for s in idx.ALL_FILES)
    assert data.sources.locate("fashion_mnist").path == str(cache)
    # ... and what was loaded is what the server had.
    assert _rows(np.round(x * 255)) == _rows(arrays["test"][0])
    assert sorted(y.tolist()) == sorted(arrays["test"][1].tolist())
    # Found locally from now on: no second download.
    data.load("fashion_mnist", "train", batch_size=8)
    assert len(requested) == 4


def test_a_corrupted_download_is_refused_and_not_kept(tiny_fashion, isolated):
    server, _, requested = tiny_fashion
    stem = idx.FILES["train"][0]
    payload = bytearray(gzip.decompress((server / (stem + ".gz")).read_bytes()))
    payload[100] ^= 0xFF  # one changed pixel: same size, another sha256
    (server / (stem + ".gz")).write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(data.DatasetIntegrityError, match=f"{stem}.*sha256") as error:
        data.load("fashion_mnist", "test")
    assert "removed" in str(error.value)
    assert os.listdir(_keras_cache(isolated)) == []  # neither the files nor a temporary folder
    with pytest.raises(data.DatasetIntegrityError):  # tried again next time, never used
        data.prepare("fashion_mnist")
    assert len(requested) == 8


def test_a_download_that_fails_midway_keeps_nothing(tiny_fashion, isolated, monkeypatch):
    served = []

    def fails_on_the_third_file(url, path, timeout=None):
        if len(served) == 2:
            raise download.DownloadFailed(f"{url}: Connection reset by peer")
        served.append(url)
        shutil.copyfile(tiny_fashion[0] / url.rsplit("/", 1)[1], path)

    monkeypatch.setattr(download, "fetch", fails_on_the_third_file)
    with pytest.raises(data.DatasetNotAvailableError, match="Connection reset"):
        data.prepare("fashion_mnist")
    assert os.listdir(_keras_cache(isolated)) == []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_offline_is_one_line_within_seconds(isolated, offline, name):
    started = time.monotonic()
    with pytest.raises(data.DatasetNotAvailableError) as error:
        data.prepare(name)
    assert time.monotonic() - started < 5
    line = cli.error_line(error.value)
    assert "\n" not in line and line.startswith(f"error: dataset {name!r} is not on this machine")
    assert "could not be downloaded" in line and "Network is unreachable" in line
    for needle in ("`make data`", "--data_dir", "--dataset=digits"):
        assert needle in line, (needle, line)
    assert "name=" not in line and "data_dir=" not in line  # flag terms, not Python's
    # The Python message keeps the details, in parameter terms.
    assert "data_dir=" in str(error.value) and "download=True" in str(error.value)
    assert not os.path.exists(isolated / "home" / ".keras" / "datasets" / "fashion-mnist" /
                              idx.ALL_FILES[0])


def test_offline_names_fashion_mnist_when_it_is_installed(isolated, offline):
    (isolated / "system").mkdir()
    for stem in idx.ALL_FILES:
        (isolated / "system" / (stem + ".gz")).write_bytes(b"")
    with pytest.raises(data.DatasetNotAvailableError) as error:
        data.prepare("cifar10")
    assert "--dataset=fashion_mnist" in error.value.command_line


def test_no_download_never_opens_a_connection(isolated, no_connection):
    for name in ("mnist", "cifar10"):
        with pytest.raises(data.DatasetNotAvailableError) as error:
            data.load(name, "test", download=False)
        assert "--nodownload" in error.value.command_line
        assert "download=False" in str(error.value)
    with pytest.raises(ValueError, match="download must be True or False"):
        data.prepare("mnist", download="no")


def test_a_training_run_without_its_data_leaves_no_folder(isolated, offline):
    from keras_sgn import training
    from keras_sgn.config import TrainConfig

    output_dir = isolated / "runs" / "sgn"
    with pytest.raises(data.DatasetNotAvailableError):
        training.train(TrainConfig(dataset="cifar10", output_dir=str(output_dir), epochs=1))
    assert not (isolated / "runs").exists()


def test_the_train_tool_without_its_data_is_one_line_and_leaves_no_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=ROOT, TFDS_DATA_DIR=str(tmp_path / "tfds"), HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--nodownload",
         "--output_dir", str(tmp_path / "runs" / "sgn")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert result.returncode == cli.USAGE_EXIT_CODE, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: dataset 'cifar10' is not on this machine")
    assert "--nodownload" in result.stderr and "--data_dir" in result.stderr
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- boolean flags

flags.DEFINE_bool("first_hour_switch", False, "A boolean flag of these tests.")
flags.DEFINE_string("first_hour_text", "", "A string flag of these tests.")


@pytest.fixture
def run_tool(capsys):
    """`cli.run_tool(main, argv)` in this process: `(exit code, stderr, what main saw)`."""
    def run(*args):
        seen = {}

        def main(argv):
            seen.update(argv=argv, switch=flags.FLAGS.first_hour_switch)

        try:
            cli.run_tool(main, ["tool.py", *args])
        except SystemExit as stop:
            return stop.code or 0, capsys.readouterr().err, seen
        finally:
            flags.FLAGS.unparse_flags()
        return 0, capsys.readouterr().err, seen

    return run


@pytest.mark.parametrize("args", [("--first_hour_switch", "false"),
                                  ("--first_hour_switch", "False"),
                                  ("--nofirst_hour_switch", "true"),
                                  ("--first_hour_text", "x", "--first_hour_switch", "0")])
def test_a_boolean_flag_followed_by_a_value_is_a_usage_error(run_tool, args):
    code, err, seen = run_tool(*args)
    assert code == cli.USAGE_EXIT_CODE and not seen  # main never ran
    assert err.count("\n") == 1 and err.startswith("error: --")
    assert "--first_hour_switch=false" in err and "--nofirst_hour_switch" in err


def test_a_stray_argument_is_a_usage_error(run_tool):
    code, err, seen = run_tool("--first_hour_text", "a", "stray")
    assert (code, seen) == (cli.USAGE_EXIT_CODE, {})
    assert err.startswith("error: unexpected argument 'stray'") and err.count("\n") == 1
    code, err, _ = run_tool("--", "after")  # nothing after `--` is a flag either
    assert code == cli.USAGE_EXIT_CODE and "'after'" in err


def test_boolean_flags_written_as_documented_still_work(run_tool):
    for args, expected in ((("--first_hour_switch=false",), False),
                           (("--first_hour_switch",), True),
                           (("--nofirst_hour_switch",), False),
                           (("--first_hour_switch=true", "--first_hour_text", "false"), True)):
        code, err, seen = run_tool(*args)
        assert (code, err, seen["switch"]) == (0, "", expected), args


def test_the_train_tool_refuses_a_separate_boolean_value(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--dataset=digits",
         "--overwrite", "false", "--output_dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == cli.USAGE_EXIT_CODE, result.stderr
    assert result.stderr.startswith("error: --overwrite false: a boolean flag takes no separate")
    assert "--overwrite=false" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- a quiet start


def _stderr_lines(*args, env=None):
    """The lines a user sees on stderr running `python args` (without the test session's
    TF_CPP_MIN_LOG_LEVEL)."""
    env = {k: v for k, v in (env or os.environ).items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(env, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_importing_keras_sgn_prints_nothing_beyond_tensorflow():
    tensorflow = _stderr_lines("-c", "import tensorflow")
    keras_sgn = _stderr_lines("-c", "import keras_sgn")
    assert len(keras_sgn) <= len(tensorflow), keras_sgn


@pytest.mark.slow
def test_a_mirrored_run_at_verbose_0_prints_no_info_logs(tmp_path):
    lines = _stderr_lines(
        os.path.join(ROOT, "tools", "train.py"), "--dataset=digits", "--strategy=mirrored",
        "--logical_cpus=2", "--batch_size=32", "--epochs=1", "--n_train=64", "--n_eval=32",
        "--eval_steps=1", "--test_steps=1", "--verbose=0", f"--output_dir={tmp_path}")
    assert lines == []  # was ~46 lines ("Using MirroredStrategy ...", "Reduce to ...")


# ----------------------------------------------------------------------------- --help


TOOL_SCRIPT = """
import runpy, sys
sys.path.insert(0, {tools!r})
sys.argv = {argv!r}
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    print("EXIT", stop.code)
print("IMPORTED TENSORFLOW" if "tensorflow" in sys.modules else "NO TENSORFLOW")
"""


def _run_tool_in_script(tool, *args):
    """`tools/<tool> args` run by a script that then says whether TensorFlow was imported."""
    path = os.path.join(ROOT, "tools", tool)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_SGN_LAZY_IMPORT"}
    return subprocess.run(
        [sys.executable, "-c", TOOL_SCRIPT.format(tools=os.path.dirname(path),
                                                  argv=[path, *args])],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(env, PYTHONPATH=ROOT))


@pytest.mark.parametrize("tool", ["train.py", "tune.py", "evaluate.py", "publish.py",
                                  "reproduce.py", "benchmark.py", "summarize_runs.py"])
def test_help_imports_no_tensorflow(tool):
    result = _run_tool_in_script(tool, "--help")
    assert result.stdout.rstrip().endswith("NO TENSORFLOW"), result.stdout[-2000:]
    assert "--helpfull" in result.stdout  # the help itself was printed


@pytest.mark.parametrize("tool,args,named", [
    ("train.py", ["--epsilon=-0.1"], "--epsilon"),
    ("train.py", ["--dataset=digits", "--learning_rate=inf"], "--learning_rate"),
    ("train.py", ["--epsilon=5"], "--allow_large_epsilon"),
    ("train.py", ["--lr_decay_at=0.9,0.5"], "--lr_decay_at"),
    ("tune.py", ["--attack_steps=0"], "--attack_steps"),
    ("train.py", ["--method=sgm"], "--method"),  # absl's own check of a closed choice
])
def test_a_bad_flag_value_is_refused_before_tensorflow_starts(tool, args, named, tmp_path):
    """The checks that need no registry run before TensorFlow's 5-15 s start: the user
    has the one line within a second, and nothing is written."""
    result = _run_tool_in_script(tool, *args, f"--output_dir={tmp_path / 'run'}")
    assert result.stdout.split("\n")[-3:-1] == [f"EXIT {cli.USAGE_EXIT_CODE}",
                                                 "NO TENSORFLOW"], result.stdout[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_summarize_runs_never_starts_tensorflow(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(
        {"method": "sgn", "model": "sgn_small_cnn", "dataset": "digits", "epsilon": 0.1,
         "clean_accuracy": 0.9, "robust_accuracy": 0.5, "per_attack": {"pgd-ce": 0.5},
         "train_seconds": 1.0}))
    result = _run_tool_in_script("summarize_runs.py", f"--runs={tmp_path}/*")
    assert "| `sgn` | sgn_small_cnn | digits | - | 0.900 | 0.500 |" in result.stdout
    assert result.stdout.rstrip().endswith("EXIT None\nNO TENSORFLOW"), result.stdout[-2000:]


def test_the_names_the_flags_offer_are_the_registries():
    from keras_sgn import attacks, layers, methods, names, training, tuning

    assert names.METHODS == tuple(methods.list_methods())
    assert names.MULTI_STEP_METHODS == tuple(
        m for m in methods.list_methods() if methods.registry.method_class(m).multi_step)
    assert names.NORMS == attacks.NORMS and names.NORMALIZATIONS == layers.NORMALIZATIONS
    assert names.TUNERS == tuning.TUNERS
    assert names.TUNABLE_METHODS == tuple(tuning.hypermodel.METHODS)
    assert names.PREEMPTION_EXIT_CODE == training.callbacks.TrainingPreempted.exit_code
    assert names.ATTACKS == tuple(sorted(attack_registry.ATTACKS))
    from keras_sgn.experiments import reproduce

    assert names.STUDIES == reproduce.STUDIES
    assert names.DEFAULT_VAL_STEPS == reproduce.DEFAULT_VAL_STEPS


def test_importing_keras_sgn_still_registers_everything_with_keras():
    code = ("import sys, keras_sgn; print(all(f'keras_sgn.{p}' in sys.modules for p in "
            "('attacks', 'data', 'evaluation', 'layers', 'methods', 'models', 'training', "
            "'zoo')))")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_SGN_LAZY_IMPORT"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(env, PYTHONPATH=ROOT))
    assert result.stdout.strip() == "True", result.stderr[-2000:]
    import keras_sgn

    assert keras_sgn.load_pretrained is keras_sgn.zoo.loading.load_pretrained  # __all__ resolves
    with pytest.raises(AttributeError):
        keras_sgn.no_such_part  # noqa: B018


def test_summarize_runs_refuses_a_stray_argument_before_importing_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "summarize_runs.py"),
         f"--runs={tmp_path}/*", "runs/other"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ,
                                                                         PYTHONPATH=ROOT))
    assert result.returncode == cli.USAGE_EXIT_CODE
    assert result.stderr.startswith("error: unexpected argument 'runs/other'")


def test_make_demo_prints_its_number_beside_a_measured_reference():
    """`make demo` ends with the reference line: the same network and recipe trained
    without an adversary, measured by the demo's own final test (a real training run's
    summary.json, not a number typed in)."""
    from keras_sgn import training

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, "docs", "reproduce", "digits-demo-reference")
    with open(os.path.join(folder, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(folder, "config.json")) as f:
        reference = training.TrainConfig.from_dict(json.load(f))
    demo = training.TrainConfig(dataset="digits", method="sgn").resolved()
    assert (summary["method"], summary["dataset"]) == ("standard", "digits")
    for field in ("model", "epochs", "batch_size", "learning_rate", "lr_schedule", "optimizer",
                  "epsilon", "norm", "seed", "eval_steps", "n_eval", "n_test", "test_order"):
        assert getattr(reference, field) == getattr(demo, field), field  # the demo's recipe
    assert summary["protocol"]["suite"] == "quick" and summary["n_test_examples"] == 360
    assert 0 <= summary["robust_accuracy"] < summary["clean_accuracy"] <= 1
    dry_run = subprocess.run(["make", "-n", "demo"], cwd=root, capture_output=True, text=True,
                             check=True).stdout
    assert "digits-demo-reference/summary.json" in dry_run and "reference:" in dry_run
    with open(os.path.join(root, "README.md")) as f:  # the README quotes the same numbers
        readme = f.read()
    assert (f"{summary['clean_accuracy']:.4f}, robust **{summary['robust_accuracy']:.4f}**"
            in readme)

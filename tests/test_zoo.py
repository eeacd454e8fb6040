"""The model zoo: entries, export, the Hub file protocol (local server), load_pretrained's
verification and errors, tools/publish.py, and the shipped digits model."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types

import h5py
import huggingface_hub
import keras
import numpy as np
import pytest
from huggingface_hub import constants as hf_constants

import keras_sgn
from keras_sgn import evaluation, hub, models, recipes, training, zoo
from keras_sgn.reporting.robustness_report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from hub_server import HubServer  # noqa: E402

from tests.helpers import TOOLS_DIR, tool_module  # noqa: E402

NAME = "tiny-sgn"
REPO = "tests/tiny-sgn"
FAST = dict(backoff=0.001, max_retries=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, digits_arrays):
    """A tools/train.py-like output dir of a tiny compiled SGN (optimizer state
    included), plus a real evaluation report of it."""
    run_dir = tmp_path_factory.mktemp("run")
    model = models.get("sgn_small_cnn", width=4)
    model.compile(optimizer="adam", method="sgn", epsilon=0.1)
    model.optimizer.build(model.trainable_variables)
    model.save(run_dir / "model.keras")
    config = training.TrainConfig(dataset="digits", method="sgn", epochs=1,
                                  output_dir=str(run_dir)).resolved()
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (run_dir / "summary.json").write_text(json.dumps({"epochs": 1, "best_epoch": 1,
                                                      "best_val_robust_accuracy": 0.1}))
    x, y = digits_arrays("test", 32)
    report = evaluation.evaluate_robustness(model, [(x, y)], epsilon=0.1,
                                            attacks="pgd-ce:steps=2", run_sanity_checks=False,
                                            verbose=False)
    report.update(model=str(run_dir / "model.keras"), dataset="digits", split="test")
    write_report(report, str(run_dir / "eval"))
    return {"dir": run_dir, "model": model, "x": x, "y": y}


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / NAME
    return hub.export_folder(str(tiny_run["dir"]), str(folder), NAME,
                             str(tiny_run["dir"] / "eval"), repo_id=REPO)


@pytest.fixture
def server():
    with HubServer() as running:
        yield running


@pytest.fixture
def published(server, exported, tmp_path):
    """The export served by the local Hub and pinned in a zoo entry."""
    commit = server.add_folder(REPO, exported["folder"])
    entries_dir = tmp_path / "entries"
    entries_dir.mkdir()
    hub.upload.record_entry(str(entries_dir / f"{NAME}.json"), exported["metadata"],
                            exported["files"], status="published", repo_id=REPO,
                            revision=commit)
    options = dict(entries_dir=str(entries_dir), endpoint=server.url,
                   cache_dir=str(tmp_path / "cache"), **FAST)
    return types.SimpleNamespace(commit=commit, entries_dir=entries_dir, options=options,
                                 server=server, cache=tmp_path / "cache")


@pytest.fixture
def no_hf_sleep(monkeypatch):
    """huggingface_hub retries failed metadata requests with 1..8 s sleeps: skip them."""
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", lambda seconds: None)


def _predict(model, x):
    return np.asarray(model(x, training=False))


def _cached_files(cache):
    return sorted(p.name for p in cache.rglob("blobs/*"))


# -- entries and list_pretrained ---------------------------------------------


def test_package_entries_are_valid_and_listed():
    entries = zoo.entries()
    assert {"sgn-resnet18-cifar10", "pgd-resnet18-cifar10", "sgn-cnn-digits"} <= set(entries)
    rows = {r["name"]: r for r in keras_sgn.list_pretrained()}
    digits = rows["sgn-cnn-digits"]
    assert digits["available"] and digits["status"] == "shipped-in-package"
    assert digits["threat_model"] == "linf eps=0.1"
    assert 0.9 < digits["clean_accuracy"] <= 1 and 0 < digits["robust_accuracy"] <= 0.99
    for name in ("sgn-resnet18-cifar10", "pgd-resnet18-cifar10"):
        assert rows[name]["status"] == "recipe-only" and rows[name]["clean_accuracy"] is None
        assert rows[name]["threat_model"] == "linf eps=8/255"
        assert entries[name].recipe["train_command"].startswith("python tools/train.py ")
    assert entries["pgd-resnet18-cifar10"].recipe["train_config"]["sites"] == "none"
    assert "| sgn-cnn-digits | digits |" in zoo.catalog.format_table(keras_sgn.list_pretrained())
    metrics = entries["sgn-cnn-digits"].metrics
    assert metrics["measured_with"] == "tools/evaluate.py" and metrics["n_examples"] == 360
    assert {a["name"] for a in metrics["protocol"]["attacks"]} == {
        "apgd-ce", "apgd-t", "fab-t", "square"}


def test_recipe_command_parses_back_to_the_same_config():
    entry = zoo.get_entry("sgn-cnn-digits")
    command = entry.recipe["train_command"].split()
    values = {}
    for flag in command[2:]:
        key, _, value = flag[2:].partition("=")
        values[key] = value
    config = entry.recipe["train_config"]
    for key in recipes.RECIPE_KEYS + ("dataset", "method", "seed"):
        assert str(config[key]) == values[key] or float(config[key]) == float(values[key])


def test_unknown_name_suggests_close_matches():
    with pytest.raises(zoo.UnknownModelError, match="Did you mean 'sgn-cnn-digits'"):
        keras_sgn.load_pretrained("sgn-cnn-digit")


def test_unpublished_entry_says_how_to_make_it():
    with pytest.raises(zoo.NotPublishedError) as error:
        keras_sgn.load_pretrained("sgn-resnet18-cifar10")
    message = str(error.value)
    assert "tools/train.py --dataset=cifar10" in message
    assert "tools/evaluate.py" in message and "tools/publish.py" in message


def test_malformed_entries_are_rejected(tmp_path):
    good = json.loads(open(zoo.get_entry("sgn-cnn-digits").path).read())
    cases = {
        "revision": "main",                      # not a pinned commit
        "status": "published",                   # published without a revision
        "package_dir": "../../etc",              # outside the package
    }
    for key, value in cases.items():
        path = tmp_path / "sgn-cnn-digits.json"
        path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(zoo.InvalidEntryError, match=key.split("_")[0]):
            zoo.catalog.read_entry(str(path))


def test_entry_checks_are_public_api():
    assert zoo.catalog.is_commit_sha("0123456789abcdef" * 2 + "01234567")
    for text in ("main", "A" * 40, "a" * 39, None, 7):
        assert not zoo.catalog.is_commit_sha(text), text
    raw = json.loads(open(zoo.get_entry("sgn-cnn-digits").path).read())
    entry = zoo.catalog.check_entry(raw, "elsewhere/sgn-cnn-digits.json")
    assert entry.name == "sgn-cnn-digits" and entry.package_dir == "pretrained/sgn-cnn-digits"
    assert os.path.isfile(os.path.join(zoo.catalog.PACKAGE_ROOT, entry.package_dir, "config.json"))
    with pytest.raises(zoo.InvalidEntryError, match="must equal the file name 'other'"):
        zoo.catalog.check_entry(raw, "other.json")


def test_the_zoo_needs_huggingface_hub_only_to_download():
    """`import keras_sgn`, the listing and the shipped model work with
    huggingface_hub unimportable; a download then says it needs it."""
    code = "\n".join([
        "import sys",
        "sys.modules['huggingface_hub'] = None  # any import of it now fails",
        "import keras_sgn, numpy as np",
        "rows = keras_sgn.list_pretrained()",
        "model = keras_sgn.load_pretrained('sgn-cnn-digits')",
        "print(len(rows), model.predict(np.zeros((1, 8, 8, 1), 'float32'), verbose=0).shape)",
        "try:",
        "    keras_sgn.load_pretrained('sgn-cnn-digits', revision='a' * 40)",
        "except ImportError:",
        "    print('download needs huggingface_hub')",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(zoo.entries())} (1, 10)" in result.stdout
    assert "download needs huggingface_hub" in result.stdout


def test_train_command_writes_only_recipe_fields():
    from keras_sgn import config as run_config
    from keras_sgn import method_options

    train_config = dataclasses.asdict(training.TrainConfig(
        dataset="digits", method="sgn", epochs=3, strategy="mirrored", verbose=2,
        output_dir="elsewhere").resolved())
    command = hub.metadata.train_command(train_config, "runs/x")
    assert command.startswith("python tools/train.py --dataset=digits ")
    assert "--epochs=3" in command and command.endswith(" --output_dir=runs/x")
    written = {flag[2:].partition("=")[0] for flag in command.split()[2:-1]}
    options = {option.field for option in method_options.declared()}
    assert written <= set(run_config.recipe_fields()) | options
    assert not {"strategy", "verbose", "output_dir", "data_dir"} & written


# -- export ----------------------------------------------------------------------


def test_export_is_a_keras_directory_model_with_card(exported, tiny_run):
    folder = exported["folder"]
    assert sorted(os.listdir(folder)) == sorted(zoo.catalog.MODEL_FILES)
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["registered_name"] == "keras_sgn>SGNModel" and not config.get("compile_config")
    with h5py.File(os.path.join(folder, "model.weights.h5"), "r") as f:
        names = []
        f.visit(names.append)
    assert names and not [n for n in names if "optimizer" in n]
    metadata = json.load(open(os.path.join(folder, "metadata.json")))
    assert metadata["parameters"] == tiny_run["model"].count_params()
    assert metadata["versions"]["keras"] == keras.__version__ and "keras_version" in metadata
    assert metadata["recipe"]["train_command"].startswith("python tools/train.py --dataset=digits")
    assert metadata["metrics"]["clean_accuracy"] == json.load(
        open(tiny_run["dir"] / "eval" / "report.json"))["clean_accuracy"]
    card = huggingface_hub.ModelCard.load(os.path.join(folder, "README.md"))
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == round(100 * metadata["metrics"]["clean_accuracy"], 2)
    assert results["robust_accuracy"] == round(100 * metadata["metrics"]["robust_accuracy"], 2)
    assert "reconstruction" in card.text and "tools/evaluate.py" in card.text
    for filename, info in exported["files"].items():
        assert zoo.integrity.sha256_file(os.path.join(folder, filename)) == info["sha256"]
    reloaded = keras.saving.load_model(folder, safe_mode=True)  # plain Keras directory load
    np.testing.assert_array_equal(_predict(reloaded, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))


def test_export_takes_the_training_block_from_the_run_summary(exported, tiny_run):
    """metadata.json's `training` block is the run's summary.json at export time, with
    the card's words for the validation estimate; the card shows the same words."""
    summary = json.load(open(tiny_run["dir"] / "summary.json"))
    training = exported["metadata"]["training"]
    label = training.pop("best_val_robust_accuracy_means")
    assert training == summary  # all of this summary's keys are copied, none invented
    assert label == ("cheap per-epoch estimate on the validation split, its attack and size "
                     "not recorded; not a test number")  # this summary predates the record
    card = open(os.path.join(exported["folder"], "README.md")).read()
    assert f"kept epoch 1 by validation robust accuracy 10.00% ({label})" in card
    assert exported["metadata"]["metrics"]["suite"] is None  # pgd-ce:steps=2 is no preset


def test_export_refuses_a_report_of_another_dataset(tiny_run, tmp_path):
    report = json.load(open(tiny_run["dir"] / "eval" / "report.json"))
    report["dataset"] = "mnist"
    with pytest.raises(hub.PublishError, match="dataset"):
        hub.export_folder(str(tiny_run["dir"]), str(tmp_path / "x"), NAME, report)


# -- the round trip through the local Hub ------------------------------------------


def test_round_trip_gives_identical_predictions(published, tiny_run):
    model = keras_sgn.load_pretrained(NAME, **published.options)
    assert isinstance(model, keras_sgn.models.SGNModel)
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))
    methods = [m for m, _ in published.server.requests]
    assert methods.count("GET") == len(zoo.catalog.LOAD_FILES)
    assert all(f"/resolve/{published.commit}/" in p for _, p in published.server.requests)


def test_cached_model_loads_with_zero_requests(published, tiny_run, monkeypatch):
    keras_sgn.load_pretrained(NAME, **published.options)
    published.server.reset_requests()
    keras_sgn.load_pretrained(NAME, **published.options)  # pinned commit: no request at all
    keras_sgn.load_pretrained(NAME, local_files_only=True, **published.options)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    keras_sgn.load_pretrained(NAME, **published.options)
    assert published.server.request_count == 0
    published.server.stop()  # network gone: still loads from the cache
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    model = keras_sgn.load_pretrained(NAME, **published.options)
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))


def test_offline_without_cache_is_a_clear_error(published):
    with pytest.raises(zoo.HubUnreachableError, match="local_files_only"):
        keras_sgn.load_pretrained(NAME, local_files_only=True, **published.options)
    assert published.server.request_count == 0


def test_network_down_without_cache(published, no_hf_sleep):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    options = {**published.options, "endpoint": closed}
    with pytest.raises(zoo.HubUnreachableError, match="network down"):
        keras_sgn.load_pretrained(NAME, **options)


def test_missing_file_revision_and_repo_are_404_errors(published, exported, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(exported["folder"], partial)
    os.remove(partial / "model.weights.h5")
    published.server.add_folder(REPO, str(partial), commit=published.commit)
    with pytest.raises(zoo.FileMissingOnHubError, match="model.weights.h5 is not in"):
        keras_sgn.load_pretrained(NAME, **published.options)
    with pytest.raises(zoo.FileMissingOnHubError, match="revision .* does not exist"):
        keras_sgn.load_pretrained(NAME, revision="f" * 40, **published.options)
    entry = dataclasses.replace(zoo.get_entry(NAME, published.options["entries_dir"]),
                                repo_id="tests/nothing-here")
    options = {k: v for k, v in published.options.items() if k != "entries_dir"}
    with pytest.raises(zoo.FileMissingOnHubError, match="not found"):
        keras_sgn.load_pretrained(entry, **options)


def test_transient_server_errors_are_retried(published, tiny_run):
    published.server.fail_next(2, status=503, methods=("GET",))
    model = keras_sgn.load_pretrained(NAME, **published.options)
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))
    assert [m for m, _ in published.server.requests].count("GET") == len(zoo.catalog.LOAD_FILES) + 2


def test_persistent_server_errors_give_up_with_backoff(published, no_hf_sleep):
    published.server.fail_next(100, status=502, methods=("GET",))
    start = time.time()
    with pytest.raises(zoo.HubServerError, match="HTTP 502 .* after 3 attempts"):
        keras_sgn.load_pretrained(NAME, **published.options)
    assert [m for m, _ in published.server.requests].count("GET") == 3
    assert time.time() - start < 10
    published.server.fail_next(100, status=500, methods=("HEAD",))  # metadata down too
    with pytest.raises(zoo.HubServerError, match="HTTP 500"):
        keras_sgn.load_pretrained(NAME, **published.options)


def test_tampered_byte_is_refused_and_not_reused(published, tiny_run, monkeypatch, exported):
    published.server.tamper(REPO, published.commit, "model.weights.h5")
    built = []
    original_build = zoo.loading.build_from_files
    monkeypatch.setattr(zoo.loading, "build_from_files",  # where load_pretrained looks it up
                        lambda *a: built.append(a) or original_build(*a))
    with pytest.raises(zoo.ChecksumMismatchError, match="model.weights.h5 .* sha256 .* deleted"):
        keras_sgn.load_pretrained(NAME, **published.options)
    assert not built  # refused before building anything
    bad_blob_deleted = len(zoo.catalog.LOAD_FILES) - 1
    assert len(_cached_files(published.cache)) == bad_blob_deleted
    assert not list(published.cache.rglob("snapshots/*/model.weights.h5"))
    published.server.add_folder(REPO, exported["folder"], commit=published.commit)  # repaired
    model = keras_sgn.load_pretrained(NAME, **published.options)
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))


def test_truncated_cache_file_is_refused_and_downloaded_again(published, exported):
    keras_sgn.load_pretrained(NAME, **published.options)
    sha256 = exported["files"]["model.weights.h5"]["sha256"]
    blob = next(published.cache.rglob(f"blobs/{sha256}"))  # LFS files are stored by sha256
    blob.write_bytes(blob.read_bytes()[:1000])
    with pytest.raises(zoo.ChecksumMismatchError, match="truncated"):
        keras_sgn.load_pretrained(NAME, **published.options)
    assert not blob.exists()
    published.server.reset_requests()
    keras_sgn.load_pretrained(NAME, **published.options)
    assert [m for m, _ in published.server.requests].count("GET") == 1


def test_truncated_transfers_are_retried_then_refused(published):
    published.server.truncate = True
    with pytest.raises(zoo.ChecksumMismatchError, match="truncated"):
        keras_sgn.load_pretrained(NAME, **published.options)
    published.server.truncate = False
    keras_sgn.load_pretrained(NAME, **published.options)


def test_other_revision_is_loaded_with_a_warning(published):
    with pytest.warns(UserWarning, match="cannot be checked"):
        keras_sgn.load_pretrained(NAME, revision="main", **published.options)


def test_plain_keras_hf_uri_loads_a_published_repo(published, tiny_run, monkeypatch):
    # Keras' hf:// calls snapshot_download with the default endpoint and cache,
    # which huggingface_hub reads from the environment at import: point them here.
    url = published.server.url
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(published.cache))
    model = keras.saving.load_model(f"hf://{REPO}")
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))


# -- publishing ----------------------------------------------------------------------


class FakeHfApi:
    """Stands in for HfApi: 'uploading' puts the folder on the local Hub server."""

    calls = []
    server = None

    def __init__(self, **kwargs):
        FakeHfApi.calls.append(("init", kwargs.get("endpoint")))

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeHfApi.calls.append(("create_repo", repo_id, private))

    def create_branch(self, repo_id, branch, exist_ok=False):
        FakeHfApi.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision=None, allow_patterns=None,
                      commit_message=None):
        FakeHfApi.calls.append(("upload_folder", repo_id, revision))
        commit = FakeHfApi.server.add_folder(repo_id, folder_path, branch=revision or "main",
                                             commit="c0ffee" * 6 + "abcd")
        return types.SimpleNamespace(oid=commit)


def _run_publish(args):
    """Run tools/publish.py's main in this process (no second TensorFlow start-up),
    then remove the flags it defined from absl's global FLAGS."""
    from absl import flags

    before = set(flags.FLAGS)
    sys.path.insert(0, TOOLS_DIR)  # as `python tools/publish.py` has it (tools/quiet_start.py)
    try:
        module = tool_module("publish.py", "publish_tool")
        flags.FLAGS(["publish.py", *args])
        module.main([])
    finally:
        sys.path.remove(TOOLS_DIR)
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)


def test_publish_tool_uploads_and_pins_the_commit(tiny_run, server, tmp_path, monkeypatch,
                                                  capsys):
    FakeHfApi.calls, FakeHfApi.server = [], server
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_SECRET_token_value")
    entry_path = tmp_path / f"{NAME}.json"
    _run_publish([f"--run_dir={tiny_run['dir']}", f"--name={NAME}", f"--repo_id={REPO}",
                  "--revision=v1", "--private", f"--entry={entry_path}",
                  f"--endpoint={server.url}"])
    out = capsys.readouterr()
    assert "hf_SECRET" not in out.out + out.err
    assert ("create_repo", REPO, True) in FakeHfApi.calls
    assert ("create_branch", REPO, "v1") in FakeHfApi.calls
    entry = zoo.catalog.read_entry(str(entry_path))
    assert entry.status == "published" and entry.revision == "c0ffee" * 6 + "abcd"
    assert set(entry.files) == set(zoo.catalog.MODEL_FILES) and entry.metrics["n_examples"] == 32
    model = keras_sgn.load_pretrained(NAME, entries_dir=str(tmp_path), endpoint=server.url,
                                      cache_dir=str(tmp_path / "cache"), **FAST)
    np.testing.assert_array_equal(_predict(model, tiny_run["x"]),
                                  _predict(tiny_run["model"], tiny_run["x"]))


@pytest.mark.parametrize("name", ["sgn-cnn-digits", "sgn-cnn-fashion-mnist",
                                  "pgd-cnn-fashion-mnist"])
def test_publishing_the_shipped_folder_keeps_it_shipped(name, server, tmp_path, monkeypatch):
    FakeHfApi.calls, FakeHfApi.server = [], server
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_SECRET_token_value")
    entry_path = tmp_path / f"{name}.json"
    shutil.copy(zoo.get_entry(name).path, entry_path)
    folder = os.path.join(zoo.catalog.PRETRAINED_DIR, name)
    _run_publish([f"--folder={folder}", f"--name={name}", f"--entry={entry_path}",
                  f"--endpoint={server.url}"])
    entry = zoo.catalog.read_entry(str(entry_path))
    assert entry.status == "published" and entry.revision == "c0ffee" * 6 + "abcd"
    assert entry.package_dir == f"pretrained/{name}"  # same bytes: still shipped
    server.reset_requests()
    options = dict(entries_dir=str(tmp_path), endpoint=server.url,
                   cache_dir=str(tmp_path / "cache"), **FAST)
    shipped = keras_sgn.load_pretrained(name, **options)
    assert server.request_count == 0  # the package copy, no network
    from_hub = keras_sgn.load_pretrained(name, revision=entry.revision, **options)
    shape = (4,) + tuple(shipped.input_shape[1:])
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    np.testing.assert_array_equal(_predict(shipped, x), _predict(from_hub, x))


def test_publish_tool_local_dir_writes_the_folder_only(tiny_run, tmp_path):
    entry_path = tmp_path / f"{NAME}.json"
    _run_publish([f"--run_dir={tiny_run['dir']}", f"--name={NAME}",
                  f"--local_dir={tmp_path / 'out'}", f"--entry={entry_path}"])
    assert sorted(os.listdir(tmp_path / "out")) == sorted(zoo.catalog.MODEL_FILES)
    assert not entry_path.exists()


def test_upload_without_token_is_refused(exported, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(hub.PublishError, match="hf auth login"):
        hub.upload_folder(exported["folder"], REPO)


# -- the shipped digits model --------------------------------------------------------


def test_shipped_digits_model_reproduces_its_card(digits_arrays, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    entry = zoo.get_entry("sgn-cnn-digits")
    model = keras_sgn.load_pretrained("sgn-cnn-digits")
    x, y = digits_arrays("test")
    accuracy = float(np.mean(np.argmax(_predict(model, x), axis=-1) == y))
    assert len(y) == entry.metrics["n_examples"] == 360
    assert accuracy == pytest.approx(entry.metrics["clean_accuracy"], abs=1e-9)
    card = open(os.path.join(zoo.catalog.PRETRAINED_DIR, "sgn-cnn-digits", "README.md")).read()
    assert f"| clean | {100 * accuracy:.2f}% |" in card
    assert f"**{100 * entry.metrics['robust_accuracy']:.2f}%**" in card


def test_shipped_digits_model_robust_accuracy_is_remeasured(digits_arrays, monkeypatch):
    """The card's robust number, re-measured: APGD-CE alone (a few seconds) can only
    fool fewer points than the whole suite, and must land on the card's APGD-CE row."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    entry = zoo.get_entry("sgn-cnn-digits")
    model = keras_sgn.load_pretrained("sgn-cnn-digits")
    x, y = digits_arrays("test")
    x_adv = keras_sgn.attacks.apgd(model, x, y, epsilon=entry.metrics["protocol"]["epsilon"],
                                   norm="linf", loss="ce", steps=100, seed=0)
    robust = float(np.mean(np.argmax(_predict(model, x_adv), axis=-1) == y))
    assert robust >= entry.metrics["robust_accuracy"] - 1e-9
    # APGD was brought to the reference implementation's details after the card was
    # measured: allow two images (0.56 points) of difference on the card's row.
    assert robust == pytest.approx(entry.metrics["per_attack"]["apgd-ce"], abs=2 / 360 + 1e-9)


def test_damaged_shipped_files_are_refused(tmp_path):
    raw = json.loads(open(zoo.get_entry("sgn-cnn-digits").path).read())
    raw["files"]["model.weights.h5"]["sha256"] = "0" * 64
    (tmp_path / "sgn-cnn-digits.json").write_text(json.dumps(raw))
    with pytest.raises(zoo.ChecksumMismatchError, match="reinstall"):
        keras_sgn.load_pretrained("sgn-cnn-digits", entries_dir=str(tmp_path))


@pytest.mark.slow
def test_non_editable_install_loads_the_shipped_model_offline(tmp_path):
    """Build a wheel, install it (no deps: they come from this venv) outside the
    source tree, and load the shipped model offline from another directory."""
    source = tmp_path / "source"  # build from a copy: nothing written into the work tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("keras_sgn-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, timeout=600)
    code = ("import keras_sgn, numpy as np; m = keras_sgn.load_pretrained('sgn-cnn-digits'); "
            "print(keras_sgn.__file__); print(m.predict(np.zeros((1, 8, 8, 1), 'float32'), "
            "verbose=0).shape)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(tmp_path / "site"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "site") in result.stdout and "(1, 10)" in result.stdout

"""The comparison with a PyTorch peer (`tools/benchmark.py --peer=torchattacks`) and the
compute floor, on tiny models and a few images.

The pure parts run everywhere: the re-check of adversarial examples in Keras, the
disagreement sets, the pass counting and the floor's arithmetic, the report's text,
and the one-line error when the optional extra (torch, torchattacks) is missing.
The port to PyTorch and the peer's run need the extra and are skipped without it.
"""

import os
import sys

import keras
import numpy as np
import pytest

from keras_sgn import attacks
from keras_sgn.attacks import folding
from keras_sgn.errors import ArgumentError
from keras_sgn.experiments import compute_floor, peer_benchmark, torch_port
from keras_sgn.layers import SelfGradient
from tests.helpers import TOOLS_DIR

EPSILON = 0.1


def linear_model(seed=0, shape=(2, 2, 1), classes=3):
    """Flatten + Dense: logits linear in the pixels."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    outputs = keras.layers.Dense(classes)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_recheck_flags_each_way_an_example_can_fail():
    model = linear_model()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, (4, 2, 2, 1)).astype("float32")
    y = np.argmax(np.asarray(model(x)), -1)
    # A wrong class for each image: a big enough push along its gradient direction.
    kernel = np.asarray(model.layers[-1].kernel)
    other = (y + 1) % 3
    direction = np.sign(kernel[:, other] - kernel[:, y]).T.reshape(x.shape)
    far = np.clip(x + 0.6 * direction, 0.0, 1.0)
    assert np.all(np.argmax(np.asarray(model(far)), -1) != y)  # the model is fooled far away
    x_adv = x.copy()
    x_adv[0] = far[0]                               # fooled but outside the ball
    x_adv[1] = x[1]                                 # the clean image: still correct
    x_adv[2] = x[2]
    x_adv[2, 0, 0, 0] = 1.05                        # outside [0, 1]
    x_adv[3] = x[3] + EPSILON * direction[3]        # on the ball's surface
    checked = peer_benchmark.recheck(model, x, y, x_adv, EPSILON)
    assert list(checked["in_ball"]) == [False, True, False, True]
    assert list(checked["in_range"]) == [True, True, False, True]
    assert checked["misclassified"][0] and not checked["misclassified"][1]
    assert list(checked["valid"]) == list(checked["in_ball"] & checked["in_range"]
                                          & checked["misclassified"])
    assert checked["linf_distance"][3] == pytest.approx(EPSILON, abs=1e-6)
    assert not checked["valid"][:3].any()
    rows = peer_benchmark.example_rows([0, 3], y, checked)
    assert [r["index"] for r in rows] == [0, 3] and rows[0]["valid"] is False
    assert rows[1]["label"] == int(y[3]) and rows[1]["prediction"] == int(checked["prediction"][3])


def test_disagreement_sets():
    ours = np.array([True, True, False, False, True])
    peer = np.array([True, False, True, False, False])
    only_ours, only_peer = peer_benchmark.disagreements(ours, peer)
    assert list(only_ours) == [1, 4] and list(only_peer) == [2]
    assert [list(s) for s in peer_benchmark.disagreements(ours, ours)] == [[], []]
    with pytest.raises(ArgumentError, match="same images"):
        peer_benchmark.disagreements(ours, peer[:3])


def test_floor_arithmetic():
    passes = {"forward_images": 1000, "backward_images": 600}
    wall = {"forward_seconds_per_image": 0.001, "backward_seconds_per_image": 0.002,
            "forward_backward_seconds_per_image": 0.003}
    cpu = {"forward_seconds_per_image": 0.0005, "backward_seconds_per_image": 0.001,
           "forward_backward_seconds_per_image": 0.0015}
    throughput = {"wall": wall, "cpu": cpu}
    floor = compute_floor.compute_floor(passes, throughput, seconds=4.4, cpu_seconds=3.3)
    # 1000 forward x 1 ms + 600 backward x 2 ms = 2.2 s; 4.4 s is twice that.
    assert floor["floor_seconds"] == pytest.approx(2.2)
    assert floor["ratio"] == pytest.approx(2.0)
    assert floor["floor_cpu_seconds"] == pytest.approx(1.1)  # the same on the CPU clock
    assert floor["cpu_ratio"] == pytest.approx(3.0)
    assert floor["forward_backward_equivalents"] == pytest.approx(2.2 / 0.003)
    assert floor["forward_backward_images_per_second"] == pytest.approx(1 / 0.003)
    assert floor["forward_images"] == 1000 and floor["backward_images"] == 600
    sentence = compute_floor.floor_sentence(floor)
    assert "1,000 forward and 600 backward" in sentence and "2.00x its floor" in sentence
    assert "took 3.3 s, 3.00x its floor" in sentence
    nothing = compute_floor.compute_floor({"forward_images": 0, "backward_images": 0},
                                          throughput, 1.0)
    assert nothing["ratio"] is None and nothing["cpu_ratio"] is None
    assert "CPU clock" not in compute_floor.floor_sentence(nothing)


def test_pass_counter_counts_an_attack_exactly():
    """PGD-k on n images: k backward passes of n images; every forward counted too."""
    model = linear_model(shape=(3, 3, 1))
    counter = compute_floor.PassCounter(model)
    x = np.random.default_rng(1).uniform(size=(4, 3, 3, 1)).astype("float32")
    y = np.argmax(np.asarray(model(x)), -1).astype("int32")
    np.asarray(counter(x))
    assert counter.counts() == {"forward_images": 4, "backward_images": 0}
    counter.reset()
    attacks.pgd(counter, x, y, epsilon=EPSILON, steps=5)
    counts = counter.counts()
    assert counts["backward_images"] == 5 * 4
    assert counts["forward_images"] >= counts["backward_images"]
    assert counter.weights == model.weights and counter.name == model.name  # the model's own


def test_pass_counter_runs_the_model_as_the_attacks_do():
    """With BatchNorm after a conv, the counted suite runs the folded pass the attacks run
    on the bare model (the counter is no functional model: without this the suite timed
    would be the unfolded one)."""
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(hidden)))
    model.layers[2].moving_variance.assign([4.0, 0.25])
    assert folding.is_folded(model)
    counter = compute_floor.PassCounter(model)
    assert counter._inference.__qualname__ == folding.folded_forward(model).__qualname__
    x = np.random.default_rng(2).uniform(size=(5, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(counter(x), model(x, training=False), atol=1e-5)
    y = np.argmax(np.asarray(model(x)), -1).astype("int32")
    counter.reset()
    attacks.pgd(counter, x, y, epsilon=EPSILON, steps=3)
    assert counter.counts()["backward_images"] == 3 * 5


def test_pass_throughput_measures_each_batch_size():
    model = linear_model(shape=(3, 3, 1))
    x = np.random.default_rng(1).uniform(size=(4, 3, 3, 1)).astype("float32")
    measured = compute_floor.pass_throughput(model, x, np.zeros(4, "int32"),
                                             batch_sizes=(4, 8), repeats=1)
    assert set(measured) == {"wall", "cpu"}
    for clock in measured.values():
        assert set(clock["by_batch_size"]) == {4, 8}
        best = min(m["forward_backward_seconds_per_image"]
                   for m in clock["by_batch_size"].values())
        assert clock["forward_backward_seconds_per_image"] == best > 0
        assert clock["backward_seconds_per_image"] >= 0


def test_every_example_keeps_the_batches_in_order():
    collector = peer_benchmark.EveryExample(3)
    x = np.arange(12, dtype="float32").reshape(3, 2, 2, 1)
    collector.add(x[:2], np.array([0, 1]), x[:2] + 1, np.array([0, 0]), np.array([1, 1]),
                  np.array(["a", "a"]))
    collector.add(x[2:], np.array([2]), x[2:] + 1, np.array([2]), np.array([2]), np.array([""]))
    assert not collector.full
    images, labels, adversarial, clean, predicted = collector.columns()
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(adversarial, x + 1)
    assert list(labels) == [0, 1, 2] and list(predicted) == [1, 1, 2] and list(clean) == [0, 0, 2]


def _report(only_peer_valid=True):
    per_attack = {label: {"seconds": 1.0} for label in ("apgd-ce", "apgd-t", "fab-t", "square")}
    row = {"index": 7, "label": 3, "prediction": 5, "linf_distance": 0.2, "in_ball": False,
           "in_range": True, "misclassified": True, "valid": only_peer_valid}
    run = {"robust_accuracy": 0.75, "robust_accuracy_rechecked_in_keras": 0.8, "seconds": 9.0,
           "process_cpu_seconds": 8.0, "per_attack": per_attack,
           "only_ours_fooled": [dict(row, index=2, valid=True, in_ball=True)],
           "only_peer_fooled": [row]}
    clock = {"forward_seconds_per_image": 0.1, "backward_seconds_per_image": 0.2,
             "forward_backward_seconds_per_image": 0.3}
    floor = compute_floor.compute_floor({"forward_images": 10, "backward_images": 5},
                                        {"wall": clock, "cpu": clock}, 4.0, 2.0)
    return {"model": "tiny", "dataset": "digits", "n_examples": 8, "epsilon": 0.1,
            "ours": {"robust_accuracy": 0.7, "clean_accuracy": 0.9, "seconds": 5.0,
                     "process_cpu_seconds": 4.0, "warmup_process_cpu_seconds": 1.0,
                     "per_attack": per_attack, "floor": floor},
            "peer": {"name": "torchattacks", "version": "3.5.1", "runs": {"reference": run}},
            "speedup": {"reference": 2.0}, "speedup_with_warmup": {"reference": 1.6},
            "threads": {"tensorflow_intra_op": 1},
            "port": {"max_abs_logit_difference": 2e-6, "n_images": 8, "tolerance": 1e-4}}


def test_report_text():
    text = peer_benchmark.markdown(_report(only_peer_valid=False))
    lines = text.splitlines()
    ours = next(line for line in lines if line.startswith("| ours"))
    assert [c.strip() for c in ours.split("|")[2:6]] == ["0.7000", "5.0", "4.0", "1.0"]
    peer_row = next(line for line in lines if line.startswith("| torchattacks 3.5.1 AA"))
    assert [c.strip() for c in peer_row.split("|")[2:6]] == ["0.7500", "9.0", "8.0", "-"]
    assert "The peer's CPU time over ours: 2.00x (1.60x with our warm-up counted)." in text
    assert "- only ours fooled: 1 images (2); re-checked in Keras: 1 valid" in text
    assert "- only the peer fooled: 1 images (7); re-checked in Keras: 0 valid" in text
    assert "1 FAIL the re-check" in text and "image 7: label 3, Keras predicts 5" in text
    assert "re-checked in Keras: 0.8000" in text and "tensorflow_intra_op 1" in text
    assert "Compute floor: 10 forward and 5 backward" in text and "2.00x its floor" in text
    assert "took 2.0 s, 1.00x its floor" in text
    assert "FAIL" not in peer_benchmark.markdown(_report(only_peer_valid=True))


def test_missing_extra_is_one_line_naming_the_install(monkeypatch):
    real = peer_benchmark.importlib.import_module

    def without_torch(name):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'")
        return real(name)

    monkeypatch.setattr(peer_benchmark.importlib, "import_module", without_torch)
    message = peer_benchmark.missing_peer()
    assert "needs torch" in message and "make install-peer" in message
    assert "\n" not in message
    with pytest.raises(ArgumentError, match="make install-peer"):
        peer_benchmark.require_peer()


def test_tool_says_how_to_install_the_extra_without_a_traceback():
    """torch hidden from the tool: one `error:` line, before the model is even loaded."""
    import subprocess

    root = os.path.dirname(TOOLS_DIR)
    hide = ("import runpy, sys\n"
            "class Hide:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.partition('.')[0] in ('torch', 'torchattacks'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
            "sys.meta_path.insert(0, Hide())\n"
            "sys.argv = ['benchmark.py', '--peer=torchattacks', '--zoo=no-such-model']\n"
            f"runpy.run_path({os.path.join(TOOLS_DIR, 'benchmark.py')!r}, run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, TOOLS_DIR]))
    env.pop("KERAS_SGN_TRACEBACK", None)
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                            timeout=300, env=env, cwd=root)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make install-peer" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "no-such-model" not in result.stderr


# -- with the optional extra ----------------------------------------------------------------


def small_cnn(seed=0):
    """Every layer kind the Fashion-MNIST zoo CNNs hold, plus pooling and an odd image size
    (TensorFlow's 'same' pads one more pixel after than before), with nontrivial statistics."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((7, 7, 2))
    h = SelfGradient(name="site_input")(inputs)
    h = keras.layers.Normalization(mean=[0.3, 0.6], variance=[0.04, 0.09])(h)
    h = keras.layers.Conv2D(4, 4, strides=2, padding="same", use_bias=False)(h)
    h = keras.layers.BatchNormalization(epsilon=1e-5)(h)
    h = keras.layers.ReLU()(h)
    h = SelfGradient(name="site_1")(h)
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2, padding="same")(h)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(6, activation="tanh")(h)
    outputs = keras.layers.Dense(5)(h)
    model = keras.Model(inputs, outputs)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(seed)
            layer.moving_mean.assign(rng.normal(size=4).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, 4).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
            layer.beta.assign(rng.normal(size=4).astype("float32"))
    return model


def images(n=16, shape=(7, 7, 2), seed=0):
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype("float32")


def test_port_computes_the_keras_logits():
    pytest.importorskip("torch")
    model, x = small_cnn(), images()
    module = torch_port.port_to_torch(model)
    check = torch_port.check_port(model, module, x)
    assert check["max_abs_logit_difference"] <= 1e-5 and check["same_predictions"]
    # TensorFlow's 'same': the odd pixel after; the zoo CNNs' 28 -> 14 pads one each side.
    assert torch_port.same_padding(7, 4, 2) == (1, 2)
    assert torch_port.same_padding(28, 4, 2) == (1, 1)


def test_port_refuses_wrong_logits_and_unknown_layers():
    torch = pytest.importorskip("torch")
    model, x = small_cnn(), images()
    module = torch_port.port_to_torch(model)
    with torch.no_grad():
        module[-1].bias.add_(1e-3)
    with pytest.raises(ArgumentError, match=r"max \|logit difference\|"):
        torch_port.check_port(model, module, x)
    inputs = keras.Input((4,))
    layered = keras.Model(inputs, keras.layers.LayerNormalization()(inputs))
    with pytest.raises(ArgumentError, match="LayerNormalization"):
        torch_port.port_to_torch(layered)
    inputs = keras.Input((4,))
    branch = keras.Model(inputs, keras.layers.Add()([keras.layers.Dense(4)(inputs), inputs]))
    with pytest.raises(ArgumentError, match="chain of layers"):
        torch_port.port_to_torch(branch)
    softmax = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ArgumentError, match="softmax"):
        torch_port.port_to_torch(softmax)


def test_peer_runs_at_the_reference_settings():
    pytest.importorskip("torchattacks")
    model, x = small_cnn(), images(4)
    y = np.argmax(np.asarray(model(x)), -1)
    module = torch_port.port_to_torch(model)
    _, settings = peer_benchmark.peer_autoattack(module, EPSILON, "reference", n_classes=5)
    assert [s["attack"] for s in settings] == ["APGD", "APGDT", "FAB", "Square"]
    assert [s.get("steps") for s in settings[:3]] == [100, 100, 100]
    assert settings[1]["n_target_classes"] == settings[2]["n_target_classes"] == 4
    assert settings[3]["n_queries"] == 5000
    _, defaults = peer_benchmark.peer_autoattack(module, EPSILON, "default", n_classes=5)
    assert [s.get("steps") for s in defaults[:3]] == [10, 10, 10]  # the peer as it comes
    # At a radius this large APGD-CE fools every image: the attacks after it get none (the
    # peer's cascade stops), which keeps the test fast.
    run = peer_benchmark.run_peer(module, x, y, 0.5, "default", batch_size=2, n_classes=5)
    assert run["adversarial"].shape == x.shape
    checked = peer_benchmark.recheck(model, x, y, run["adversarial"], 0.5)
    assert checked["in_ball"].all() and checked["in_range"].all() and checked["valid"].all()
    assert list(run["per_attack"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert run["per_attack"]["apgd-ce"]["images_attacked"] == 4  # every image, in 2 batches
    assert run["seconds"] > 0 and run["process_cpu_seconds"] > 0


@pytest.mark.slow
def test_tool_compares_with_the_peer_end_to_end(tmp_path):
    """`tools/benchmark.py --peer=torchattacks` on the digits zoo model and 4 images: both
    suites, both peer settings, the port check, the floor, every disagreement re-checked."""
    pytest.importorskip("torchattacks")
    import json

    from tests.helpers import run_tool

    out = tmp_path / "peer.json"
    result = run_tool("benchmark.py", "--peer=torchattacks", "--zoo=sgn-cnn-digits",
                      "--n_examples=4", "--eval_batch_size=4", "--threads=1",
                      f"--output={out}", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())["peer_comparison"]
    assert report["n_examples"] == 4 and report["order"] == "original"
    assert report["port"]["max_abs_logit_difference"] <= 1e-4
    assert set(report["peer"]["runs"]) == {"reference", "default"}
    reference = report["peer"]["runs"]["reference"]
    assert [s.get("steps") for s in reference["settings"][:3]] == [100, 100, 100]
    assert report["threads"]["torch_intra_op"] == report["threads"]["tensorflow_intra_op"] == 1
    floor = report["ours"]["floor"]
    assert floor["backward_images"] > 0 and floor["forward_images"] >= floor["backward_images"]
    assert floor["floor_seconds"] > 0 and floor["ratio"] > 0
    ours = report["ours"]
    assert ours["warmup_process_cpu_seconds"] > 0  # tracing happened, and is reported
    for setting, run in report["peer"]["runs"].items():
        assert report["speedup_with_warmup"][setting] == pytest.approx(
            run["process_cpu_seconds"]
            / (ours["process_cpu_seconds"] + ours["warmup_process_cpu_seconds"]))
    for run in report["peer"]["runs"].values():
        assert 0 <= run["robust_accuracy"] <= report["ours"]["clean_accuracy"]
        for row in run["only_ours_fooled"] + run["only_peer_fooled"]:
            assert set(row) >= {"index", "in_ball", "in_range", "misclassified", "valid"}
    assert "| ours (`standard`) |" in result.stdout and "Compute floor:" in result.stdout

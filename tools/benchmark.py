"""Benchmark the training step of every method, and the evaluation's attacks.

    python tools/benchmark.py --output=benchmark.json                  # ResNet-18, CIFAR-shaped
    python tools/benchmark.py --model=sgn_small_cnn --batch_size=128 --output=small.json
    python tools/benchmark.py --dataset=fashion_mnist --output=fashion.json   # its recipe's model

With `--attacks` (a suite: `standard`, `quick`, ...) it also reports, per
attack, one iteration's cost against one forward+backward pass w.r.t. the
input, and, on a trained `--zoo` model, the suite's wall time on the first
`--n_examples` test images with each attack's seconds and images/s, set
against the target (`standard` on all 10,000 Fashion-MNIST test images in at
most 20 minutes on the project's 2-core CPU; extrapolated when N < 10,000):

    python tools/benchmark.py --methods= --attacks=standard --zoo=sgn-cnn-fashion-mnist \\
        --n_examples=1000 --output=runs/benchmark-standard.json

The suite's report ends with its compute floor: the forward and backward passes
it made (counted as it ran), this machine's best pass throughput, and the
suite's time over that floor (keras_sgn.experiments.compute_floor).

With `--peer=torchattacks` it compares our `standard` suite with torchattacks
3.5.1's AutoAttack standard on the same --zoo model (ported to PyTorch, its
logits checked) and the same first --n_examples test images in the original
file order: the peer at the reference implementation's settings and at its own
defaults (keras_sgn.experiments.peer_benchmark; needs the optional extra,
`make install-peer`):

    python tools/benchmark.py --peer=torchattacks --zoo=pgd-cnn-fashion-mnist \\
        --n_examples=1000 --threads=1 --output=runs/peer-pgd.json
"""

# First, before anything imports keras_sgn: keras_sgn without TensorFlow until the flags
# are parsed, then TensorFlow without its start-up logs (tools/quiet_start.py).
import quiet_start

# isort: split
import json

from absl import app, flags

# None of these imports TensorFlow (`--help` stays quick); keras_sgn.experiments.benchmark
# does, so it is imported where the timing starts.
from keras_sgn import cli, io_utils, names

FLAGS = flags.FLAGS
MULTI_STEP = ", ".join(names.MULTI_STEP_METHODS)
flags.DEFINE_string("model", None, "Model name of the method benchmark (synthetic batches shaped "
                    "like --dataset's images, else CIFAR-shaped; 8x8x1 for sgn_small_cnn). "
                    "Default: --dataset's recipe model, else the benchmark's default "
                    "(keras_sgn.experiments.benchmark.DEFAULT_MODEL, a ResNet-18).")
flags.DEFINE_string("dataset", None, "Dataset name: the image shape and classes of the method "
                    "benchmark, and the test images --attacks runs on (default: the --zoo "
                    "entry's).")
flags.DEFINE_integer("batch_size", 32, "Batch size of every step.", lower_bound=1)
flags.DEFINE_list("methods", None, "Methods to time (empty: none). Default: standard (the cost "
                  "unit) and every method except the variants under study "
                  "(keras_sgn.experiments.benchmark.DEFAULT_METHODS).")
flags.DEFINE_integer("attack_steps", 10, f"Inner attack steps ({MULTI_STEP}).", lower_bound=1)
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled attack variant.")
flags.DEFINE_integer("warmup", 2, "Untimed calls per method.", lower_bound=0)
flags.DEFINE_integer("repeats", 5, "Timed calls per method (median reported); timings per "
                     "attack iteration (best kept).", lower_bound=1)
flags.DEFINE_string("attacks", None, "Also time an evaluation suite ('standard', 'quick' or "
                    "attacks separated by ';'): each attack's iteration against one "
                    "forward+backward pass, and the whole suite on --n_examples test images.")
flags.DEFINE_string("zoo", None, "The trained model --attacks times the suite on: a zoo name, "
                    "a saved .keras file or a tools/train.py run folder. Without it only the "
                    "iteration costs are measured, on an untrained --model.")
flags.DEFINE_integer("n_examples", 1000, "Test images the suite is timed on (the first N; the "
                     "time on 10,000 is extrapolated from them).", lower_bound=1)
flags.DEFINE_integer("eval_batch_size", 128, "Evaluation batch size of --attacks.",
                     lower_bound=1)
flags.DEFINE_enum("norm", None, ["linf", "l2"], "Threat-model norm of --attacks (default: the "
                  "zoo entry's, else linf).")
flags.DEFINE_float("epsilon", None, "Threat radius (pixel units; default: the zoo entry's, "
                   "else --dataset's recipe).")
flags.DEFINE_string("data_dir", None, "Where --dataset's files are (see keras_sgn.data.load).")
flags.DEFINE_string("output", None, "Where the JSON report goes.")
flags.DEFINE_enum("peer", None, ["torchattacks"], "Compare our `standard` suite with this "
                  "peer's AutoAttack standard on the --zoo model and the first --n_examples "
                  "test images (original file order); no method is timed unless --methods "
                  "names some. Needs the optional extra: make install-peer.")
flags.DEFINE_list("peer_settings", ["reference", "default"], "The peer's settings to run: "
                  "'reference' (APGD-CE/APGD-T/FAB-T at the reference's 100 steps, Square "
                  "5,000 queries) and/or 'default' (the peer's AutoAttack as it comes).")
flags.DEFINE_integer("threads", None, "Threads of TensorFlow (intra- and inter-op) and of "
                     "torch; default: each framework's own choice.", lower_bound=1)


def zoo_source():
    """The --zoo model, resolved as tools/evaluate.py resolves --model (a zoo name, a saved
    .keras file or a run folder; what its entry or run says)."""
    from keras_sgn.evaluation import sources

    return sources.resolve_model(FLAGS.zoo, reference_flag="--zoo")


def attack_suite():
    """The `attack_suite` part of the report: the --zoo model (or an untrained
    --model) against --attacks on --dataset's test images."""
    from keras_sgn.evaluation import sources
    from keras_sgn.experiments import benchmark

    source = zoo_source() if FLAGS.zoo else None
    if not (FLAGS.dataset or (source and source.defaults.get("dataset"))):
        raise app.UsageError("--attacks: give --dataset=NAME (the test images the suite "
                             "attacks), or a --zoo model whose entry names its dataset.")
    # The flags, else the zoo entry's (or run's), else the dataset's recipe: as evaluate.py.
    dataset, norm, epsilon = sources.resolve_threat_model(
        source, FLAGS.dataset, FLAGS.norm, FLAGS.epsilon, dataset_flag="--dataset")
    if source is not None:
        model, label = sources.load(source), source.label
    else:
        model, label = FLAGS.model or benchmark.default_model(dataset), None
    return benchmark.benchmark_attack_suite(
        model, dataset, FLAGS.attacks, epsilon, norm, n_examples=FLAGS.n_examples,
        batch_size=FLAGS.eval_batch_size, data_dir=FLAGS.data_dir, repeats=FLAGS.repeats,
        time_whole_suite=source is not None, model_label=label, verbose=True)


def peer_comparison():
    """The `peer` part of the report: our `standard` suite against --peer's AutoAttack."""
    from keras_sgn.evaluation import sources
    from keras_sgn.experiments import peer_benchmark

    if not FLAGS.zoo:
        raise app.UsageError("--peer: give --zoo=NAME, the trained model both suites attack "
                             "(e.g. --zoo=pgd-cnn-fashion-mnist).")
    if FLAGS.norm not in (None, "linf"):
        raise app.UsageError(f"--peer compares the {peer_benchmark.SUITE} suite at L-inf. "
                             f"Received: --norm={FLAGS.norm}.")
    source = zoo_source()
    defaults = source.defaults
    if (not (FLAGS.dataset or "dataset" in defaults) or defaults.get("norm", "linf") != "linf"
            or (FLAGS.epsilon is None and "epsilon" not in defaults)):
        raise app.UsageError(f"--peer: give --dataset and --epsilon (L-inf), or a --zoo model "
                             f"whose entry names them. Received: --zoo={FLAGS.zoo}.")
    dataset, _, epsilon = sources.resolve_threat_model(
        source, FLAGS.dataset, "linf", FLAGS.epsilon, dataset_flag="--dataset")
    report = peer_benchmark.compare(
        sources.load(source), dataset, epsilon, n_examples=FLAGS.n_examples,
        batch_size=FLAGS.eval_batch_size, settings=tuple(FLAGS.peer_settings),
        data_dir=FLAGS.data_dir, model_label=source.label, verbose=True)
    print(peer_benchmark.markdown(report))
    return report


def main(argv):
    del argv
    quiet_start.start_tensorflow()
    # Before TensorFlow runs anything (its threads are fixed then), and before any expensive
    # work: a missing optional extra is one line, not a traceback minutes later.
    from keras_sgn.experiments import peer_benchmark

    if FLAGS.peer:
        peer_benchmark.require_peer()
        if FLAGS.methods or FLAGS.attacks not in (None, peer_benchmark.SUITE):
            raise app.UsageError("--peer runs the comparison alone: time --methods or other "
                                 "--attacks in another run. Received: "
                                 f"--methods={FLAGS.methods} --attacks={FLAGS.attacks}.")
    if FLAGS.threads:
        peer_benchmark.set_threads(FLAGS.threads)
    from keras_sgn.experiments import benchmark

    if FLAGS.peer:
        report = {"machine": benchmark.machine_info(), "peer_comparison": peer_comparison()}
        if FLAGS.output:
            io_utils.atomic_write_json(FLAGS.output, report)
            print(f"Wrote {FLAGS.output}")
        return
    methods = benchmark.DEFAULT_METHODS if FLAGS.methods is None else FLAGS.methods
    if not (methods or FLAGS.attacks):
        raise app.UsageError("nothing to time: give --methods and/or --attacks.")
    # The suite first: a bad model, dataset or attack fails before minutes of method timing.
    suite = attack_suite() if FLAGS.attacks else None
    report = {"machine": benchmark.machine_info()}
    if methods:
        epsilon = FLAGS.epsilon
        if epsilon is None:
            epsilon = benchmark.default_epsilon(FLAGS.dataset) if FLAGS.dataset else 8 / 255
        report = benchmark.benchmark_methods(
            model=FLAGS.model, methods=list(methods), batch_size=FLAGS.batch_size,
            epsilon=epsilon, attack_steps=FLAGS.attack_steps,
            xla_attack=(False, True) if FLAGS.xla else (False,), warmup=FLAGS.warmup,
            repeats=FLAGS.repeats, dataset=FLAGS.dataset)
    if suite is not None:
        report["attack_suite"] = suite
    print(benchmark.markdown_table(report))
    if FLAGS.output:
        io_utils.atomic_write_json(FLAGS.output, report)
        print(f"Wrote {FLAGS.output}")
    if "methods" in report:
        print(json.dumps({k: round(v["ratio_to_standard"], 2)
                          for k, v in report["methods"].items()}))


if __name__ == "__main__":
    cli.run_tool(main)

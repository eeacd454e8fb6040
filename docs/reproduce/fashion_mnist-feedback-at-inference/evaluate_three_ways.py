"""One evaluation of the feedback-at-inference study (README.md here).

It makes the library call `tools/evaluate.py --model=MODEL --dataset=fashion_mnist
--epsilon=0.1 --n_examples=1000 --order=original --attacks=ATTACKS
--output_dir=OUTPUT_DIR` makes (`keras_sgn.evaluation.evaluate_robustness`, the
same defaults: batch 128, seed 0, cascade, checkpoints in OUTPUT_DIR/checkpoints)
and writes the same report folder, with two additions tools/evaluate.py has no
flag for:

* `--feedback=constant` attacks a view of a `feedback_at_inference` model whose
  inference-time feedback is a constant to the gradient (`FeedbackAsConstant`):
  the same logits, but the attack's gradient stops at the feedback, which is
  what an evaluation that ignores the feedback computes ("the naive reading");
* `--feedback=off` attacks the same weights with the feedback switched off
  (`feedback_at_inference = False`: the plain network), to separate what the
  inference-time feedback does from what training did;
* OUTPUT_DIR/per_example.json keeps, per test image, whether it was classified
  correctly and whether it survived every attack of the run (read from the
  checkpoints before they are deleted), so that results.py can take the
  per-example worst case over runs.

    PYTHONPATH=. python docs/reproduce/fashion_mnist-feedback-at-inference/evaluate_three_ways.py \
        --model=RUN_DIR/model.keras --attacks='pgd-ce:steps=20;pgd-cw:steps=20' \
        --output_dir=OUTPUT_DIR [--feedback=constant|off] [--sanity_checks]
"""

import argparse
import glob
import json
import os

import numpy as np


def feedback_as_constant(model):
    """A Keras model computing exactly `model`'s feedback-at-inference logits,
    with the feedback (the hidden-site deltas and the input step, if any) held
    constant under differentiation: `tf.stop_gradient` on what the self-gradient
    pass produces, so gradients flow only through the final, injected pass."""
    import keras
    import tensorflow as tf

    from keras_sgn import attacks, feedback
    from keras_sgn import layers as sgn_layers

    class FeedbackAsConstant(keras.Model):
        def __init__(self, inner):
            super().__init__(name=f"{inner.name}_feedback_as_constant")
            self.inner = inner

        def call(self, x, training=None):
            inner = self.inner
            x = tf.convert_to_tensor(x)
            # The self-gradient pass on a constant copy of x: nothing it yields
            # depends on x for the outer gradient.
            first = feedback.self_gradient_pass(lambda z: inner(z, training=False),
                                                tf.stop_gradient(x))
            deltas = feedback.feedback_deltas(
                sgn_layers.sites_of(inner), first["activations"], first["site_gradients"],
                stop_gradient=True)
            if inner.feedback_epsilon > 0 and sgn_layers.has_input_site(inner):
                moved = attacks.core.project(
                    attacks.core.ascent_step(x, first["input_gradient"],
                                             inner.feedback_step_size, "linf"),
                    x, inner.feedback_epsilon, "linf")
                x = x + tf.stop_gradient(moved - x)  # same value, identity gradient
            with sgn_layers.inject_sites(deltas):
                return inner(x, training=False)  # a site context: the plain graph + deltas

    return FeedbackAsConstant(model)


def per_example(checkpoint_dir):
    """`{"clean": "0110...", "robust": "0100..."}` over the run's test images, in order."""
    clean, robust = [], []
    for path in sorted(glob.glob(os.path.join(checkpoint_dir, "batch-*.npz"))):
        with np.load(path, allow_pickle=False) as stored:
            clean.append(stored["clean"]), robust.append(stored["robust"])
    as_text = lambda mask: "".join("1" if v else "0" for v in np.concatenate(mask))  # noqa: E731
    return {"clean": as_text(clean), "robust": as_text(robust),
            "means": "character i: test image i (original file order); 1 = correctly "
                     "classified (clean) / correct and no attack of this run fooled it (robust)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--attacks", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--feedback", choices=("through", "constant", "off"), default="through")
    parser.add_argument("--sanity_checks", action="store_true")
    parser.add_argument("--n_examples", type=int, default=1000)
    parser.add_argument("--epsilon", type=float, default=0.1)
    args = parser.parse_args()

    import keras_sgn  # noqa: F401  (registers the custom objects)
    from keras_sgn import evaluation, io_utils

    model = io_utils.load_model_file(args.model)
    label = args.model
    if args.feedback != "through":
        if not getattr(model, "feedback_at_inference", False):
            raise SystemExit(f"--feedback={args.feedback}: {args.model} has no feedback at "
                             "inference.")
    if args.feedback == "constant":
        model = feedback_as_constant(model)
        label = f"{args.model} (feedback held constant under differentiation)"
    if args.feedback == "off":
        model.feedback_at_inference = False
        label = f"{args.model} (feedback switched off: the plain network of the same weights)"
    checkpoint_dir = os.path.join(args.output_dir, evaluation.checkpoints.CHECKPOINTS_FOLDER)
    examples = evaluation.AdversarialExamples(evaluation.runs.GRID_EXAMPLES)
    report = evaluation.evaluate_robustness(
        model, "fashion_mnist", args.epsilon, "linf", attacks=args.attacks, split="test",
        n_examples=args.n_examples, order="original", model_label=label, examples=examples,
        run_sanity_checks=args.sanity_checks, checkpoint_dir=checkpoint_dir, verbose=True)
    report["gradient_through_feedback"] = (
        bool(getattr(model, "feedback_at_inference", False)) if args.feedback == "through"
        else False)
    report["feedback_view"] = args.feedback
    outcomes = per_example(checkpoint_dir)
    if outcomes["clean"].count("1") != round(report["clean_accuracy"] * report["n_examples"]):
        raise SystemExit("per-example masks disagree with the report")
    written = evaluation.save_evaluation(report, args.output_dir, examples)
    with open(os.path.join(args.output_dir, "per_example.json"), "w") as f:
        json.dump(outcomes, f, indent=1)
    evaluation.checkpoints.delete_checkpoints(checkpoint_dir)
    print(f"clean {report['clean_accuracy']:.4f} robust {report['robust_accuracy']:.4f} "
          f"per attack {report['per_attack']} seconds {report['seconds']}")
    print(f"Wrote {', '.join(written)}, per_example.json to {args.output_dir}")


if __name__ == "__main__":
    main()

"""A model with `feedback_at_inference=True` is attacked THROUGH its feedback:
the attack loop, the public attack and the evaluation give the adversarial
images of an independent nested-tape PGD, which differ from those of the plain
network."""

import numpy as np
import tensorflow as tf

from keras_sgn import attacks, evaluation
from tests.sgn_reference import Tiny, ce, reference_feedback_logits, reference_pgd_iterates

EPSILON, STEPS = 0.15, 3
FEEDBACK = dict(feedback_at_inference=True, feedback_step_size=0.05, feedback_epsilon=0.05)


def _setup(n=64):
    tiny = Tiny(betas=(0.6, 0.3))
    feedback = tiny.twin(**FEEDBACK)
    x = tf.random.stateless_uniform((n, 6), [8, 9])
    # Labels the feedback model gets right, so every example is attacked.
    y = tf.argmax(feedback(x), axis=-1, output_type=tf.int32)
    return tiny, feedback, x, y


def _reference_iterates(tiny, x, y, through_feedback=True):
    def forward(images):
        if not through_feedback:
            return tiny.logits(images, training=False)
        return reference_feedback_logits(tiny, images, FEEDBACK["feedback_step_size"],
                                         FEEDBACK["feedback_epsilon"])

    return forward, reference_pgd_iterates(forward, x, y, x, EPSILON / 4, STEPS,
                                           epsilon=EPSILON)


def _worst_iterate(forward, iterates, y):
    """Per example: the first misclassified iterate, else the one of highest loss."""
    logits = [forward(z) for z in iterates]
    fooled = np.stack([np.argmax(out, -1) != y for out in logits])
    losses = np.stack([ce(y, out) for out in logits])
    pick = np.where(fooled.any(0), np.argmax(fooled, 0), np.argmax(losses, 0))
    return np.stack(iterates)[pick, np.arange(len(y))]


def _predict(model, images):
    return np.argmax(model(images, training=False), axis=-1)


def test_feedback_model_computes_the_reference_self_feedback():
    tiny, feedback, x, _ = _setup()
    want = reference_feedback_logits(tiny, x, FEEDBACK["feedback_step_size"],
                                     FEEDBACK["feedback_epsilon"])
    np.testing.assert_allclose(feedback(x), want, rtol=1e-5, atol=1e-6)
    assert np.abs(tiny.model(x) - want).max() > 1e-2  # the feedback changes the function


def test_attack_loop_goes_through_the_feedback():
    tiny, feedback, x, y = _setup()
    got = attacks.core.perturb(lambda z: feedback(z, training=False), x, y, epsilon=EPSILON,
                               step_size=EPSILON / 4, steps=STEPS)
    _, iterates = _reference_iterates(tiny, x, y)
    np.testing.assert_allclose(got, iterates[-1], atol=1e-6)
    # The plain network's attack is a different one.
    _, plain = _reference_iterates(tiny, x, y, through_feedback=False)
    differing = np.mean(np.abs(np.asarray(plain[-1] - iterates[-1])).max(axis=1) > 1e-3)
    assert differing > 0.25, differing


def test_pgd_attacks_through_the_feedback():
    tiny, feedback, x, y = _setup()
    got = attacks.pgd(feedback, x, y, epsilon=EPSILON, step_size=EPSILON / 4, steps=STEPS,
                      random_start=False)
    forward, iterates = _reference_iterates(tiny, x, y)
    want = _worst_iterate(forward, iterates, y.numpy())
    np.testing.assert_allclose(got, want, atol=1e-6)
    plain = attacks.pgd(tiny.model, x, y, epsilon=EPSILON, step_size=EPSILON / 4, steps=STEPS,
                        random_start=False)
    differing = np.mean(np.abs(np.asarray(plain) - want).max(axis=1) > 1e-3)
    assert differing > 0.25, differing


def test_evaluation_attacks_through_the_feedback():
    tiny, feedback, x, y = _setup()
    report = evaluation.evaluate_robustness(
        feedback, [(x.numpy(), y.numpy())], epsilon=EPSILON,
        attacks=f"pgd-ce:steps={STEPS},random_start=0,step_size={EPSILON / 4}",
        run_sanity_checks=False, verbose=False)
    _, iterates = _reference_iterates(tiny, x, y)
    robust = np.all([_predict(feedback, z) == y.numpy() for z in iterates], axis=0)
    _, plain = _reference_iterates(tiny, x, y, through_feedback=False)
    transferred = np.all([_predict(feedback, z) == y.numpy() for z in plain], axis=0)
    assert report["clean_accuracy"] == 1.0
    assert report["robust_accuracy"] == float(np.mean(robust))
    # An evaluation that attacked the plain network would report another number.
    assert float(np.mean(robust)) != float(np.mean(transferred))

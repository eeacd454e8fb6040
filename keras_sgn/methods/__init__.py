"""Training methods: one framework, one attack core (docs/guide.md, "Training methods").

A method turns a batch `(x, y)` into a weight update. All methods share the
attack primitives of `keras_sgn.attacks` and are driven by
`SGNModel.train_step`, so they are compared like for like:

| method    | what                                          | fwd+bwd per step |
|-----------|-----------------------------------------------|------------------|
| standard  | clean training                                | 1                |
| fast      | FGSM with random start (Wong et al. 2020)     | 2                |
| pgd       | PGD-k adversarial training (Madry et al. 2018)| k+1              |
| free      | Free-AT, m replays (Shafahi et al. 2019)      | m                |
| trades    | TRADES (Zhang et al. 2019)                    | k+1 (+1 fwd)     |
| sgn       | self-gradient feedback (the reconstruction)   | 2                |
| sgn-pgd   | self-gradient with a PGD-k input attack       | k+1              |

and variants of the reconstruction that were measured and not kept (none beat
`sgn` on time to target on Fashion-MNIST: docs/reproduce/fashion_mnist-variants;
they stay registered so that study reruns, `list_methods(variants=False)` leaves
them out): `sgn-reuse` (Free-AT replays
with hidden-site feedback, 1 per update), `sgn-ramp` (scheduled hidden-site
strength, 2), `sgn-align` (plus GradAlign, about 4), `sgn-nfgsm` (N-FGSM's
input step, 2); and, not measured yet, `sgn-memory` (`memory`: each example's
input step starts from its perturbation of the previous epoch, 2) and
`sgn-learned-start` (`learned_start`: the input step starts where a generator,
trained against the classifier, proposes from the image and its gradient, 3).

Modules: `base` (the `TrainingMethod` contract and shared loss helpers),
`replicas` (each replica's share of the global batch and replica-independent
random starts), `adversarial` (standard, fast, pgd, free, trades),
`self_gradient` (sgn, sgn-pgd), `variants`, `memory` (sgn-memory),
`learned_start` (sgn-learned-start) and
`registry` (name -> class, and what callers ask about a method by name).

Distribution (any `tf.distribute` strategy): every replica's gradient is that
of its per-replica mean loss times `local_batch / global_batch`, so summed over
replicas it is the global mean; random starts are drawn for the global batch
and sliced per replica (`replica_random_start`). Reported losses are
per-replica means, which metrics weighted by the batch size average correctly.
"""

# Loaded so that `methods.<module>.<name>` works after importing the package.
from keras_sgn.methods import replicas, variants  # noqa: F401
from keras_sgn.methods.adversarial import AdversarialTraining, Fast, Free, Standard, Trades
from keras_sgn.methods.base import TrainingMethod
from keras_sgn.methods.learned_start import SelfGradientLearnedStart
from keras_sgn.methods.memory import SelfGradientMemory
from keras_sgn.methods.registry import deserialize, get, list_methods, serialize
from keras_sgn.methods.self_gradient import SelfGradientPGD, SelfGradientTraining

__all__ = [
    "TrainingMethod",
    "Standard",
    "Fast",
    "AdversarialTraining",
    "Free",
    "Trades",
    "SelfGradientTraining",
    "SelfGradientPGD",
    "SelfGradientMemory",
    "SelfGradientLearnedStart",
    "get",
    "list_methods",
    "serialize",
    "deserialize",
]

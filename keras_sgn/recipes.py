"""Per-dataset training defaults ("dataset recipes"), registered as data.

A `TrainConfig` field left at `None` among `RECIPE_KEYS` takes its value from
the recipe of the run's dataset (`TrainConfig.resolved()`). Register a recipe
for a new dataset with `register_recipe`:

```python
keras_sgn.recipes.register_recipe(
    "my_dataset", model="sgn_small_cnn", epsilon=0.1, epochs=10, batch_size=128,
    learning_rate=1e-3, lr_schedule="cosine", optimizer="adam", weight_decay=0.0)
```
"""

from keras_sgn.errors import ArgumentError
from keras_sgn.registry import lookup

# The fields a dataset recipe gives (every recipe gives all of them).
RECIPE_KEYS = ("model", "epsilon", "epochs", "batch_size", "learning_rate", "lr_schedule",
               "optimizer", "weight_decay")

# dataset -> {field: value}; `register_recipe` is the way to add to it.
DATASET_RECIPES = {}


def register_recipe(dataset, **values):
    """Register (or replace) the defaults of `dataset`: one value for each of
    `RECIPE_KEYS`. Returns the recipe."""
    unknown = sorted(set(values) - set(RECIPE_KEYS))
    missing = [key for key in RECIPE_KEYS if key not in values]
    if unknown or missing:
        raise ArgumentError(
            f"register_recipe({dataset!r}, ...) takes exactly the keys {RECIPE_KEYS}. "
            f"Received unknown keys {unknown} and no value for {missing}. Give one value "
            "per key (other settings belong in the TrainConfig).")
    DATASET_RECIPES[dataset] = {key: values[key] for key in RECIPE_KEYS}
    return dict(DATASET_RECIPES[dataset])


def get_recipe(dataset):
    """A copy of the defaults registered for `dataset` (close matches in the error)."""
    return dict(lookup(DATASET_RECIPES, dataset, kind="dataset recipe", param="dataset",
                       advice="Register one with keras_sgn.recipes.register_recipe()."))


def list_recipes():
    """The datasets with a registered recipe, sorted."""
    return sorted(DATASET_RECIPES)


# -- the recipes ------------------------------------------------------------------
# CIFAR-like images follow "Fast is better than free" (Wong et al. 2020) for the
# single-step methods: SGD, cyclic learning rate, 8/255.
register_recipe("cifar10", model="sgn_resnet18", epsilon=8 / 255, epochs=30, batch_size=128,
                learning_rate=0.2, lr_schedule="cyclic", optimizer="sgd", weight_decay=5e-4)
register_recipe("cifar100", model="sgn_resnet18", epsilon=8 / 255, epochs=30, batch_size=128,
                learning_rate=0.2, lr_schedule="cyclic", optimizer="sgd", weight_decay=5e-4)
register_recipe("svhn_cropped", model="sgn_resnet18", epsilon=8 / 255, epochs=15,
                batch_size=128, learning_rate=0.05, lr_schedule="cyclic", optimizer="sgd",
                weight_decay=5e-4)

# 28x28 grey images: sgn_mnist_cnn (the small CNN of the published Fashion-MNIST
# adversarial-training anchor), Adam 1e-3 with cosine decay, batch 128. Fashion-MNIST:
# 20 epochs, measured on this project's 2-core CPU (PGD-AT validation robust accuracy
# was still rising by ~0.5 points per epoch at 15, flat by 17-20; see the zoo entries
# pgd-cnn-fashion-mnist / sgn-cnn-fashion-mnist). MNIST: no copy on the build machine,
# so its epochs are not measured; the threat radius is the literature's 0.3.
register_recipe("mnist", model="sgn_mnist_cnn", epsilon=0.3, epochs=20, batch_size=128,
                learning_rate=1e-3, lr_schedule="cosine", optimizer="adam", weight_decay=0.0)
register_recipe("fashion_mnist", model="sgn_mnist_cnn", epsilon=0.1, epochs=20, batch_size=128,
                learning_rate=1e-3, lr_schedule="cosine", optimizer="adam", weight_decay=0.0)

# The offline one-minute demo (scikit-learn's 8x8 digits).
register_recipe("digits", model="sgn_small_cnn", epsilon=0.1, epochs=30, batch_size=64,
                learning_rate=2e-3, lr_schedule="cosine", optimizer="adam", weight_decay=0.0)

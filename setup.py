"""keras-sgn: robust Keras classifiers built as Self-Gradient Networks."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "keras_sgn" / "__init__.py").read_text()).group(1)

setup(
    name="keras-sgn",
    version=VERSION,
    description="Adversarially robust Keras 3 / TensorFlow classifiers built as "
                "Self-Gradient Networks: layers, training methods, attacks, model zoo.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_sgn", "keras_sgn.*"]),
    # The zoo entries and the small models shipped with the package (keras_sgn.zoo).
    package_data={"keras_sgn": ["zoo_entries/*.json", "pretrained/*/*"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<3.16",
        "tensorflow-datasets>=4.9,<5",
        "huggingface-hub>=2.4,<3",  # the zoo relies on its 2.x errors and transport
        "absl-py>=2.0",
        "tensorboard>=2.16",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "numpy>=1.26",
    ],
    # The core (layers, models, methods, attacks, evaluation, training, data, the zoo) needs
    # only install_requires. "tune": KerasTuner for keras_sgn.tuning and tools/tune.py.
    # "peer": torch for tools/benchmark.py --peer=torchattacks (benchmarking only);
    # torchattacks 3.5.1 itself is installed without its dependencies (`make install-peer`):
    # it pins an old requests. Publishing (keras_sgn.hub) and the studies
    # (keras_sgn.experiments) use only the core's dependencies.
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.6"], "tune": ["keras-tuner>=1.4,<2"],
                    "peer": ["torch>=2.0"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

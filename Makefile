# Quick start: `make demo` (train + evaluate an SGN on the offline digits data)
# and `make test`. Both create/refresh .venv and are safe to rerun.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo
# What the demo prints its number beside (docs/reproduce/digits-demo-reference/README.md).
DEMO_REFERENCE := docs/reproduce/digits-demo-reference/summary.json

.PHONY: install install-peer demo test test-slow lint data clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package definition or the pinned versions change.
$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,tune]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) tools/train.py --dataset=digits --method=sgn --output_dir=$(DEMO_DIR) --verbose=1
	@$(PY) -c "import json; s = json.load(open('$(DEMO_REFERENCE)')); print(f\"reference: the same network trained without an adversary (--method=standard), same test: clean accuracy {s['clean_accuracy']:.4f}, robust accuracy {s['robust_accuracy']:.4f} ($(DEMO_REFERENCE))\")"

# The tests run in parallel, one worker per core up to 4 (each is a TensorFlow process of its
# own); a file's tests stay in one worker, so a module's shared fixture is built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: install
	$(PYTEST) tests

# End-to-end tests marked slow (kept out of `make test`).
test-slow: install
	$(PYTEST) -m slow tests

# The optional extra of `tools/benchmark.py --peer=torchattacks` (benchmarking only; `make test`
# never needs it). torchattacks 3.5.1 pins requests~=2.25.1, older than constraints.txt's, and
# declares torchvision, which it never imports: it goes in without its dependencies.
install-peer: install
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[peer]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps torchattacks==3.5.1

lint: install
	$(PY) -m ruff check keras_sgn tools tests

# Fashion-MNIST, the real-data benchmark (keras_sgn.data reads it offline): the Debian package
# where apt-get can install it (root), else the ways to get the files. Quick when present.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
FASHION_MNIST_FILES := $(addprefix $(FASHION_MNIST_DIR)/,train-images-idx3-ubyte.gz \
	train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

data:
	@if ls $(FASHION_MNIST_FILES) >/dev/null 2>&1; then \
		echo "Fashion-MNIST: present in $(FASHION_MNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y dataset-fashion-mnist \
			|| { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	else \
		echo "Fashion-MNIST is not installed, and apt-get cannot install it here (needs root" \
			"on Debian/Ubuntu). Any one of these makes it available to keras_sgn.data:"; \
		echo "  - sudo apt-get install dataset-fashion-mnist"; \
		echo "  - on a machine with network: python -c 'import keras;" \
			"keras.datasets.fashion_mnist.load_data()', then copy ~/.keras/datasets/fashion-mnist/"; \
		echo "  - the four IDX .gz files in a folder, passed as data_dir= (--data_dir)"; \
	fi

clean:
	rm -rf $(VENV) runs build *.egg-info

# Quick start: `make demo` (train + evaluate an SGN on the offline digits data)
# and `make test`. Both create/refresh .venv and are safe to rerun.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-slow clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package definition or the pinned versions change.
$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) tools/train.py --dataset=digits --method=sgn --output_dir=$(DEMO_DIR) --verbose=2

test: install
	$(PY) -m pytest -q tests

# End-to-end tests marked slow (kept out of `make test`).
test-slow: install
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) runs build *.egg-info

# Each target creates .venv when missing (or when pyproject.toml changed), installs, and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: reproduce test bench lint format notebooks docs docs-vendor

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $@

reproduce: $(BIN)/.installed
	$(BIN)/sublim-toy reproduce

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/sublim-toy bench

lint: $(BIN)/.installed
	$(BIN)/ruff check sublim_toy tests notebooks
	$(BIN)/ruff format --check sublim_toy tests notebooks

format: $(BIN)/.installed
	$(BIN)/ruff format sublim_toy tests notebooks
	$(BIN)/ruff check --fix sublim_toy tests notebooks

# Re-execute every notebook in place at full size (about 25 min on 2 shared CPU cores, mostly 01).
notebooks: $(BIN)/.installed
	$(BIN)/python notebooks/execute.py --in-place notebooks/01_reproduce_mnist.ipynb notebooks/02_theorem_check.ipynb notebooks/03_mechanism.ipynb

# The documentation site, built offline in strict mode (any warning, a broken link or a missing
# file among them, fails) into $(DOCS_OUT); open $(DOCS_OUT)/index.html. See docs/conf.py.
DOCS_OUT ?= build/site

docs: docs-vendor
	rm -rf $(DOCS_OUT)
	$(BIN)/sphinx-build -W --keep-going -q -b html -c docs . $(DOCS_OUT)

# KaTeX from the npm registry (docs/vendor_katex.py pins version and integrity); fetched once.
docs-vendor: $(BIN)/.installed
	$(BIN)/python docs/vendor_katex.py

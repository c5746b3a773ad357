# Each target creates .venv when missing (or when pyproject.toml changed), installs, and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: reproduce test lint format

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

reproduce: $(BIN)/.installed
	$(BIN)/sublim-toy reproduce

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check sublim_toy tests
	$(BIN)/ruff format --check sublim_toy tests

format: $(BIN)/.installed
	$(BIN)/ruff format sublim_toy tests
	$(BIN)/ruff check --fix sublim_toy tests

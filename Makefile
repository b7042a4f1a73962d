# Two entry points for a fresh machine:  make demo  |  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PORT ?= 7860

.PHONY: setup demo test lint rebuild clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU wheel on this machine's disk is used instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python app.py --port $(PORT)

test: setup
	$(BIN)/ruff check workbench tests app.py
	$(BIN)/python -m pytest -q -ra tests

lint: setup
	$(BIN)/ruff check --fix workbench tests app.py
	$(BIN)/ruff format workbench tests app.py

rebuild: setup
	$(BIN)/workbench rebuild

clean:
	rm -rf $(VENV) runs

# Two entry points for a fresh machine:  make demo  |  make test
# While editing: make test-fast (the unit tier, < 1 min) | make lab (JupyterLab on notebooks/)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PORT ?= 7860
LAB_PORT ?= 8888

.PHONY: setup demo test test-fast lab lint rebuild clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU wheel on this machine's disk is used instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[test,lab]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python app.py --port $(PORT)

# the browser test drives Debian's Chromium: installed here when missing and we may (root)
test: setup
	command -v chromium >/dev/null || (test "$$(id -u)" = 0 && apt-get install -y -q chromium)
	$(BIN)/ruff check workbench tests app.py scripts
	$(BIN)/python -m pytest -q -ra tests

# the unit tier only: pure functions and tiny models, under a minute (tests/unit)
test-fast: setup
	$(BIN)/python -m pytest -q tests/unit

# JupyterLab from the venv, rooted at notebooks/ (open the printed URL; LAB_PORT=... to change the port);
# Jupyter refuses to run as root unless told to, as in a container
lab: setup
	$(BIN)/jupyter lab notebooks/ --no-browser --port $(LAB_PORT) $$(test "$$(id -u)" = 0 && echo --allow-root)

lint: setup
	$(BIN)/ruff check --fix workbench tests app.py scripts
	$(BIN)/ruff format workbench tests app.py scripts

rebuild: setup
	$(BIN)/workbench rebuild

clean:
	rm -rf $(VENV) runs

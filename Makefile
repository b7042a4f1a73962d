# Two entry points for a fresh machine:  make demo  |  make test
# While editing: make test-fast (the unit tier, < 1 min) | make lab (JupyterLab on notebooks/)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PORT ?= 7860
LAB_PORT ?= 8888

.PHONY: setup demo test test-fast lab lint rebuild clean mutate notebooks-html

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

# mutation testing of the core modules, outside `make test` (an hour on 2 idle cores, hours on busy ones): the
# kill rate per module goes to docs/testing.md, every surviving mutant to docs/mutation-report.md
# (MODULES="losses evaluate" for some modules only; MUTATE_JOBS mutants at a time)
MUTATE_JOBS ?= 2
mutate: setup
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q -e ".[mutate]"
	rm -rf mutants
	nice -n 10 $(BIN)/python scripts/mutate.py --jobs $(MUTATE_JOBS) $(MODULES)

# JupyterLab from the venv, rooted at notebooks/ (open the printed URL; LAB_PORT=... to change the port);
# Jupyter refuses to run as root unless told to, as in a container
lab: setup
	$(BIN)/jupyter lab notebooks/ --no-browser --port $(LAB_PORT) $$(test "$$(id -u)" = 0 && echo --allow-root)

# executed copies of the seven notebooks in docs/notebooks/ (HTML, figures inline, plotly.js beside them: they
# open offline in any browser); full mode takes about 10 minutes on 2 cores, QUICK=1 about 3
notebooks-html: setup
	$(BIN)/python -m workbench.notebook --out docs/notebooks $(if $(QUICK),--quick) notebooks/*.ipynb

lint: setup
	$(BIN)/ruff check --fix workbench tests app.py scripts
	$(BIN)/ruff format workbench tests app.py scripts

rebuild: setup
	$(BIN)/workbench rebuild

clean:
	rm -rf $(VENV) runs

# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup system demo test test-unit lint typecheck gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## train examples/digits-dbn.yaml data-parallel on an embedded Ray
	$(BIN)/xsharp run examples/digits-dbn.yaml --out runs/digits-dbn

system:  ## Debian packages the tests use (prometheus, espeak-ng, sox, dataset-fashion-mnist)
	scripts/system-deps.sh

test: setup system  ## the test suite: unit tests, a real local Ray, a real Prometheus
	$(BIN)/python -m pytest -q

test-unit: setup  ## the tests that need no Ray, browser, Debian package or ansible: under a minute
	$(BIN)/python -m pytest -q -n auto -m "not ray and not system and not browser and not ansible"

LINTED := xsharp tests bench scripts examples

lint: setup  ## ruff: lint rules and formatting (pyproject.toml [tool.ruff])
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: setup  ## mypy over the typed core (pyproject.toml [tool.mypy] lists the files)
	$(BIN)/mypy

gpu-check:  ## on a GPU machine without the network: scripts/gpu-check.sh (see the README)
	scripts/gpu-check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## train examples/digits-dbn.yaml data-parallel on an embedded Ray
	$(BIN)/xsharp run examples/digits-dbn.yaml --out runs/digits-dbn

test: setup  ## the test suite: unit tests plus a real local Ray
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup system demo test gpu-check clean

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

gpu-check:  ## on a GPU machine without the network: scripts/gpu-check.sh (see the README)
	scripts/gpu-check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache

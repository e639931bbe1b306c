# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create or reuse the virtual environment in $(VENV) and install kerasprune into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kerasprune-installed
# The offline TFDS copy beside the clone, unless the caller chose a data dir.
TFDS_DATA_DIR ?= $(if $(wildcard ../shared/tfds),$(abspath ../shared/tfds),)
export TFDS_DATA_DIR

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kerasprune demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal

clean:
	rm -rf $(VENV) build *.egg-info

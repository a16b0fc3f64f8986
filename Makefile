# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench eval clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: start a local broker + Redis and stream MIT-BIH patients through the pipeline
demo: $(STAMP)
	$(BIN)/ecgmon up

## test: the whole test suite against a real broker and Redis started by the session
test: $(STAMP)
	ECGMON_TEST_DATA_DIR=$${ECGMON_TEST_DATA_DIR:-$(abspath ../shared/data)} $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check stream replay detector tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

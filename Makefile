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

# A local copy of MIT-BIH beside the repo is used when present; otherwise records are
# downloaded from PhysioNet into ~/.cache/ecgmon.
LOCAL_MITDB := $(abspath ../shared/data/mitdb)
DEMO_DATA   := $(if $(ECGMON_DATA_DIR),$(ECGMON_DATA_DIR),$(if $(wildcard $(LOCAL_MITDB)/100.hea),$(LOCAL_MITDB),))

## demo: start a local broker + Redis and stream MIT-BIH patients through the pipeline
demo: $(STAMP)
	ECGMON_DATA_DIR=$(DEMO_DATA) $(BIN)/ecgmon up

# The browser test (tests/e2e) drives Debian's Chromium (never a downloaded one): install it when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { echo "make test needs $(CHROMIUM): apt-get install -y chromium (as root)" >&2; exit 1; }
	test -x $(CHROMIUM)

## test: the whole test suite against a real broker and Redis started by the session
test: $(STAMP) $(CHROMIUM)
	node --test dashboards/web/tests/
	ECGMON_TEST_DATA_DIR=$${ECGMON_TEST_DATA_DIR:-$(abspath ../shared/data)} $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check stream replay detector tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

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
	$(BIN)/pip install --quiet -e '.[dev,train]'
	@echo "compiling the signal kernels once (numba, ~30 s; cached in detector/core/__pycache__)"
	$(BIN)/python -c 'from detector.core.monitor import warm_up; warm_up()'
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

## eval: the full accuracy evaluations of BENCHMARKS.md (48 MIT-BIH records, nstdb, DS2)
SHARED := $(abspath ../shared/data)
eval: $(STAMP)
	mkdir -p out
	$(BIN)/ecgmon eval qrs --data-dir $(SHARED)/mitdb --json out/qrs_mitdb.json
	$(BIN)/ecgmon eval qrs --data-dir $(SHARED)/nstdb --json out/qrs_nstdb.json
	$(BIN)/ecgmon eval beats --data-dir $(SHARED)/mitdb --records ds2 --json out/beats_ds2.json
	$(BIN)/ecgmon eval beats --data-dir $(SHARED)/mitdb --records ds2 --noise-dir $(SHARED)/nstdb --json out/beats_ds2_noise.json
	$(BIN)/ecgmon eval alarms --data-dir $(SHARED)/mitdb --json out/alarms.json

## bench: replay throughput and the end-to-end pipeline benchmarks of BENCHMARKS.md
bench: $(STAMP)
	mkdir -p out
	$(BIN)/python -m replay.bench --data-dir $(SHARED)/mitdb
	ECGMON_DATA_DIR=$(SHARED)/mitdb $(BIN)/ecgmon bench --patients 1000 --detectors 2 --chunk-s 1 --duration 60 --json out/bench_realtime.json
	ECGMON_DATA_DIR=$(SHARED)/mitdb $(BIN)/ecgmon bench --speed max --detectors 2 --json out/bench_max.json

lint: $(STAMP)
	$(BIN)/ruff check stream replay detector tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Two commands set a fresh machine up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kdstudy-installed
export NO_ALBUMENTATIONS_UPDATE := 1
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup run demo test bench faults clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changed (or the venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,neptune,tensorboard,ray,mlflow,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kdtui

demo: $(STAMP)
	$(VENV)/bin/kdengine study run demo
	$(VENV)/bin/kdengine study table demo --out runs/demo-tables --format both
	$(VENV)/bin/kdengine report demo --out runs/demo-report
	cat runs/demo-tables/tables.md

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# 20 SIGKILLs of a worker (half of them inside checkpoint writes) across a teacher and its student
faults: $(STAMP)
	$(PY) -m benchmarks.faults --kills 20

clean:
	rm -rf $(VENV) .pytest_cache data/cache data/synthetic

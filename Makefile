# Two commands set a fresh machine up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kdstudy-installed
export NO_ALBUMENTATIONS_UPDATE := 1
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup run demo test test-browser test-gpu bench bench-gpu gpu-verify faults clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changed (or the venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,neptune,tensorboard,ray,mlflow,bench,explain,serve,browser]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kdtui

demo: $(STAMP)
	$(VENV)/bin/kdengine study run demo
	$(VENV)/bin/kdengine explain demo --images 8
	$(VENV)/bin/kdengine study table demo --out runs/reports/demo-tables --format both
	$(VENV)/bin/kdengine report demo --out runs/reports/demo-report
	cat runs/reports/demo-tables/tables.md

test: $(STAMP)
	$(PY) -m pytest -q

# kdtui --serve in headless Chromium (selenium + chromium-driver, from Debian: see the README's set-up line)
test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser tests/browser

# the CUDA-only checks (tests/gpu): the graphed step against the eager one, the device-resident input
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests/gpu

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# kdstudy's trainer, worker and study paths on one GPU: each section stopped hard at its share of 8 minutes
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.gpu --out bench-gpu.json $(BENCH_ARGS)

# the first thing to run on a lent GPU: test-gpu, then bench-gpu, 9 minutes at most together; gpu-verify.json and
# a verdict per fast-path flag (on by default, or not yet and why)
gpu-verify: $(STAMP)
	$(PY) -m benchmarks.verify --out gpu-verify.json

# 20 SIGKILLs of a worker (half of them inside checkpoint writes) across a teacher and its student
faults: $(STAMP)
	$(PY) -m benchmarks.faults --kills 20

clean:
	rm -rf $(VENV) .pytest_cache data/cache data/synthetic

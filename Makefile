# Two commands set a fresh machine up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kdstudy-installed
EXTRAS ?= dev,neptune,tensorboard,ray,mlflow,bench,explain,serve,browser
# An air-gapped box (README, "An air-gapped GPU server"): `make wheelhouse` on a connected machine, then
# `make setup WHEELHOUSE=dir` on the box. What the wheelhouse is gathered for:
WHEELHOUSE_PYTHON   ?= 3.12
WHEELHOUSE_PLATFORM ?= manylinux_2_28_x86_64
OFFLINE_EXTRAS      ?= dev,bench,explain
# make gpu-verify runs with the venv's Python, else (no venv: a GPU box with its own torch) with this one
VERIFY_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
export NO_ALBUMENTATIONS_UPDATE := 1
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup run demo test test-browser test-gpu bench bench-gpu gpu-verify gpu-verify-dry wheelhouse faults clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changed (or the venv is missing). With WHEELHOUSE=dir: no network at all;
# the venv sees the box's own packages (--system-site-packages) when its torch fits kdstudy's pin, and pip takes
# everything else from the wheelhouse only (kdstudy itself editable, built without isolation by its setuptools).
$(STAMP): pyproject.toml
ifdef WHEELHOUSE
	test -x $(PY) || $(PYTHON) -m venv $$($(PYTHON) tools/wheelhouse.py venv-flags) $(VENV)
	$(PY) -m pip install --quiet --no-index --find-links '$(WHEELHOUSE)' 'setuptools>=70.1'
	$(PY) -m pip install --quiet --no-index --find-links '$(WHEELHOUSE)' --no-build-isolation \
	  -e '.[$(if $(filter command line,$(origin EXTRAS)),$(EXTRAS),$(OFFLINE_EXTRAS))]'
else
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
endif
	touch $(STAMP)

# On a connected machine: every wheel the air-gapped box needs, for its Python and platform, into WHEELHOUSE
# (default ./wheelhouse). WHEELHOUSE_ARGS=--reuse-torch leaves torch and its CUDA libraries to the box.
wheelhouse:
	$(PYTHON) tools/wheelhouse.py gather '$(or $(WHEELHOUSE),wheelhouse)' --python-version $(WHEELHOUSE_PYTHON) \
	  --platform $(WHEELHOUSE_PLATFORM) --extras $(OFFLINE_EXTRAS) $(WHEELHOUSE_ARGS)

run: $(STAMP)
	$(VENV)/bin/kdtui

demo: $(STAMP)
	$(VENV)/bin/kdengine study run demo
	$(VENV)/bin/kdengine explain demo --images 8
	$(VENV)/bin/kdengine study table demo --out runs/reports/demo-tables --format both
	$(VENV)/bin/kdengine report demo --out runs/reports/demo-report
	cat runs/reports/demo-tables/tables.md

# Two workers (pytest-xdist, a test file each at a time: a file's fixtures are built once), then, alone on the
# machine, the few tests that measure the UI's latency (marked serial). Both parts always run; either failing fails.
# TEST_ARGS narrows both (a file, -k): a part it leaves empty is no failure, unless it leaves both empty.
TEST_WORKERS ?= 2
test: $(STAMP)
	@p=0; s=0; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m 'not serial' $(TEST_ARGS) || p=$$?; \
	$(PY) -m pytest -q -m serial $(TEST_ARGS) || s=$$?; \
	if [ -n "$(if $(strip $(TEST_ARGS)),narrowed)" ] && [ $$p$$s != 55 ]; then \
	  [ $$p -eq 5 ] && p=0; [ $$s -eq 5 ] && s=0; fi; \
	[ $$p -eq 5 ] || [ $$s -eq 5 ] && echo "pytest collected no tests: failing" >&2; \
	[ $$p -eq 0 ] && [ $$s -eq 0 ]

# kdtui --serve in headless Chromium (selenium + chromium-driver, from Debian: see the README's set-up line)
test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser tests/browser

# the CUDA-only checks (tests/gpu): the graphed step against the eager one, the device-resident input
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests/gpu

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# kdstudy's trainer, worker and study paths on one GPU: each section stopped hard at its share of its budget
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.gpu --out bench-gpu.json $(BENCH_ARGS)

# the first thing to run on a GPU: its tests, then bench-gpu, 9 minutes at most together; gpu-verify.json and a
# verdict per fast-path flag (on by default, or not yet and why); VERIFY_ARGS=--apply writes the verdicts into
# kdengine/fast_path.json, the defaults the trainer reads. No venv needed: without one, this Python runs it.
gpu-verify:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(VERIFY_PY) -m benchmarks.verify --out gpu-verify.json \
	  $(VERIFY_ARGS)

# its CPU rehearsal: the same script, budget split and sections on a tiny workload (make test runs it)
gpu-verify-dry:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(VERIFY_PY) -m benchmarks.verify --dry \
	  --out gpu-verify-dry.json $(VERIFY_ARGS)

# 20 SIGKILLs of a worker (half of them inside checkpoint writes) across a teacher and its student
faults: $(STAMP)
	$(PY) -m benchmarks.faults --kills 20

clean:
	rm -rf $(VENV) .pytest_cache data/cache data/synthetic

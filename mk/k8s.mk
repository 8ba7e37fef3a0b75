# Kubernetes packaging: chart render, images, local kind cluster (see helm/mainsail/README.md).
# The kind targets need docker, kind, kubectl and helm; they are not run in CI (no container
# engine there), tests/k8s checks everything that can be checked without a cluster.

.PHONY: render
render: ## Re-render manifests/base/mainsail.yaml from helm/mainsail (default values)
	@$(PIPE)/python manifests/render.py

.PHONY: render-check
render-check: ## Fail when manifests/base is stale
	@$(PIPE)/python manifests/render.py --check

.PHONY: test-k8s
test-k8s: ## Kubernetes validation suite (chart, overlays, schemas, pod security, checkov, images)
	@$(PIPE)/python -m pytest -m k8s tests/k8s $(PYTEST_ARGS)

.PHONY: images
images: ## Build the pipeline, serving and drift images (needs a container engine)
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  LOAD=0 scripts/kind/images.sh; \
	else \
	  echo "images: no container engine here (docker info failed); build on a machine with Docker:"; \
	  echo "  docker build -f images/<pipeline|serving|drift>/Dockerfile -t ghcr.io/mainsail-mlops/mainsail-<env>:0.1.0 ."; \
	  exit 1; \
	fi

.PHONY: kind-up
kind-up: ## Create the kind cluster, install operators, build+load images, install Mainsail
	@scripts/kind/up.sh

.PHONY: kind-e2e
kind-e2e: kind-up ## kind-up, then the smoke test: train, deploy a canary, predict, read drift metrics
	@scripts/kind/smoke.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@scripts/kind/down.sh

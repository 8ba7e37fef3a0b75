# Kubernetes packaging: chart render, images, local kind cluster (see helm/mainsail/README.md).
# The kind targets need docker, kind, kubectl and helm. MAINSAIL_CLUSTER_SOURCE=local (CI, no
# registry) builds kind, kubectl, helm, the node image and the operators' images from their Go
# modules first (scripts/cluster/build.sh; needs go and the project's container engine);
# the default, upstream, pulls them. tests/k8s checks what can be checked without a cluster.

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

.PHONY: cluster-build
cluster-build: ## Build the local cluster's binaries and images from Go modules (what kind-up runs first with MAINSAIL_CLUSTER_SOURCE=local)
	@scripts/cluster/build.sh all

.PHONY: kind-up
kind-up: ## Create the kind cluster (kind-config.yaml), the CNI, the GPU pool and the operators; idempotent
	@scripts/kind/up.sh

.PHONY: kind-e2e
kind-e2e: kind-up ## kind-up, install Mainsail, then the smoke test: train, deploy a canary, predict, read drift metrics
	@scripts/kind/install.sh
	@scripts/kind/smoke.sh

.PHONY: kind-netpol-check
kind-netpol-check: ## Prove on the kind cluster that NetworkPolicy is enforced (allow/deny across nodes)
	@scripts/kind/netpol-check.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@scripts/kind/down.sh

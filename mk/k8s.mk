# Kubernetes packaging: chart render, images, local kind cluster (see helm/mainsail/README.md).
# The kind targets need docker, kind, kubectl and helm. MAINSAIL_CLUSTER_SOURCE=local (CI, no
# registry) builds kind, kubectl, helm, the node image and the operators' images from their Go
# modules first (scripts/cluster/build.sh; needs go and the project's container engine);
# the default, upstream, pulls them. The images are built and
# tried as containers in CI (tests/containers); tests/k8s checks the rest offline.

.PHONY: render
render: ## Re-render manifests/base/mainsail.yaml from helm/mainsail (default values)
	@$(PIPE)/python manifests/render.py

.PHONY: render-check
render-check: ## Fail when manifests/base is stale
	@$(PIPE)/python manifests/render.py --check

.PHONY: test-k8s
test-k8s: ## Kubernetes validation suite (chart, overlays, schemas, pod security, checkov, images)
	@$(PIPE)/python -m pytest -m k8s tests/k8s $(PYTEST_ARGS)

.PHONY: engine
engine: ## Start the project's container engine when none answers (Debian's docker.io, data root in ~/.cache/mainsail/docker)
	@scripts/docker.sh up

.PHONY: images
images: ## Build the pipeline, serving and drift images (BuildKit; a local Debian base where no registry answers)
	@scripts/images.sh

# `make test` builds the images where an engine can run (the container tests use them); where
# none can, it says why and the container tests skip with that reason (never in CI).
.PHONY: images-if-engine
images-if-engine:
	@scripts/images.sh --if-engine

.PHONY: cluster-build
cluster-build: ## Build the local cluster's binaries and images from Go modules (what kind-up runs first with MAINSAIL_CLUSTER_SOURCE=local)
	@scripts/cluster/build.sh all

.PHONY: kind-up
kind-up: ## Create the kind cluster (kind-config.yaml), the CNI, the GPU pool and the operators; idempotent
	@scripts/kind/up.sh

# kind-e2e uses the pipeline venv (pytest, the kubernetes client), the images (install.sh builds
# and loads them) and the cluster (kind-up is idempotent: an existing cluster is kept).
.PHONY: kind-e2e
kind-e2e: envs kind-up ## Install Mainsail on the kind cluster (helm), then tests/cluster; the Seldon smoke test where Seldon runs (upstream mode)
	@scripts/kind/install.sh
	@scripts/kind/e2e.sh

.PHONY: kind-netpol-check
kind-netpol-check: ## Prove on the kind cluster that NetworkPolicy is enforced (allow/deny across nodes)
	@scripts/kind/netpol-check.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	@scripts/kind/down.sh

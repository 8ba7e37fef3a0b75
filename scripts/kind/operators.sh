#!/usr/bin/env bash
# Install the operators the chart depends on but does not vendor, then wait until each CRD is
# Established and each component is Ready. Idempotent (helm upgrade --install, server-side apply).
#
#   MAINSAIL_CLUSTER_SOURCE=upstream  Prometheus Operator with Grafana and Alertmanager
#       (kube-prometheus-stack), KubeRay, Seldon Core 2 and Kubeflow Pipelines from their upstream
#       Helm charts and manifests; the nodes pull the images.
#   MAINSAIL_CLUSTER_SOURCE=local     Prometheus Operator (its module's bundle.yaml) with a
#       Prometheus and an Alertmanager named as kube-prometheus-stack's, and KubeRay (its module's config/default),
#       with the images scripts/cluster/build.sh built; Seldon Core 2 and KFP are not built here
#       yet (issue 17).
# The operators run in the same namespaces, under the same names, in both.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need kubectl helm

# kubectl apply -k of upstream manifests in NAMESPACE: the COPY paths (files or directories of a
# module) are copied into a temporary kustomization of ours whose one resource is RESOURCE, one of
# the copies (kustomize loads nothing from outside its root, and the module cache is read-only).
apply_kustomized() {  # apply_kustomized NAMESPACE RESOURCE COPY...
  local namespace=$1 resource=$2 tmp
  shift 2
  tmp=$(mktemp -d)
  cp -r "$@" "$tmp/"
  chmod -R u+w "$tmp"
  cat > "$tmp/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $namespace
resources:
  - $resource
EOF
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # server-side: the CRDs are larger than client-side apply's last-applied annotation allows
  kubectl apply --server-side --force-conflicts -k "$tmp" >/dev/null
  rm -rf "$tmp"
}

module_dir() {  # module_dir WRAPPER MODULE: the pinned upstream module's files (local mode)
  source "$ROOT/scripts/cluster/lib.sh"
  cluster_go_env
  moddir "$1" "$2"
}

helm_repos() {
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
  helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
  helm repo add seldon https://seldonio.github.io/helm-charts --force-update >/dev/null
  helm repo update >/dev/null
}

prometheus_operator() {
  local deployment
  if [ "$MAINSAIL_CLUSTER_SOURCE" = upstream ]; then
    step "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (Prometheus Operator, Prometheus, Alertmanager, Grafana)"
    # The release name matches monitoring.selectorLabels in helm/mainsail/values.yaml; Grafana's
    # sidecar picks up ConfigMaps labelled grafana_dashboard=1 in every namespace.
    helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
      --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
      --set grafana.service.type=NodePort --set grafana.service.nodePort=30300 \
      --set grafana.sidecar.dashboards.enabled=true --set grafana.sidecar.dashboards.searchNamespace=ALL
    deployment=kube-prometheus-stack-operator
  else
    step "Prometheus Operator $PROMETHEUS_OPERATOR_VERSION (bundle.yaml of its module), Prometheus $PROMETHEUS_VERSION, Alertmanager $ALERTMANAGER_VERSION"
    apply_kustomized monitoring bundle.yaml \
      "$(module_dir prometheus-operator github.com/prometheus-operator/prometheus-operator)/bundle.yaml"
    deployment=prometheus-operator
  fi
  wait_crds prometheuses.monitoring.coreos.com servicemonitors.monitoring.coreos.com \
    podmonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com \
    alertmanagers.monitoring.coreos.com alertmanagerconfigs.monitoring.coreos.com \
    probes.monitoring.coreos.com scrapeconfigs.monitoring.coreos.com
  wait_deployment monitoring "$deployment"
  if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
    kubectl apply --server-side --force-conflicts -f "$ROOT/scripts/kind/manifests/prometheus.yaml" \
      -f "$ROOT/scripts/kind/manifests/alertmanager.yaml" >/dev/null
  fi
  wait_for "Prometheus monitoring/kube-prometheus-stack-prometheus Available" 600 \
    kubectl -n monitoring wait --for=condition=Available --timeout=10s prometheus/kube-prometheus-stack-prometheus
  wait_for "Alertmanager monitoring/kube-prometheus-stack-alertmanager Available" 600 \
    kubectl -n monitoring wait --for=condition=Available --timeout=10s alertmanager/kube-prometheus-stack-alertmanager
}

kuberay() {
  if [ "$MAINSAIL_CLUSTER_SOURCE" = upstream ]; then
    step "KubeRay operator $KUBERAY_VERSION (Helm chart)"
    helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" \
      --namespace kuberay-system --create-namespace
  else
    step "KubeRay operator $KUBERAY_VERSION (config/default of its module)"
    apply_kustomized kuberay-system config/default \
      "$(module_dir kuberay github.com/ray-project/kuberay/ray-operator)/config"
  fi
  wait_crds rayclusters.ray.io rayjobs.ray.io rayservices.ray.io
  wait_deployment kuberay-system kuberay-operator
}

seldon() {
  step "Seldon Core 2 $SELDON_VERSION (CRDs and operator; the runtime is installed per namespace)"
  helm upgrade --install seldon-core-v2-crds seldon/seldon-core-v2-crds --version "$SELDON_VERSION"
  # clusterwide: the operator in seldon-system reconciles the Mainsail namespace too
  helm upgrade --install seldon-core-v2-setup seldon/seldon-core-v2-setup --version "$SELDON_VERSION" \
    --namespace seldon-system --create-namespace -f "$ROOT/scripts/kind/seldon/setup-values.yaml"
  wait_crds models.mlops.seldon.io servers.mlops.seldon.io experiments.mlops.seldon.io \
    seldonruntimes.mlops.seldon.io serverconfigs.mlops.seldon.io
  wait_for "deployments in seldon-system Available" 600 \
    kubectl -n seldon-system wait --for=condition=Available --timeout=10s deployment --all
}

kfp() {
  step "Kubeflow Pipelines $KFP_VERSION (standalone)"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
  wait_crds applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"
  kubectl -n kubeflow patch service ml-pipeline-ui --type merge \
    -p '{"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":3000,"nodePort":30880}]}}'
  wait_deployment kubeflow ml-pipeline 900
}

if [ "$MAINSAIL_CLUSTER_SOURCE" = upstream ]; then
  step "helm repositories"
  helm_repos
fi
prometheus_operator
kuberay
if [ "$MAINSAIL_CLUSTER_SOURCE" = upstream ]; then
  seldon
  kfp
else
  # Their releases come from registries that a local build cannot reach (and Seldon's Envoy has
  # no binary in the package registries): the local cluster serves with the mlserver backend,
  # Seldon's CRDs applied by install.sh.
  echo "Seldon Core 2's operator and Kubeflow Pipelines: installed only with MAINSAIL_CLUSTER_SOURCE=upstream (their releases); here: the mlserver backend, Seldon's CRDs from install.sh"
fi

#!/usr/bin/env bash
# Install the operators the chart depends on but does not vendor: Prometheus Operator (with
# Grafana), KubeRay, Seldon Core 2 and Kubeflow Pipelines. Idempotent: helm upgrade --install.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need kubectl helm

step "helm repositories"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update
helm repo add seldon https://seldonio.github.io/helm-charts --force-update
helm repo update

step "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (Prometheus Operator, Alertmanager, Grafana)"
# The release name matches monitoring.selectorLabels in helm/mainsail/values.yaml; Grafana's
# sidecar picks up ConfigMaps labelled grafana_dashboard=1 in every namespace.
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
  --set grafana.service.type=NodePort --set grafana.service.nodePort=30300 \
  --set grafana.sidecar.dashboards.enabled=true --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --wait

step "KubeRay operator $KUBERAY_VERSION"
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" \
  --namespace kuberay-system --create-namespace --wait

step "Seldon Core 2 $SELDON_VERSION (CRDs and operator; the runtime is installed per namespace)"
helm upgrade --install seldon-core-v2-crds seldon/seldon-core-v2-crds --version "$SELDON_VERSION" --wait
helm upgrade --install seldon-core-v2-setup seldon/seldon-core-v2-setup --version "$SELDON_VERSION" \
  --namespace seldon-system --create-namespace --wait

step "Kubeflow Pipelines $KFP_VERSION (standalone)"
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"
kubectl -n kubeflow patch service ml-pipeline-ui --type merge \
  -p '{"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":3000,"nodePort":30880}]}}'
kubectl -n kubeflow rollout status deployment/ml-pipeline --timeout=900s

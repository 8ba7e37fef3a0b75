#!/usr/bin/env bash
# Install Mainsail on the kind cluster made by scripts/kind/up.sh: build and load the images,
# apply the kind overlay (the chart's render with kind patches), Seldon's runtime and its mesh on
# a NodePort. Each step is a plain command you can also run by hand (helm/mainsail/README.md).
set -euo pipefail
source "$(dirname "$0")/env.sh"
need kubectl helm docker
kubectl config use-context "kind-$CLUSTER" >/dev/null

"$(dirname "$0")/images.sh"

step "Mainsail (kustomize overlay manifests/overlays/kind = the chart with kind patches)"
kubectl apply -k "$ROOT/manifests/overlays/kind"
# Seldon's runtime (scheduler, envoy) for the namespace, then its mesh on a NodePort.
helm upgrade --install seldon-runtime seldon/seldon-core-v2-runtime --version "$SELDON_VERSION" \
  --namespace "$NAMESPACE" --wait
kubectl -n "$NAMESPACE" patch service seldon-mesh --type merge \
  -p '{"spec":{"type":"NodePort","ports":[{"name":"data","port":80,"targetPort":9000,"nodePort":30080}]}}'
kubectl -n "$NAMESPACE" rollout status deployment --timeout=600s
kubectl -n "$NAMESPACE" wait --for=condition=Ready server/mainsail-serving --timeout=600s
echo "Mainsail is up: inference at http://localhost:9080, Grafana at http://localhost:3000"

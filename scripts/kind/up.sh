#!/usr/bin/env bash
# Create the kind cluster, install the operators, build and load the images, install Mainsail.
# Untested on the machines this project is developed on (no container engine there); each step
# is a plain command you can also run by hand.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need kind kubectl helm docker

step "cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --config "$ROOT/kind-config.yaml" --name "$CLUSTER"
fi
kubectl config use-context "kind-$CLUSTER"

"$(dirname "$0")/operators.sh"
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

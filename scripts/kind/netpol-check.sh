#!/usr/bin/env bash
# Prove that the cluster's CNI (kube-router) enforces NetworkPolicy: a server on the CPU pool, a
# client on the GPU pool (another node) and a pod without the client label; open, then
# default-deny ingress, then ingress allowed from the client label only. Leaves nothing behind.
set -euo pipefail
source "$(dirname "$0")/env.sh"
local_tools
need kubectl
ns=mainsail-netpol-check
kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
trap 'kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT
kubectl create namespace "$ns" >/dev/null
kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeSelector: {mainsail.io/pool: cpu}
  containers:
    - name: server
      image: $PROMETHEUS_IMAGE
      args: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.path=/tmp]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  nodeSelector: {mainsail.io/pool: gpu}
  tolerations: [{key: mainsail.io/pool, operator: Exists}, {key: nvidia.com/gpu, operator: Exists}]
  containers: [{name: client, image: $KUBE_ROUTER_IMAGE, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: other}
spec:
  nodeSelector: {mainsail.io/pool: cpu}
  containers: [{name: other, image: $KUBE_ROUTER_IMAGE, command: [sleep, infinity]}]
YAML
wait_for "check pods Ready" 180 kubectl -n "$ns" wait --for=condition=Ready --timeout=10s pod --all || {
  # why: an untolerated taint, a missing image, no pod network, ...
  kubectl -n "$ns" get pods -o wide >&2 || true
  kubectl -n "$ns" get events --sort-by=.lastTimestamp >&2 || true
  exit 1
}
ip=$(kubectl -n "$ns" get pod server -o jsonpath='{.status.podIP}')

reaches() {  # reaches POD: the pod gets an answer from the server within 3 s
  kubectl -n "$ns" exec "$1" -- curl -fsS -m 3 -o /dev/null "http://$ip:9090/-/ready" 2>/dev/null
}
expect() {  # expect POD open|blocked WHEN (policies take a moment to be programmed)
  local i
  for i in $(seq 10); do
    if reaches "$1"; then [ "$2" = open ] && { echo "  ok: $1 -> server open ($3)"; return 0; }
    else [ "$2" = blocked ] && { echo "  ok: $1 -> server blocked ($3)"; return 0; }; fi
    sleep 2
  done
  echo "NetworkPolicy not enforced: $1 -> server should be $2 ($3)" >&2
  exit 1
}
expect client open "no policy"
expect other open "no policy"
kubectl apply -n "$ns" -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
expect client blocked "default deny"
expect other blocked "default deny"
kubectl apply -n "$ns" -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 9090}]}]
YAML
expect client open "allowed from role=client, across nodes"
expect other blocked "not role=client, same node"
echo "NetworkPolicy is enforced"

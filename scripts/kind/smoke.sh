#!/usr/bin/env bash
# Smoke test on the kind cluster: train two model versions on the RayCluster, serve them as a
# canary, send predictions through Seldon's mesh, and read the drift sidecar's metrics.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need kubectl curl
ns=(-n "$NAMESPACE")

step "train version 1 and version 2 (RayJob from manifests/examples/training)"
for run in 1 2; do
  kubectl "${ns[@]}" delete rayjob churn-train --ignore-not-found --wait
  kubectl apply -k "$ROOT/manifests/examples/training"
  kubectl "${ns[@]}" wait rayjob/churn-train --for=jsonpath='{.status.jobStatus}'=SUCCEEDED --timeout=1800s
  echo "training run $run succeeded"
done

step "deploy the canary (champion churn-v1 90%, challenger churn-v2 10%)"
kubectl apply -k "$ROOT/manifests/examples/canary"
kubectl "${ns[@]}" wait --for=condition=Ready model/churn-v1 model/churn-v2 --timeout=600s
kubectl "${ns[@]}" wait --for=condition=Ready experiment/churn-canary --timeout=300s

step "predict through the mesh (seldon-mesh, a ClusterIP Service, forwarded to localhost:9080)"
kubectl "${ns[@]}" port-forward service/seldon-mesh 9080:80 >/dev/null &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
wait_for "seldon-mesh forwarded to localhost:9080" 60 curl -s -o /dev/null http://localhost:9080/
"$ROOT/.venv/pipeline/bin/python" "$(dirname "$0")/make_request.py" --rows 200 --drift 0.8 > /tmp/mainsail-request.json
for i in $(seq 1 20); do
  curl -fsS -H 'Content-Type: application/json' -H 'Seldon-Model: churn-canary.experiment' \
    --data @/tmp/mainsail-request.json http://localhost:9080/v2/models/churn/infer >/dev/null
done
echo "20 requests answered"

step "predict through the Mainsail gateway (the split and per-variant metrics the alerts read)"
kubectl "${ns[@]}" port-forward service/mainsail-gateway 9081:8080 >/dev/null &
gateway=$!
trap 'kill "$forward" "$gateway" 2>/dev/null || true' EXIT
wait_for "mainsail-gateway forwarded to localhost:9081" 60 curl -fs -o /dev/null http://localhost:9081/v2/health/ready
for i in $(seq 1 50); do
  curl -fsS -H 'Content-Type: application/json' \
    --data @/tmp/mainsail-request.json http://localhost:9081/v2/models/churn/infer >/dev/null
done
curl -fsS http://localhost:9081/metrics | grep -E '^mainsail_router_requests_total\{.*variant="champion"'
echo "50 requests answered through the gateway"

step "drift metrics from the sidecar"
pod=$(kubectl "${ns[@]}" get pods -l seldon-server-name=mainsail-serving -o jsonpath='{.items[0].metadata.name}')
sleep 30  # the sidecar checks drift on its own schedule
kubectl "${ns[@]}" exec "$pod" -c drift -- python -c \
  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8010/metrics').read().decode())" \
  | grep -E '^mainsail_drift_(row_is_drift|window_rows)'
echo "smoke test passed"

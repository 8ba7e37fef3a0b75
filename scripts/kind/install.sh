#!/usr/bin/env bash
# Install Mainsail on the kind cluster made by scripts/kind/up.sh, the same way in both
# MAINSAIL_CLUSTER_SOURCE modes: the images built and loaded into the nodes that run them, the
# namespace under Pod Security "restricted" (enforced by the API server's admission), the S3
# keys of the cluster's store copied into the Secrets the chart names, and `helm upgrade
# --install` of helm/mainsail with scripts/kind/values.yaml; then a wait until each component is
# Ready. Upstream mode also installs Seldon's runtime for the namespace (helm/mainsail/README.md);
# local mode has no Seldon Core 2 (issue 17): its CRDs are applied so that the deployer's Models
# and Experiments are accepted (nothing reconciles them), and the chart serves with
# serving.backend mlserver (scripts/kind/values-mlserver.yaml: MLServer Deployments behind the
# gateway).
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
  source "$ROOT/scripts/cluster/lib.sh"
  cluster_docker_env
  export PATH="$CLUSTER_TOOLS:$PATH"
fi
need kubectl helm docker python3
DOCKER_HOST=$("$ROOT/scripts/docker.sh" host)
export DOCKER_HOST
kubectl config use-context "kind-$CLUSTER" >/dev/null
SHARED_DIR=${MAINSAIL_SHARED_DIR:-$ROOT/../shared}
S3_SOURCE_NAMESPACE=mainsail-s3
SIGNING_SECRET=mainsail-registry-signing
POSTGRES_SECRET=mainsail-postgres

"$(dirname "$0")/images.sh"

step "namespace $NAMESPACE: Pod Security \"restricted\" enforced"
# Every pod the chart makes meets "restricted" (tests/k8s checks the render; tests/cluster checks
# that the API server refuses a pod that does not). Seldon's Server pod adds upstream containers
# (rclone, agent) without a restricted security context: the chart must give them one (issue 17).
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NAMESPACE" --overwrite >/dev/null \
  app.kubernetes.io/part-of=mainsail \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest \
  pod-security.kubernetes.io/audit=restricted pod-security.kubernetes.io/warn=restricted

step "S3 keys of the cluster's store in Secrets mainsail-s3 and mainsail-s3-rclone"
# read from the store's Secret and written through pipes: the keys never touch a file
kubectl -n "$S3_SOURCE_NAMESPACE" get secret s3-credentials -o json |
  python3 -c '
import base64, json, sys
namespace, endpoint = sys.argv[1:3]
data = {k: base64.b64decode(v).decode() for k, v in json.load(sys.stdin)["data"].items()}
keys = {k: data[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
labels = {"app.kubernetes.io/part-of": "mainsail", "app.kubernetes.io/managed-by": "kind-install"}
remote = {"type": "s3", "name": "s3", "parameters": {
    "provider": "SeaweedFS", "env_auth": "false", "endpoint": endpoint,
    "access_key_id": keys["AWS_ACCESS_KEY_ID"], "secret_access_key": keys["AWS_SECRET_ACCESS_KEY"]}}
def secret(name, string_data):
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "stringData": string_data}
items = [secret("mainsail-s3", keys), secret("mainsail-s3-rclone", {"s3": json.dumps(remote)})]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
' "$NAMESPACE" "http://seaweedfs-s3.$S3_SOURCE_NAMESPACE.svc.cluster.local:8333" |
  kubectl apply -f - >/dev/null
echo "  ok: Secrets $NAMESPACE/mainsail-s3, $NAMESPACE/mainsail-s3-rclone"

step "registry signing key pair in Secret $SIGNING_SECRET (made once, then kept)"
# `mainsail models keygen`'s pair, made in memory and written through a pipe: the Ray pods sign
# what they publish with it (registrySigning.existingSecret in scripts/kind/values.yaml), and
# every loader checks the public key (serving.registryPublicKeys, set below).
if ! kubectl -n "$NAMESPACE" get secret "$SIGNING_SECRET" >/dev/null 2>&1; then
  [ -x "$ROOT/.venv/pipeline/bin/python" ] ||
    { echo "the pipeline venv makes the signing keys: run make envs first" >&2; exit 2; }
  "$ROOT/.venv/pipeline/bin/python" -c '
import json, sys
from mainsail.registry.signing import generate_keypair
private, public = generate_keypair()
meta = {"name": sys.argv[1], "namespace": sys.argv[2],
        "labels": {"app.kubernetes.io/part-of": "mainsail", "app.kubernetes.io/managed-by": "kind-install"}}
json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
           "stringData": {"signing-key": private, "public-key": public}}, sys.stdout)
' "$SIGNING_SECRET" "$NAMESPACE" | kubectl create -f - >/dev/null  # create: apply would copy the key into an annotation
fi
public_key=$(kubectl -n "$NAMESPACE" get secret "$SIGNING_SECRET" -o jsonpath='{.data.public-key}' | base64 -d)
[ -n "$public_key" ] || { echo "Secret $SIGNING_SECRET has no public-key" >&2; exit 1; }
echo "  ok: Secret $NAMESPACE/$SIGNING_SECRET (public key $public_key)"

step "Postgres password in Secret $POSTGRES_SECRET (made once, then kept)"
# random, made in memory and written through a pipe, never to a file; the chart mounts it into
# Postgres readable by its group only and gives the gateway PGPASSWORD from it
if ! kubectl -n "$NAMESPACE" get secret "$POSTGRES_SECRET" >/dev/null 2>&1; then
  python3 -c '
import json, secrets, sys
meta = {"name": sys.argv[1], "namespace": sys.argv[2],
        "labels": {"app.kubernetes.io/part-of": "mainsail", "app.kubernetes.io/managed-by": "kind-install"}}
json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
           "stringData": {"password": secrets.token_urlsafe(24)}}, sys.stdout)
' "$POSTGRES_SECRET" "$NAMESPACE" | kubectl create -f - >/dev/null  # create: apply would copy it into an annotation
fi
echo "  ok: Secret $NAMESPACE/$POSTGRES_SECRET"

if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
  step "Seldon Core 2 CRDs $SELDON_VERSION (no operator in local mode yet: issue 17)"
  [ -d "$SHARED_DIR/crds/seldon-core-v2" ] ||
    { echo "the Seldon Core 2 CRDs are missing: $SHARED_DIR/crds/seldon-core-v2 (MAINSAIL_SHARED_DIR)" >&2; exit 2; }
  kubectl apply --server-side --force-conflicts -f "$SHARED_DIR/crds/seldon-core-v2" >/dev/null
  wait_crds models.mlops.seldon.io servers.mlops.seldon.io experiments.mlops.seldon.io
fi

step "Mainsail: helm upgrade --install mainsail helm/mainsail (scripts/kind/values.yaml, serving.backend $SERVING_BACKEND)"
backend_values=()
[ "$SERVING_BACKEND" = seldon ] || backend_values=(--values "$ROOT/scripts/kind/values-mlserver.yaml")
helm upgrade --install mainsail "$ROOT/helm/mainsail" --namespace "$NAMESPACE" \
  --values "$ROOT/scripts/kind/values.yaml" "${backend_values[@]}" --set "global.imageTag=$TAG" \
  --set "serving.registryPublicKeys=$public_key"
# The images keep their tags from build to build: pods still running an older build of an
# image loaded above are replaced (their Deployment or KubeRay makes new ones).
stale=$(kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/instance=mainsail -o json | python3 -c '
import json, subprocess, sys
ids = {}
for pod in json.load(sys.stdin)["items"]:
    for status in pod["status"].get("containerStatuses", []):
        image = status["image"]
        if image not in ids:
            ids[image] = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image],
                                        capture_output=True, text=True).stdout.strip()
        if ids[image] and status.get("imageID", "").rsplit("@", 1)[-1] not in ("", ids[image]):
            print(pod["metadata"]["name"])
            break
')
if [ -n "$stale" ]; then
  echo "  replacing pods that run an older build: $(echo $stale)"
  ray_selector=ray.io/cluster=mainsail-ray
  if grep -q '^mainsail-ray-' <<< "$stale"; then
    # the head first: workers joined to the old head's GCS would fail and restart anyway
    kubectl -n "$NAMESPACE" delete pod -l "$ray_selector,ray.io/node-type=head" --wait=true >/dev/null
    wait_for "new Ray head Ready" 300 \
      kubectl -n "$NAMESPACE" wait --for=condition=Ready --timeout=10s pod -l "$ray_selector,ray.io/node-type=head"
    kubectl -n "$NAMESPACE" delete pod -l "$ray_selector,ray.io/node-type=worker" --ignore-not-found --wait=true >/dev/null
  fi
  others=$(grep -v '^mainsail-ray-' <<< "$stale" || true)
  # shellcheck disable=SC2086
  [ -z "$others" ] || kubectl -n "$NAMESPACE" delete pod $others --ignore-not-found --wait=true >/dev/null
fi
for deployment in $(kubectl -n "$NAMESPACE" get deployment -l app.kubernetes.io/instance=mainsail -o name); do
  wait_deployment "$NAMESPACE" "${deployment#deployment.apps/}" 300
done
wait_for "RayCluster $NAMESPACE/mainsail-ray provisioned (every Ray pod Ready once)" 600 \
  kubectl -n "$NAMESPACE" wait --for=condition=RayClusterProvisioned --timeout=10s raycluster/mainsail-ray
wait_for "Ray pods of mainsail-ray Ready" 300 \
  kubectl -n "$NAMESPACE" wait --for=condition=Ready --timeout=10s pod -l ray.io/cluster=mainsail-ray
kubectl -n "$NAMESPACE" get pods -o wide

if [ "$MAINSAIL_CLUSTER_SOURCE" = upstream ]; then
  # No Kafka: dataflow and the model/pipeline gateways off; the mesh's type comes from the
  # runtime's envoy.serviceType (the operator owns seldon-mesh and undoes hand patches).
  step "Seldon runtime $SELDON_VERSION for namespace $NAMESPACE (no Kafka components)"
  helm upgrade --install seldon-runtime seldon/seldon-core-v2-runtime --version "$SELDON_VERSION" \
    --namespace "$NAMESPACE" -f "$ROOT/scripts/kind/seldon/runtime-values.yaml" --wait
  kubectl -n "$NAMESPACE" rollout status deployment --timeout=600s
  kubectl -n "$NAMESPACE" wait --for=condition=Ready server/mainsail-serving --timeout=600s
  echo "Mainsail is up: kubectl -n $NAMESPACE port-forward service/seldon-mesh 9080:80 for inference, Grafana at http://localhost:3000"
else
  echo "Mainsail is up (local mode, serving.backend $SERVING_BACKEND: no Seldon Core 2; mainsail deploy serves the variants)"
fi

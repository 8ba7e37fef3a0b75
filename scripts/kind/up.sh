#!/usr/bin/env bash
# Create the kind cluster of kind-config.yaml (control plane, CPU pool, GPU pool with its taint),
# install the CNI (kube-router: pod network and NetworkPolicy), advertise nvidia.com/gpu on the GPU
# pool, install the operators, and wait until all of it is Ready. Idempotent: an existing cluster
# is kept and brought up to date.
#
# MAINSAIL_CLUSTER_SOURCE (scripts/kind/env.sh) says where images and operators come from:
# `upstream` (default: kindest/node, registries, upstream charts) or `local` (built here by
# scripts/cluster/build.sh from the upstream Go modules, for machines without a registry).
# Mainsail itself is installed by scripts/kind/install.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
  step "build kind, kubectl, helm, the node image and the images (scripts/cluster/build.sh)"
  "$ROOT/scripts/cluster/build.sh" all
  source "$ROOT/scripts/cluster/lib.sh"
  cluster_docker_env
  cluster_engine_check "$KIND_NODE_IMAGE"
  export PATH="$CLUSTER_TOOLS:$PATH"
fi
need kind kubectl docker

step "cluster $CLUSTER ($KIND_NODE_IMAGE)"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --config "$ROOT/kind-config.yaml" --name "$CLUSTER" --image "$KIND_NODE_IMAGE"
else
  echo "  kept: the cluster exists ('make kind-down' deletes it)"
  kind export kubeconfig --name "$CLUSTER" >/dev/null
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

if [ "$MAINSAIL_CLUSTER_SOURCE" = local ]; then
  step "load the CNI and operator images into the nodes that run them"
  # the CNI on every node; the operators, Prometheus, Alertmanager and the S3 store run on the CPU pool (the
  # control plane keeps its NoSchedule taint, the GPU pool its taints)
  load_images all "$KUBE_ROUTER_IMAGE"
  load_images cpu "$KUBERAY_IMAGE" "$PROMETHEUS_OPERATOR_IMAGE" "$PROMETHEUS_CONFIG_RELOADER_IMAGE" \
    "$PROMETHEUS_IMAGE" "$ALERTMANAGER_IMAGE" "$SEAWEEDFS_IMAGE"
fi

step "CNI: kube-router $KUBE_ROUTER_VERSION"
sed "s|KUBE_ROUTER_IMAGE|$KUBE_ROUTER_IMAGE|g" "$ROOT/scripts/kind/manifests/kube-router.yaml" |
  kubectl apply -f - >/dev/null
wait_daemonset kube-system kube-router
wait_for "every node Ready" 300 kubectl wait --for=condition=Ready --timeout=10s node --all
wait_deployment kube-system coredns
wait_deployment local-path-storage local-path-provisioner

step "GPU pool: nvidia.com/gpu advertised on the nodes labelled mainsail.io/pool=gpu"
# No GPU here: the node status carries the extended resource (as a device plugin would report
# it), so that the GPU worker group's requests, nodeSelector and toleration place it for real.
for node in $(kubectl get nodes -l mainsail.io/pool=gpu -o name); do
  kubectl patch "$node" --subresource=status --type=json \
    -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"'"$GPU_NODE_GPUS"'"}]' >/dev/null
  wait_for "$node allocatable nvidia.com/gpu=$GPU_NODE_GPUS" 60 \
    kubectl wait --for=jsonpath='{.status.allocatable.nvidia\.com/gpu}'="$GPU_NODE_GPUS" --timeout=5s "$node"
done

"$ROOT/scripts/kind/operators.sh"

step "S3 store: SeaweedFS $SEAWEEDFS_VERSION in namespace mainsail-s3 (http://seaweedfs-s3.mainsail-s3:8333)"
# in both modes: the chart's MinIO release cannot be built here, and the kind path is the same
# code in both (scripts/kind/values.yaml points the chart at this store)
sed "s|SEAWEEDFS_IMAGE|$SEAWEEDFS_IMAGE|g" "$ROOT/scripts/kind/manifests/s3.yaml" | kubectl apply -f - >/dev/null
wait_deployment mainsail-s3 seaweedfs
# a signed S3 round trip from inside the cluster: create a bucket, put and read back an object
kubectl -n mainsail-s3 delete pod s3-check --ignore-not-found --wait=true >/dev/null
kubectl -n mainsail-s3 apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: s3-check}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: check
      image: $KUBE_ROUTER_IMAGE
      envFrom: [{secretRef: {name: s3-credentials}}]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      command:
        - bash
        - -ec
        - |
          u=http://seaweedfs-s3:8333/kind-up-check
          s=(-sS --retry 5 --retry-all-errors --aws-sigv4 aws:amz:us-east-1:s3
             --user "\$AWS_ACCESS_KEY_ID:\$AWS_SECRET_ACCESS_KEY")
          code=\$(curl "\${s[@]}" -o /dev/null -w '%{http_code}' -X PUT "\$u")
          [ "\$code" = 200 ] || [ "\$code" = 409 ]  # 409: the bucket exists (a second kind-up)
          echo ok > /tmp/object
          curl -f "\${s[@]}" -T /tmp/object "\$u/object" >/dev/null
          test "\$(curl -f "\${s[@]}" "\$u/object")" = ok
YAML
wait_for "S3 round trip (bucket, put, get) from a pod" 120 \
  kubectl -n mainsail-s3 wait --for=jsonpath='{.status.phase}'=Succeeded --timeout=10s pod/s3-check ||
  { kubectl -n mainsail-s3 logs s3-check >&2 || true; exit 1; }
kubectl -n mainsail-s3 delete pod s3-check --wait=false >/dev/null

step "checks"
# Pod Security admission (built into the API server): a namespace enforcing "restricted"
# rejects a privileged pod (server-side dry run: nothing is created).
kubectl create namespace mainsail-psa-check --dry-run=client -o yaml |
  kubectl label --local -f - pod-security.kubernetes.io/enforce=restricted -o yaml | kubectl apply -f - >/dev/null
if kubectl -n mainsail-psa-check run psa-check --image="$KUBE_ROUTER_IMAGE" --restart=Never \
  --privileged --dry-run=server >/dev/null 2>&1; then
  echo "Pod Security admission did not reject a privileged pod in a 'restricted' namespace" >&2
  exit 1
fi
kubectl delete namespace mainsail-psa-check --wait=false >/dev/null
echo "  ok: Pod Security admission enforces 'restricted'"
kubectl get nodes -L mainsail.io/pool -o wide
echo "cluster $CLUSTER is up (kubectl context kind-$CLUSTER); install Mainsail with scripts/kind/install.sh"

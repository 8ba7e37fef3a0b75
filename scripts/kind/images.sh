#!/usr/bin/env bash
# Build the three runtime images (images/<env>/Dockerfile) and load them into the kind nodes.
# The chart uses imagePullPolicy IfNotPresent, so the loaded images are used as they are.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need docker

for env in pipeline serving drift; do
  image="$REGISTRY/mainsail-$env:$TAG"
  step "build $image"
  docker build -f "$ROOT/images/$env/Dockerfile" -t "$image" "$ROOT"
  if [ "${LOAD:-1}" = 1 ] && command -v kind >/dev/null && kind get clusters | grep -qx "$CLUSTER"; then
    kind load docker-image "$image" --name "$CLUSTER"
  fi
done

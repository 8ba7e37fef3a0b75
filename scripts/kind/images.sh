#!/usr/bin/env bash
# Build the three runtime images (scripts/images.sh: BuildKit, the local base where no registry
# answers) and load them into the kind nodes. The chart uses imagePullPolicy IfNotPresent, so
# the loaded images are used as they are.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need docker

step "build the images"
"$ROOT/scripts/images.sh"
DOCKER_HOST=$("$ROOT/scripts/docker.sh" host)
export DOCKER_HOST
if [ "${LOAD:-1}" = 1 ] && command -v kind >/dev/null && kind get clusters | grep -qx "$CLUSTER"; then
  for env in pipeline serving drift; do
    kind load docker-image "$REGISTRY/mainsail-$env:$TAG" --name "$CLUSTER"
  done
fi

#!/usr/bin/env bash
# Build the three Mainsail images (scripts/images.sh: BuildKit, the local base where no registry
# answers) and load each into the kind nodes whose pods run it, no further: the chart uses
# imagePullPolicy IfNotPresent, so the loaded images are used as they are.
#
#   pipeline (7 GB: PyPI's CUDA torch)  the CPU pool: Ray head and CPU workers, the trigger, the
#                                        e2e's pods
#   ray-node (0.5 GB, made here from     the GPU pool: the kind values' GPU Ray workers. The GPU
#     the pipeline image: Ray only)      node has no GPU, and the pipeline image a second time
#                                        does not fit the CI machine's disk (scripts/kind/ray-node)
#   serving, drift                       the CPU pool: Seldon's Server pod, or (serving.backend
#                                        mlserver, local mode) the variants' MLServer Deployments
#   Redis, Postgres (local mode: built   the CPU pool; upstream mode pulls them
#     here)
# The control plane runs none of them (it keeps its NoSchedule taint).
set -euo pipefail
source "$(dirname "$0")/env.sh"
local_tools
need docker kubectl

step "build the Mainsail images"
# shown after the build (not through `tee /dev/stderr`: that reopens a log file given as stderr
# and truncates it)
built=$("$ROOT/scripts/images.sh")
echo "$built" >&2
DOCKER_HOST=$("$ROOT/scripts/docker.sh" host)
export DOCKER_HOST
pipeline=$REGISTRY/mainsail-pipeline:$TAG
pipeline_id=$(docker image inspect -f '{{.Id}}' "$pipeline")
if [ "$(docker image inspect -f '{{index .Config.Labels "io.mainsail.pipeline"}}' "$RAY_NODE_IMAGE" 2>/dev/null)" != "$pipeline_id" ]; then
  base=$(sed -n 's/^image .*mainsail-pipeline.*(base \(.*\))$/\1/p' <<< "$built")
  [ -n "$base" ] || { echo "images.sh named no base image for the pipeline image" >&2; exit 1; }
  start=$(date +%s)
  # BuildKit's client: one with buildx, else Debian's docker.io client (as scripts/images.sh)
  buildkit=docker
  docker buildx version >/dev/null 2>&1 || buildkit=/usr/bin/docker
  DOCKER_BUILDKIT=1 "$buildkit" build -q --build-arg "PIPELINE_IMAGE=$pipeline" \
    --build-arg "PYTHON_IMAGE=$base" --label "io.mainsail.pipeline=$pipeline_id" \
    -t "$RAY_NODE_IMAGE" "$ROOT/scripts/kind/ray-node" >/dev/null
  echo "image $RAY_NODE_IMAGE: $(($(date +%s) - start)) s, $(($(docker image inspect -f '{{.Size}}' "$RAY_NODE_IMAGE") / 1000000)) MB"
fi
[ "${LOAD:-1}" = 1 ] || exit 0

step "load them into the nodes that run them"
load_images cpu "$pipeline"
load_images gpu "$RAY_NODE_IMAGE"
load_images cpu "$REGISTRY/mainsail-serving:$TAG" "$REGISTRY/mainsail-drift:$TAG"
[ "$MAINSAIL_CLUSTER_SOURCE" = upstream ] || load_images cpu "$REDIS_IMAGE" "$POSTGRES_IMAGE"

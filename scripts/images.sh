#!/usr/bin/env bash
# Build the runtime images (images/<env>/Dockerfile) with BuildKit on the project's engine.
#
#   scripts/images.sh [pipeline|serving|drift ...]     (default: all three)
#   scripts/images.sh --if-engine [...]   the same where a container engine can run; where none
#       can (no root to start dockerd, a machine without cgroups), say why and exit 0 so that
#       `make test` goes on and the container tests skip naming that reason. CI sets
#       MAINSAIL_REQUIRE_CONTAINERS=1, which makes a missing engine an error here too.
#
# Base image (the Dockerfiles' PYTHON_IMAGE build arg):
#   MAINSAIL_BASE=auto (default)  python:3.11 slim when present or pullable, else the local
#                                 Debian base made by `scripts/docker.sh base` (debootstrap)
#   MAINSAIL_BASE=local           always the local base;  MAINSAIL_BASE=registry  always slim
#   PYTHON_IMAGE=...              any base of your own (wins over MAINSAIL_BASE)
# Layer caching and uv's download cache (a BuildKit cache mount) live in the engine's data root
# (~/.cache/mainsail/docker), outside the clone: a rebuild after a source-only change redoes only
# the small mainsail wheel layer. Prints one line per image: seconds and size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/kind/env.sh"  # REGISTRY, TAG
cd "$root"

# The digest of what an image is built from (its Dockerfile, lock, the library and, for the
# pipeline image, the folders it copies): the label io.mainsail.source, which the container
# tests compare with the checkout's (`scripts/images.sh --digest ENV`) to refuse stale images.
source_digest() {
  local env=$1
  local paths=(pyproject.toml README.md src "requirements/$env.lock" "images/$env")
  [ "$env" = pipeline ] && paths+=(configs feature_repo pipelines components)
  find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
    ! -path 'feature_repo/data/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum \
    | sha256sum | cut -c1-16
}
if [ "${1:-}" = "--digest" ]; then source_digest "${2:?usage: scripts/images.sh --digest ENV}"; exit 0; fi

if_engine=0
if [ "${1:-}" = "--if-engine" ]; then if_engine=1; shift; fi
if ! DOCKER_HOST=$(scripts/docker.sh host 2>"${TMPDIR:-/tmp}/mainsail-engine.err"); then
  cat "${TMPDIR:-/tmp}/mainsail-engine.err" >&2
  if [ "$if_engine" = 1 ] && [ "${MAINSAIL_REQUIRE_CONTAINERS:-0}" != 1 ]; then
    echo "images: no container engine can run here; images not built, the container tests will skip" >&2
    exit 0
  fi
  exit 1
fi
export DOCKER_HOST

# BuildKit needs a client that drives it: one with the buildx plugin, or Debian's docker.io
# client (20.10, BuildKit built in). A newer client without buildx cannot.
buildkit_client() {
  local cand
  for cand in "$(command -v docker || true)" /usr/bin/docker; do
    [ -x "$cand" ] || continue
    if "$cand" buildx version >/dev/null 2>&1; then echo "$cand"; return 0; fi
    case "$("$cand" version --format '{{.Client.Version}}' 2>/dev/null)" in
      19.*|20.*|21.*|22.*) echo "$cand"; return 0 ;;
    esac
  done
  echo "images: no docker client that drives BuildKit (install docker-buildx, or Debian's docker.io client)" >&2
  return 1
}
DOCKER=$(buildkit_client)

SLIM=python:3.11.14-slim-bookworm
base_image() {
  if [ -n "${PYTHON_IMAGE:-}" ]; then echo "$PYTHON_IMAGE"; return 0; fi
  case "${MAINSAIL_BASE:-auto}" in
    local) scripts/docker.sh base ;;
    registry)
      docker image inspect "$SLIM" >/dev/null 2>&1 || docker pull -q "$SLIM" >&2
      echo "$SLIM" ;;
    auto)
      if docker image inspect "$SLIM" >/dev/null 2>&1 \
        || timeout 60 docker pull -q "$SLIM" >/dev/null 2>&1; then
        echo "$SLIM"
      else
        scripts/docker.sh base
      fi ;;
    *) echo "images: MAINSAIL_BASE must be auto, local or registry" >&2; return 2 ;;
  esac
}
BASE=$(base_image)

# A CA bundle for the package index inside the build (e.g. behind a TLS-inspecting proxy), as a
# build secret: it reaches the RUN steps that download and never a layer.
secret=()
for ca in "${MAINSAIL_BUILD_CA:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$ca" ] && [ -s "$ca" ]; then secret=(--secret "id=ca,src=$ca"); break; fi
done

envs=("$@")
[ ${#envs[@]} -gt 0 ] || envs=(pipeline serving drift)
for env in "${envs[@]}"; do
  [ -f "images/$env/Dockerfile" ] || { echo "images: no images/$env/Dockerfile" >&2; exit 2; }
  image="$REGISTRY/mainsail-$env:$TAG"
  previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  started=$SECONDS
  log="${TMPDIR:-/tmp}/mainsail-image-$env.log"
  # --network host: the package index is reached the way the host reaches it.
  if ! DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network host "${secret[@]}" \
      --build-arg "PYTHON_IMAGE=$BASE" --label "io.mainsail.source=$(source_digest "$env")" \
      -f "images/$env/Dockerfile" -t "$image" . >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "images: building $image failed (whole log: $log)" >&2
    exit 1
  fi
  size=$(docker image inspect "$image" --format '{{.Size}}')
  printf 'image %s: %d s, %d MB (base %s)\n' "$image" $((SECONDS - started)) $((size / 1000000)) "$BASE"
  # The image this build replaced, now untagged: remove it (unless a container still uses it).
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
done

# On the project's own engine, drop build cache unused for a day (e.g. the layers of an older
# lock) and keep the rest under MAINSAIL_BUILD_CACHE_GB (least recently used first; uv's
# downloads and the three dependency layers take ~16 GB). An engine of the user's own is left
# as it is.
if [ "$DOCKER_HOST" = "unix://${MAINSAIL_DOCKER_DIR:-$HOME/.cache/mainsail/docker}/docker.sock" ]; then
  "$DOCKER" builder prune -f --filter unused-for=24h >/dev/null
  "$DOCKER" builder prune -f --keep-storage "${MAINSAIL_BUILD_CACHE_GB:-16}gb" >/dev/null
fi

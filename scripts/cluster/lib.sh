# Shared helpers of scripts/cluster/*.sh (sourced, not run). Everything built lives outside the
# clone, under $CLUSTER_CACHE, so that a fresh clone (CI) reuses it; nothing here is committed.
#
# Settings (environment):
#   MAINSAIL_CLUSTER_CACHE   binaries, rootfs tarballs, logs   (default ~/.cache/mainsail/cluster)
#   GOCACHE, GOMODCACHE      go's own caches                   (go's defaults)
#   MAINSAIL_CLUSTER_REBUILD=1  rebuild every image even when its inputs did not change
#   MAINSAIL_DEBIAN_MIRROR   Debian mirror for debootstrap     (http://deb.debian.org/debian)

CLUSTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER_CACHE=${MAINSAIL_CLUSTER_CACHE:-$HOME/.cache/mainsail/cluster}
CLUSTER_BIN=$CLUSTER_CACHE/bin
CLUSTER_TOOLS=$CLUSTER_BIN/tools          # kind, kubectl, helm: put first on PATH in local mode
CLUSTER_LOGS=$CLUSTER_CACHE/logs
CLUSTER_WRAPPERS=$CLUSTER_ROOT/tools/cluster
CLUSTER_IMAGES=$CLUSTER_ROOT/scripts/cluster/images
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${MAINSAIL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The local bases, named apart from upstream images and from the project's own images.
MINBASE_IMAGE=mainsail-build/debian:$DEBIAN_SUITE
KIND_BASE_IMAGE=mainsail-build/kind-base:$DEBIAN_SUITE

clog() { printf '%s cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cdie() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

# go: the toolchain on PATH (or Debian/CI's /usr/local/go), never a downloaded one; module mode
# read-only, so a build never edits the committed wrappers.
cluster_go_env() {
  command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || cdie "go is not installed (the pinned modules need go >= 1.26)"
  export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
}

# docker: the project's engine. scripts/docker.sh (the containers work) starts it and prints its
# DOCKER_HOST; until that script exists, the engine on its socket is used as it is.
cluster_docker_env() {
  if [ -x "$CLUSTER_ROOT/scripts/docker.sh" ]; then
    DOCKER_HOST=$("$CLUSTER_ROOT/scripts/docker.sh" host) || cdie "scripts/docker.sh host failed"
  else
    DOCKER_HOST=${DOCKER_HOST:-unix://$HOME/.cache/mainsail/docker/docker.sock}
  fi
  export DOCKER_HOST
  docker version >/dev/null 2>&1 || cdie "no container engine answers on $DOCKER_HOST"
}

# kind's nodes are privileged containers. Docker 20.10 grants them every capability the kernel
# knows, and where the engine's own bounding set is smaller (these VMs lack CAP_SYS_RESOURCE)
# runc refuses to start them. The engine must run them through scripts/cluster/runc-bounded.
cluster_engine_check() {  # cluster_engine_check IMAGE
  local out
  out=$(docker run --rm --privileged --entrypoint /bin/true "$1" 2>&1) && return 0
  case $out in
    *"apply caps"*)
      cdie "the engine on $DOCKER_HOST cannot start privileged containers (kind nodes): its bounding
set lacks capabilities that Docker 20.10 still grants (moby/moby#42933, fixed in Docker 23).
Start dockerd with
  --add-runtime mainsail-runc=<a copy of scripts/cluster/runc-bounded> --default-runtime mainsail-runc
(runc minus the capabilities the engine cannot grant), or point DOCKER_HOST at an engine that can." ;;
    *) cdie "the engine on $DOCKER_HOST cannot start a privileged container: $out" ;;
  esac
}

# Seconds spent in each step, appended to $CLUSTER_LOGS/timings.tsv (step, seconds, date).
timed() {  # timed NAME COMMAND...
  local name=$1 start rc=0
  shift
  start=$(date +%s)
  "$@" || rc=$?
  mkdir -p "$CLUSTER_LOGS"
  printf '%s\t%s\t%s\n' "$name" "$(($(date +%s) - start))" "$(date -u +%FT%TZ)" >> "$CLUSTER_LOGS/timings.tsv"
  return $rc
}

# The version a wrapper module pins for MODULE, and the module's source directory.
modver() { (cd "$CLUSTER_WRAPPERS/$1" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$2"); }
moddir() {
  (cd "$CLUSTER_WRAPPERS/$1" && go mod download "$2" && go list -m -f '{{if .Replace}}{{.Replace.Dir}}{{else}}{{.Dir}}{{end}}' "$2")
}

# A short digest of files and strings: the key of a build output or an image.
digest() {  # digest [FILE|-s STRING]...
  {
    while [ $# -gt 0 ]; do
      if [ "$1" = -s ]; then printf '%s\n' "$2"; shift 2; else sha256sum < "$1"; shift; fi
    done
  } | sha256sum | cut -c1-12
}

image_key() { docker image inspect -f '{{ index .Config.Labels "io.mainsail.build-key" }}' "$1" 2>/dev/null || true; }

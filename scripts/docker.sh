#!/usr/bin/env bash
# The container engine and the locally made base image. Idempotent, quick when already done.
#
#   scripts/docker.sh up     an engine answers (started here if needed); prints `export DOCKER_HOST=...`
#   scripts/docker.sh host   prints only the DOCKER_HOST value (starts the engine like `up`)
#   scripts/docker.sh base   the local base image (debootstrap + docker import), rebuilt only when
#                            its recipe changes; prints its name
#   scripts/docker.sh status says which engine answers and what it holds; starts nothing
#
# Which engine (everything in the project talks to it through DOCKER_HOST):
#   1. DOCKER_HOST, when the caller set it and it answers (an engine of the user's choice);
#   2. the project's own dockerd on $MAINSAIL_DOCKER_DIR/docker.sock (~/.cache/mainsail/docker);
#   3. otherwise docker.io is installed from Debian if missing and dockerd is started with that
#      socket and its own data root, exec root and pid file under $MAINSAIL_DOCKER_DIR.
# An engine already running elsewhere (e.g. /var/run/docker.sock) is never stopped, restarted or
# reconfigured. The data root lives outside the clone so a fresh clone (CI) reuses images and
# build cache. Other scripts (cluster images) use the same socket: never stop it from here.
set -euo pipefail

DOCKER_DIR=${MAINSAIL_DOCKER_DIR:-$HOME/.cache/mainsail/docker}
SOCKET="$DOCKER_DIR/docker.sock"
OWN_HOST="unix://$SOCKET"
# The base image: Debian bookworm's Python 3.11 made with debootstrap, for machines that cannot
# pull python:3.11-slim. Its recipe digest is a label; a changed recipe makes a new image.
BASE_IMAGE=${MAINSAIL_BASE_IMAGE:-mainsail/python:3.11-bookworm}
BASE_SUITE=bookworm
BASE_MIRROR=${MAINSAIL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,ca-certificates
BASE_CACHE=${MAINSAIL_BASE_CACHE:-$HOME/.cache/mainsail/base}

log() { echo "docker: $*" >&2; }
die() { echo "docker: error: $*" >&2; exit 1; }

answers() {  # answers HOST: the engine on HOST replies to `docker version`
  DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_engine() {
  command -v dockerd >/dev/null && command -v docker >/dev/null && return 0
  log "installing Debian's docker.io (dockerd, containerd, runc)"
  [ "$(id -u)" = 0 ] || die "docker.io is not installed and this is not root: install it (apt-get install docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian from starting the system-wide docker service it installs.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# kind's nodes are privileged containers. Docker 20.10 grants them every capability the kernel
# knows; where the engine's own bounding set is smaller (these VMs lack CAP_SYS_RESOURCE) runc
# refuses to start them. The project's engine therefore runs containers through runc-bounded
# (scripts/cluster/runc-bounded: runc minus the capabilities the engine cannot grant; it changes
# nothing for a container that asks for none of them). A copy outside the clone is registered, so
# the engine does not depend on a checkout that may be deleted (CI's clone is).
RUNTIME=mainsail-runc
runtime_config() {
  local here
  here=$(cd "$(dirname "$0")" && pwd)
  mkdir -p "$DOCKER_DIR"
  if ! cmp -s "$here/cluster/runc-bounded" "$DOCKER_DIR/runc-bounded"; then
    install -m 0755 "$here/cluster/runc-bounded" "$DOCKER_DIR/runc-bounded.new"
    mv "$DOCKER_DIR/runc-bounded.new" "$DOCKER_DIR/runc-bounded"
  fi
  # runtimes and default-runtime are reloaded on SIGHUP, so a running engine picks them up.
  printf '{"runtimes": {"%s": {"path": "%s"}}, "default-runtime": "%s"}\n' \
    "$RUNTIME" "$DOCKER_DIR/runc-bounded" "$RUNTIME" > "$DOCKER_DIR/daemon.json"
}

own_runtime_ok() {
  [ "$(DOCKER_HOST=$OWN_HOST docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$RUNTIME" ]
}

start_own() {
  install_engine
  [ "$(id -u)" = 0 ] || die "dockerd needs root; start it as root or set DOCKER_HOST to an engine you run"
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
  runtime_config
  local pidfile="$DOCKER_DIR/dockerd.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "dockerd (pid $(cat "$pidfile")) is starting; waiting for $SOCKET"
  else
    rm -f "$pidfile" "$SOCKET"
    log "starting dockerd (data root $DOCKER_DIR/data, log $DOCKER_DIR/dockerd.log)"
    # setsid: the daemon outlives this script and the make/pytest run that called it.
    setsid dockerd --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" \
      --host "$OWN_HOST" --pidfile "$pidfile" --storage-driver overlay2 \
      --config-file "$DOCKER_DIR/daemon.json" \
      >>"$DOCKER_DIR/dockerd.log" 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do
    answers "$OWN_HOST" && return 0
    sleep 1
  done
  tail -n 20 "$DOCKER_DIR/dockerd.log" >&2 || true
  die "dockerd did not answer on $SOCKET within 60 s (log: $DOCKER_DIR/dockerd.log)"
}

engine_host() {
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$OWN_HOST" ]; then
    answers "$DOCKER_HOST" || die "DOCKER_HOST=$DOCKER_HOST does not answer (unset it to use the project's own engine)"
    echo "$DOCKER_HOST"; return 0
  fi
  if answers "$OWN_HOST"; then
    runtime_config
    own_runtime_ok || reload_own
  else
    start_own
  fi
  echo "$OWN_HOST"
}

# The project's engine answers but runs without runc-bounded (started by an older version of this
# script): reload its configuration, or restart it when it was started without a config file.
reload_own() {
  local pidfile="$DOCKER_DIR/dockerd.pid" pid
  pid=$(cat "$pidfile" 2>/dev/null) || die "the engine on $SOCKET answers but $pidfile is missing"
  if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--config-file"; then
    log "reloading dockerd's runtimes (SIGHUP)"
    kill -HUP "$pid"
  else
    local running
    running=$(DOCKER_HOST=$OWN_HOST docker ps -q | wc -l)
    [ "$running" = 0 ] || die "the project's dockerd runs without the $RUNTIME runtime and $running containers are running; stop them, then run scripts/docker.sh up again"
    log "restarting dockerd with the $RUNTIME runtime"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    start_own
  fi
  for _ in $(seq 1 10); do own_runtime_ok && return 0; sleep 1; done
  die "dockerd on $SOCKET did not take the $RUNTIME runtime (log: $DOCKER_DIR/dockerd.log)"
}

base_recipe() {
  # Everything that decides the base image's content; its digest names the build.
  printf 'debootstrap --variant=minbase --include=%s %s %s\nclean: apt archives and lists\nuser: none\n' \
    "$BASE_PACKAGES" "$BASE_SUITE" "$BASE_MIRROR"
}

build_base() {
  command -v debootstrap >/dev/null || {
    [ "$(id -u)" = 0 ] || die "debootstrap is not installed (apt-get install debootstrap)"
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  local digest have tarball rootfs started
  digest=$(base_recipe | sha256sum | cut -c1-16)
  have=$(docker image inspect "$BASE_IMAGE" --format '{{index .Config.Labels "io.mainsail.recipe"}}' 2>/dev/null || true)
  if [ "$have" = "$digest" ]; then
    echo "$BASE_IMAGE"; return 0
  fi
  mkdir -p "$BASE_CACHE/debs"
  tarball="$BASE_CACHE/rootfs-$digest.tar"
  if [ ! -s "$tarball" ]; then
    started=$SECONDS
    rootfs=$(mktemp -d "$BASE_CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap $BASE_SUITE (minbase + $BASE_PACKAGES) into $rootfs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" --cache-dir="$BASE_CACHE/debs" \
      "$BASE_SUITE" "$rootfs" "$BASE_MIRROR" > "$BASE_CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$BASE_CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $BASE_CACHE/debootstrap.log)"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"; trap - EXIT
    log "rootfs made in $((SECONDS - started)) s: $tarball"
  fi
  docker import \
    --change "LABEL io.mainsail.recipe=$digest" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  # Older rootfs tarballs (other recipes) are not needed any more.
  find "$BASE_CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$digest.tar" -delete
  log "imported $BASE_IMAGE ($(docker image inspect "$BASE_IMAGE" --format '{{.Size}}' | awk '{printf "%d MB", $1/1e6}'))"
  echo "$BASE_IMAGE"
}

case "${1:-up}" in
  up)
    host=$(engine_host)
    log "engine $(DOCKER_HOST=$host docker version --format '{{.Server.Version}}') answers on $host"
    echo "export DOCKER_HOST=$host" ;;
  host) engine_host ;;
  base)
    DOCKER_HOST=$(engine_host); export DOCKER_HOST
    build_base ;;
  status)
    for host in ${DOCKER_HOST:+"$DOCKER_HOST"} "$OWN_HOST"; do
      if answers "$host"; then
        echo "engine: $host ($(DOCKER_HOST=$host docker version --format '{{.Server.Version}}'))"
        DOCKER_HOST=$host docker images --format '  {{.Repository}}:{{.Tag}} {{.Size}}' | grep mainsail || true
        exit 0
      fi
    done
    echo "engine: none answers (scripts/docker.sh up starts one)"; exit 1 ;;
  *) echo "usage: scripts/docker.sh up|host|base|status" >&2; exit 2 ;;
esac

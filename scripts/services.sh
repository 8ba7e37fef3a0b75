#!/usr/bin/env bash
# Install and start what the tests talk to; idempotent (a second run only checks).
#  - Debian packages: prometheus (prometheus + promtool), prometheus-alertmanager, wrk (load tool).
#    The tests start their own prometheus/alertmanager processes on free ports; the packages'
#    own services are not needed (and are not started on machines without systemd).
#  - Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) run on this kind of machine before
#    each session; we start them again if they are down.
set -euo pipefail

need=()
# promtool ships in the prometheus package: ask for it once.
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "services: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps out the packages' optional extras; policy-rc.d stops Debian
  # from starting the services it installs (the tests run their own instances).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 6379; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! port_open 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
for _ in $(seq 1 30); do port_open 6379 && port_open 5432 && break; sleep 1; done
port_open 6379 || { echo "services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
port_open 5432 || { echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
echo "services: prometheus $(prometheus --version 2>&1 | head -n1 | cut -d' ' -f3), alertmanager, wrk, redis and postgres ready"

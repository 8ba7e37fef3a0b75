#!/usr/bin/env bash
# Make sure the services the tests talk to are installed and running; idempotent.
#  - Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) run on this kind of machine
#    before each session; we start them again if they are down.
set -euo pipefail

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
echo "services: redis and postgres up"

#!/usr/bin/env bash
# Debian's PostgreSQL cluster on 127.0.0.1:5432 with role chatd/chatd and
# databases chatd and chatd_test.  usage: postgres.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PG_PORT=5432
PG_CLUSTER=main
# Prefer 15 (Debian 12); fall back to whatever single version is installed.
PG_VERSION="${PG_VERSION:-}"
if [ -z "$PG_VERSION" ]; then
  if [ -d /usr/lib/postgresql/15 ]; then PG_VERSION=15
  else PG_VERSION=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1); fi
fi
[ -n "$PG_VERSION" ] || die "PostgreSQL is not installed (run apt.sh)"
PG_LOG="/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"

as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
pg_ready() { PGPASSWORD=chatd psql "host=127.0.0.1 port=$PG_PORT user=chatd dbname=chatd_test connect_timeout=2" -Atc 'select 1' | grep -qx 1; }
cluster_online() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; }

setup_roles() {
  as_postgres psql -v ON_ERROR_STOP=1 -q -p "$PG_PORT" -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chatd') THEN
    CREATE ROLE chatd LOGIN PASSWORD 'chatd' CREATEDB;
  ELSE
    ALTER ROLE chatd LOGIN PASSWORD 'chatd' CREATEDB;
  END IF;
END $$;
SELECT 'CREATE DATABASE chatd OWNER chatd' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'chatd')\gexec
SELECT 'CREATE DATABASE chatd_test OWNER chatd' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'chatd_test')\gexec
SQL
}

start() {
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    log "creating PostgreSQL $PG_VERSION cluster $PG_CLUSTER"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" >/dev/null
  fi
  if cluster_online; then
    log "postgres $PG_VERSION/$PG_CLUSTER already running"
  else
    log "starting postgres $PG_VERSION/$PG_CLUSTER"
    # listen only on IPv4 loopback; --skip-systemctl-redirect: no systemd in CI.
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start \
      -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT" || {
        rc=$?; [ "$rc" -eq 2 ] || { show_log "$PG_LOG"; die "pg_ctlcluster start failed ($rc)"; }; }
  fi
  wait_for_port "$PG_PORT" 60 "$PG_LOG"
  setup_roles
  wait_until 30 "$PG_LOG" "" pg_ready
  log "postgres ready on 127.0.0.1:$PG_PORT"
}

stop() {
  if cluster_online; then
    log "stopping postgres $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" stop -m fast
  else
    log "postgres not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) cluster_online && pg_ready ;;
  *) ts_usage ;;
esac

#!/usr/bin/env bash
# redis-server on 127.0.0.1:6379, daemonized, no persistence.
# usage: redis.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REDIS_PORT=6379
DIR="$CHATD_TS_DIR/redis"
PIDFILE="$TS_RUN_DIR/redis.pid"
LOG="$TS_LOG_DIR/redis.log"

ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

start() {
  command -v redis-server >/dev/null || die "redis-server not installed (run apt.sh)"
  if ping; then log "redis already running"; return 0; fi
  mkdir -p "$DIR"
  log "starting redis (log: $LOG)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --dir "$DIR" \
    --pidfile "$PIDFILE" --logfile "$LOG" --protected-mode yes
  wait_until 30 "$LOG" "" ping
  log "redis ready on 127.0.0.1:$REDIS_PORT"
}

stop() {
  if ping; then
    log "stopping redis"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    wait_port_closed "$REDIS_PORT" 20 || stop_pidfile redis "$PIDFILE" 10
  else
    log "redis not running"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) ping ;;
  *) ts_usage ;;
esac

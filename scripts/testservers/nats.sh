#!/usr/bin/env bash
# nats-server with JetStream on 127.0.0.1:4222, monitoring on 127.0.0.1:8222.
# usage: nats.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NATS_PORT=4222
NATS_MON_PORT=8222
DIR="$CHATD_TS_DIR/nats"
PIDFILE="$TS_RUN_DIR/nats.pid"
LOG="$TS_LOG_DIR/nats.log"

healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$NATS_MON_PORT/healthz" >/dev/null; }

start() {
  command -v nats-server >/dev/null || die "nats-server not installed (run apt.sh)"
  if pid_alive "$PIDFILE" && healthy; then log "nats already running"; return 0; fi
  if port_open "$NATS_PORT"; then die "port $NATS_PORT is taken by another process"; fi
  mkdir -p "$DIR"
  # nats-server 2.9 has no --http_host flag: the monitor binds to the -a host.
  start_bg nats "$LOG" "$PIDFILE" nats-server -a 127.0.0.1 -p "$NATS_PORT" \
    -m "$NATS_MON_PORT" -js -sd "$DIR"   # JetStream data goes to $DIR/jetstream
  wait_for_port "$NATS_PORT" 30 "$LOG" "$PIDFILE"
  wait_until 30 "$LOG" "$PIDFILE" healthy
  log "nats ready on 127.0.0.1:$NATS_PORT (monitoring :$NATS_MON_PORT)"
}

stop() { stop_pidfile nats "$PIDFILE" 20; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) healthy ;;
  *) ts_usage ;;
esac

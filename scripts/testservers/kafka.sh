#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, combined broker+controller) on 127.0.0.1:9092,
# controller on 127.0.0.1:9093. Jars come from Maven Central (maven/kafka/pom.xml).
# Data is kept across stop/start.   usage: kafka.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
DIR="$CHATD_TS_DIR/kafka"
CONF="$DIR/server.properties"
LOG4J="$DIR/log4j2.properties"
TOOLS_LOG4J="$DIR/tools-log4j2.properties"
PIDFILE="$TS_RUN_DIR/kafka.pid"
LOG="$TS_LOG_DIR/kafka.log"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

write_config() {
  mkdir -p "$DIR/data"
  cat >"$CONF" <<PROPS
# written by scripts/testservers/kafka.sh
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
min.insync.replicas=1
PROPS
  cat >"$LOG4J" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
PROPS
  cat >"$TOOLS_LOG4J" <<'PROPS'
status = error
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
PROPS
}

kjava() { # kjava LOG4J_CONF MAIN ARGS...
  local l4j=$1; shift
  "$TS_JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$l4j" \
    -cp "$(classpath kafka)" "$@"
}

# kafka_topics ARGS... – runs Kafka's own TopicCommand against the broker.
kafka_topics() { kjava "$TOOLS_LOG4J" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"; }

format_once() {
  if [ -f "$DIR/data/meta.properties" ]; then return 0; fi
  local cid
  cid=$(kjava "$TOOLS_LOG4J" kafka.tools.StorageTool random-uuid | tail -1)
  echo "$cid" >"$DIR/cluster-id"
  log "formatting KRaft storage (cluster id $cid)"
  kjava "$TOOLS_LOG4J" kafka.tools.StorageTool format --standalone -t "$cid" -c "$CONF" >>"$LOG" 2>&1 \
    || { show_log "$LOG"; die "kafka storage format failed"; }
}

ready() { kafka_topics --list >/dev/null 2>&1; }

start() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then log "kafka already running"; return 0; fi
  if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by another process"
  fi
  maven_fetch kafka
  write_config
  format_once
  start_bg kafka "$LOG" "$PIDFILE" "$TS_JAVA" -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$DIR/logs" \
    -cp "$(classpath kafka)" kafka.Kafka "$CONF"
  [ "${1:-}" = --no-wait ] && return 0
  wait_ready
}

wait_ready() {
  wait_for_port "$KAFKA_PORT" "$START_TIMEOUT" "$LOG" "$PIDFILE"
  wait_until 60 "$LOG" "$PIDFILE" ready
  log "kafka ready on 127.0.0.1:$KAFKA_PORT"
}

stop() {
  stop_pidfile kafka "$PIDFILE" 60
  wait_port_closed "$KAFKA_PORT" 10 || true
}

case "${1:-}" in
  start) start "${2:-}" ;;
  wait) wait_ready ;;
  stop) stop ;;
  status) pid_alive "$PIDFILE" && ready ;;
  topics) shift; kafka_topics "$@" ;;
  *) echo "usage: $0 start [--no-wait]|wait|stop|status|topics ARGS..." >&2; exit 2 ;;
esac

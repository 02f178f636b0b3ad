#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, combined broker+controller) on 127.0.0.1:9092,
# controller on 127.0.0.1:9093, and a SASL_SSL listener on 127.0.0.1:9094
# (PLAIN and SCRAM-SHA-256/512, user chatd / chatd-secret, certificate of a
# private CA in $CHATD_TS_DIR/kafka/tls/ca.pem). Jars come from Maven
# Central (maven/kafka/pom.xml).
# Data is kept across stop/start.   usage: kafka.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_SASL_PORT=9094
SASL_USER=chatd
SASL_PASS=chatd-secret
DIR="$CHATD_TS_DIR/kafka"
CONF="$DIR/server.properties"
LOG4J="$DIR/log4j2.properties"
TOOLS_LOG4J="$DIR/tools-log4j2.properties"
PIDFILE="$TS_RUN_DIR/kafka.pid"
LOG="$TS_LOG_DIR/kafka.log"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

# write_tls makes the private CA and the broker's certificate (make_certs),
# and from them tls/broker.pem (PKCS#8 key and certificate) for Kafka's PEM
# keystore, again at every start so it always matches tls/ca.pem.
write_tls() {
  local t="$DIR/tls"
  make_certs "$t" Kafka
  (
    cd "$t"
    openssl pkcs8 -topk8 -nocrypt -in server.key -out broker.pk8
    cat broker.pk8 server.crt >broker.pem.tmp && mv -f broker.pem.tmp broker.pem
  ) || die "kafka: making the keystore failed"
}

write_config() {
  mkdir -p "$DIR/data"
  write_tls
  cat >"$CONF" <<PROPS
# written by scripts/testservers/kafka.sh
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASS";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/tls/broker.pem
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

# ensure_scram gives the SASL user its SCRAM credentials (idempotent; PLAIN
# users are in the JAAS line above).
ensure_scram() {
  local m # one mechanism per request: the broker refuses two for a user at once
  for m in SCRAM-SHA-256 SCRAM-SHA-512; do
    kjava "$TOOLS_LOG4J" org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --alter --entity-type users --entity-name "$SASL_USER" \
      --add-config "$m=[password=$SASL_PASS]" >>"$LOG" 2>&1 || return 1
  done
}

start() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then log "kafka already running"; return 0; fi
  if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT" || port_open "$KAFKA_SASL_PORT"; then
    die "port $KAFKA_PORT, $KAFKA_CONTROLLER_PORT or $KAFKA_SASL_PORT is taken by another process"
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
  wait_until 60 "$LOG" "$PIDFILE" ensure_scram
  wait_for_port "$KAFKA_SASL_PORT" 10 "$LOG" "$PIDFILE"
  log "kafka ready on 127.0.0.1:$KAFKA_PORT (SASL_SSL on $KAFKA_SASL_PORT)"
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

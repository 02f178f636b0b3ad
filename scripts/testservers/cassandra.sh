#!/usr/bin/env bash
# Apache Cassandra 5.0 (stand-in for ScyllaDB) on 127.0.0.1:9042, single node,
# from Maven Central jars (maven/cassandra/pom.xml), minimal cassandra.yaml
# written here, Java 17 flags from Cassandra's conf/jvm17-server.options.
# Clients log in (PasswordAuthenticator, the default superuser
# cassandra/cassandra), as on a production ScyllaDB, and may use TLS on the
# same port (optional client encryption; private CA in
# $CHATD_TS_DIR/cassandra/tls/ca.pem).
# usage: cassandra.sh start [--no-wait]|wait|stop|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CQL_PORT=9042
STORAGE_PORT=7000
DIR="$CHATD_TS_DIR/cassandra"
CONF="$DIR/conf/cassandra.yaml"
LOGBACK="$DIR/conf/logback.xml"
PIDFILE="$TS_RUN_DIR/cassandra.pid"
LOG="$TS_LOG_DIR/cassandra.log"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
READY_LINE='Starting listening for CQL clients'
KEYSTORE_PASSWORD=chatd-test
CQL_USER=cassandra CQL_PASSWORD=cassandra

# write_tls makes the private CA and the node's certificate (make_certs),
# and from them a PKCS#12 keystore for Cassandra, again at every start so it
# always matches tls/ca.pem.
write_tls() {
  local t="$DIR/tls"
  make_certs "$t" Cassandra
  (
    cd "$t"
    openssl pkcs12 -export -in server.crt -inkey server.key -name node \
      -passout "pass:$KEYSTORE_PASSWORD" -out keystore.p12.tmp && mv -f keystore.p12.tmp keystore.p12
  ) || die "cassandra: making the keystore failed"
}

write_config() {
  mkdir -p "$DIR/conf" "$DIR/data" "$DIR/commitlog" "$DIR/saved_caches" "$DIR/hints" "$DIR/cdc_raw" "$DIR/logs" "$DIR/triggers"
  write_tls
  cat >"$CONF" <<YAML
# written by scripts/testservers/cassandra.sh – single-node test server
cluster_name: chatd-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories:
  - $DIR/data
commitlog_directory: $DIR/commitlog
saved_caches_directory: $DIR/saved_caches
hints_directory: $DIR/hints
cdc_raw_directory: $DIR/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $CQL_PORT
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: PasswordAuthenticator
authorizer: AllowAllAuthorizer
client_encryption_options:
  enabled: true
  optional: true
  keystore: $DIR/tls/keystore.p12
  keystore_password: $KEYSTORE_PASSWORD
  store_type: PKCS12
  require_client_auth: false
auto_bootstrap: false
# tests create and drop keyspaces a lot: no snapshots on drop/truncate
auto_snapshot: false
disk_failure_policy: stop
memtable_allocation_type: heap_buffers
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
YAML
  cat >"$LOGBACK" <<'XML'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
</configuration>
XML
}

# Java 17 options: conf/jvm17-server.options of Cassandra 5.0 (GC + JPMS + Netty).
JVM17_OPTS=(
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
  -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

# Ready once CQL listens and takes the login: a fresh node creates its
# default superuser only after it starts listening.
ready() {
  port_open "$CQL_PORT" && grep -q "$READY_LINE" "$LOG" &&
    python3 "$(dirname "$0")/cqllogin.py" 127.0.0.1 "$CQL_PORT" "$CQL_USER" "$CQL_PASSWORD" 2>/dev/null
}

start() {
  if pid_alive "$PIDFILE" && port_open "$CQL_PORT"; then log "cassandra already running"; return 0; fi
  if port_open "$CQL_PORT" || port_open "$STORAGE_PORT"; then
    die "port $CQL_PORT or $STORAGE_PORT is taken by another process"
  fi
  maven_fetch cassandra
  write_config
  local lib="$CHATD_TS_DIR/lib/cassandra" jamm
  jamm=$(ls "$lib"/jamm-*.jar | head -1) || die "jamm agent jar missing in $lib"
  # Fresh log per start so the readiness line is from this run.
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.prev"
  start_bg cassandra "$LOG" "$PIDFILE" "$TS_JAVA" -Xms1g -Xmx1g -Xss256k \
    "${JVM17_OPTS[@]}" -XX:+ExitOnOutOfMemoryError \
    -javaagent:"$jamm" \
    -Dcassandra.config="file://$CONF" -Dcassandra.storagedir="$DIR" \
    -Dcassandra-foreground=true -Dcassandra.logdir="$DIR/logs" \
    -Dlogback.configurationFile="$LOGBACK" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.superuser_setup_delay_ms=0 \
    -Dcassandra.ring_delay_ms=1000 -Dcassandra.triggers_dir="$DIR/triggers" \
    -Djava.net.preferIPv4Stack=true \
    -cp "$DIR/conf:$(classpath cassandra)" org.apache.cassandra.service.CassandraDaemon
  [ "${1:-}" = --no-wait ] && return 0
  wait_ready
}

wait_ready() {
  wait_until "$START_TIMEOUT" "$LOG" "$PIDFILE" ready
  log "cassandra ready on 127.0.0.1:$CQL_PORT"
}

stop() {
  stop_pidfile cassandra "$PIDFILE" 60
  wait_port_closed "$CQL_PORT" 10 || true
}

case "${1:-}" in
  start) start "${2:-}" ;;
  wait) wait_ready ;;
  stop) stop ;;
  status) pid_alive "$PIDFILE" && ready ;;
  *) echo "usage: $0 start [--no-wait]|wait|stop|status" >&2; exit 2 ;;
esac

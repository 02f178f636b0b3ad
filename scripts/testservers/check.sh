#!/usr/bin/env bash
# Smoke-checks running test servers with real client round trips (all, or those
# named): psql query, redis SET/GET, NATS /healthz + JetStream, Kafka topic
# create/list, CQL write/read (DataStax driver from the Cassandra jars), and an
# OpenSearch index/search.   usage: check.sh [postgres|redis|nats|kafka|cassandra|opensearch ...]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(postgres redis nats kafka cassandra opensearch)

check_postgres() {
  PGPASSWORD=chatd psql "host=127.0.0.1 port=5432 user=chatd dbname=chatd_test sslmode=disable" -Atc \
    "create temp table t(x int); insert into t values (42); select x from t" | grep -qx 42
}
check_redis() {
  redis-cli -h 127.0.0.1 -p 6379 set testservers:smoke ok >/dev/null &&
  [ "$(redis-cli -h 127.0.0.1 -p 6379 get testservers:smoke)" = ok ]
}
check_nats() {
  curl -fsS --max-time 5 http://127.0.0.1:8222/healthz | grep -q ok &&
  curl -fsS --max-time 5 http://127.0.0.1:8222/jsz | grep -q '"store_dir"'
}
check_kafka() {
  local t=testservers-smoke
  "$HERE/kafka.sh" topics --create --if-not-exists --topic "$t" --partitions 1 --replication-factor 1 >/dev/null &&
  "$HERE/kafka.sh" topics --list | grep -qx "$t"
}
check_cassandra() {
  local cfg="$CHATD_TS_DIR/cassandra/conf/logback-tools.xml"
  mkdir -p "$(dirname "$cfg")" || return 1
  cat >"$cfg" <<'XML'
<configuration><appender name="E" class="ch.qos.logback.core.ConsoleAppender"><target>System.err</target>
<encoder><pattern>%-5level %logger{20} - %msg%n</pattern></encoder></appender>
<root level="WARN"><appender-ref ref="E"/></root></configuration>
XML
  "$TS_JAVA" -Xmx256m -Dlogback.configurationFile="$cfg" -cp "$(classpath cassandra)" \
    "$HERE/java/CqlCheck.java" 127.0.0.1 9042
}
check_opensearch() {
  local u=http://127.0.0.1:9200 ix=testservers-smoke
  curl -fsS --max-time 10 "$u/_cluster/health" | grep -Eq '"status":"(green|yellow)"' || return 1
  # (creating an existing index answers 400: fine)
  curl -sS --max-time 30 -XPUT "$u/$ix" -H 'Content-Type: application/json' \
    -d '{"settings":{"number_of_shards":1,"number_of_replicas":0}}' >/dev/null || return 1
  curl -fsS --max-time 30 -XPUT "$u/$ix/_doc/1?refresh=true" -H 'Content-Type: application/json' \
    -d '{"body":"hello from testservers"}' >/dev/null || return 1
  curl -fsS --max-time 30 "$u/$ix/_search?q=body:hello" | grep -q '"_id":"1"'
}

# Each check is a chain (&& / || return 1): errexit is off inside `if`.
bad=()
for s in "${want[@]}"; do
  if "check_$s"; then log "check $s: OK"; else log "check $s: FAILED"; bad+=("$s"); fi
done
[ ${#bad[@]} -eq 0 ] || die "check failed for: ${bad[*]}"
log "check: ${#want[@]} server(s) OK"

#!/usr/bin/env bash
# Installs and starts the integration-test servers on 127.0.0.1, then writes
# $CHATD_TS_DIR/env.sh with the CHATD_TEST_* variables the tests read.
#   usage: up.sh [postgres|redis|nats|kafka|cassandra|opensearch ...]   (default: all)
# The three JVM servers start in parallel; the script exits non-zero if any
# server fails its readiness check (its last 50 log lines are printed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"

ALL=(postgres redis nats kafka cassandra opensearch)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${ALL[@]}")
for s in "${want[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) die "unknown server '$s' (known: ${ALL[*]})" ;; esac
done
wants() { case " ${want[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

t0=$SECONDS
"$HERE/apt.sh"

# The JVM servers download their jars (first run only) and start in parallel,
# the slowest (OpenSearch) first. Parallel Maven runs sharing ~/.m2 are safe
# for downloads (the resolver locks partial files); cold, this cut the three
# downloads from 4m50s sequential to 3m14s here.
jvm=()
for s in opensearch cassandra kafka; do wants "$s" && jvm+=("$s"); done
declare -A bgpid=()
for s in "${jvm[@]}"; do
  "$HERE/$s.sh" start &
  bgpid[$s]=$!
done

failed=()
for s in postgres redis nats; do
  wants "$s" || continue
  "$HERE/$s.sh" start || failed+=("$s")
done
for s in "${jvm[@]}"; do
  wait "${bgpid[$s]}" || failed+=("$s")
done

env_file="$CHATD_TS_DIR/env.sh"
cat >"$env_file.tmp" <<ENV
# written by scripts/testservers/up.sh – source it before running integration tests
export CHATD_TEST_POSTGRES_DSN='postgres://chatd:chatd@127.0.0.1:5432/chatd_test?sslmode=disable'
export CHATD_TEST_REDIS_URL='redis://127.0.0.1:6379/0'
export CHATD_TEST_NATS_URL='nats://127.0.0.1:4222'
export CHATD_TEST_KAFKA_BROKERS='127.0.0.1:9092'
export CHATD_TEST_KAFKA_SASL_BROKERS='127.0.0.1:9094'
export CHATD_TEST_KAFKA_TLS_CA='$CHATD_TS_DIR/kafka/tls/ca.pem'
export CHATD_TEST_CASSANDRA_HOSTS='127.0.0.1:9042'
export CHATD_TEST_CASSANDRA_USERNAME='cassandra'
export CHATD_TEST_CASSANDRA_PASSWORD='cassandra'
export CHATD_TEST_CASSANDRA_TLS_CA='$CHATD_TS_DIR/cassandra/tls/ca.pem'
export CHATD_TEST_ELASTIC_URL='http://127.0.0.1:9200'
export CHATD_TEST_ELASTIC_FLAVOR='opensearch'
ENV
mv -f "$env_file.tmp" "$env_file"

if [ ${#failed[@]} -gt 0 ]; then
  die "failed to start: ${failed[*]} (logs in $TS_LOG_DIR)"
fi
log "up: ${want[*]} ready in $((SECONDS - t0))s; env: source $env_file"

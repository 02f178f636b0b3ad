# shellcheck shell=bash
# Shared helpers for scripts/testservers/*.sh. Source it; do not execute it.
#
# Everything a server writes (data, logs, pid files, downloaded jars) lives under
# CHATD_TS_DIR (default /var/tmp/chatd-testservers). Servers bind to 127.0.0.1 only.

set -euo pipefail

TS_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CHATD_TS_DIR="${CHATD_TS_DIR:-/var/tmp/chatd-testservers}"
TS_LOG_DIR="$CHATD_TS_DIR/logs"
TS_RUN_DIR="$CHATD_TS_DIR/run"
mkdir -p "$CHATD_TS_DIR" "$TS_LOG_DIR" "$TS_RUN_DIR"

# Java 17 is what Kafka 4.x, Cassandra 5.0 and OpenSearch 2.19 all accept.
TS_JAVA="${TS_JAVA:-java}"
if [ -z "${JAVA_HOME:-}" ] && [ -d /usr/lib/jvm/java-17-openjdk-amd64 ]; then
  TS_JAVA=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
elif [ -n "${JAVA_HOME:-}" ]; then
  TS_JAVA="$JAVA_HOME/bin/java"
fi

log()  { printf '[testservers %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }

# port_open PORT [HOST] – true if something accepts TCP connections there.
port_open() {
  local port=$1 host=${2:-127.0.0.1}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# wait_for_port PORT TIMEOUT_SECONDS [LOGFILE] [PIDFILE]
# Waits until the port accepts connections; on timeout (or if the pid in PIDFILE
# dies) prints the last 50 lines of LOGFILE and returns 1.
wait_for_port() {
  local port=$1 timeout=$2 logfile=${3:-} pidfile=${4:-}
  local deadline=$((SECONDS + timeout))
  while ! port_open "$port"; do
    if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then
      log "process from $pidfile exited before port $port opened"
      show_log "$logfile"; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timeout after ${timeout}s waiting for 127.0.0.1:$port"
      show_log "$logfile"; return 1
    fi
    sleep 0.5
  done
}

# wait_until TIMEOUT_SECONDS LOGFILE PIDFILE CMD... – polls CMD until it succeeds.
wait_until() {
  local timeout=$1 logfile=$2 pidfile=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then
      log "process from $pidfile exited; readiness check failed: $*"
      show_log "$logfile"; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timeout after ${timeout}s: $*"
      show_log "$logfile"; return 1
    fi
    sleep 1
  done
}

show_log() {
  local f=${1:-}
  if [ -n "$f" ] && [ -f "$f" ]; then
    log "---- last 50 lines of $f ----"
    tail -n 50 "$f" >&2 || true
    log "---- end of $f ----"
  fi
}

pid_alive() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# start_bg NAME LOGFILE PIDFILE CMD... – runs CMD detached (own session) with
# nohup, appending to LOGFILE, and records its pid.
start_bg() {
  local name=$1 logfile=$2 pidfile=$3; shift 3
  log "starting $name (log: $logfile)"
  printf '\n==== %s start %s ====\n' "$name" "$(date -u +%FT%TZ)" >>"$logfile"
  rm -f "$pidfile"
  # The child writes its own pid before exec'ing, so the pid file is right even
  # if setsid has to fork.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$pidfile" ] && break; sleep 0.1; done
}

# stop_pidfile NAME PIDFILE [TIMEOUT] – SIGTERM, wait, then SIGKILL.
stop_pidfile() {
  local name=$1 pidfile=$2 timeout=${3:-60} pid i
  if ! pid_alive "$pidfile"; then
    log "$name not running"; rm -f "$pidfile"; return 0
  fi
  pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 2; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in ${timeout}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$pidfile"
}

# wait_port_closed PORT TIMEOUT
wait_port_closed() {
  local port=$1 timeout=$2 deadline=$((SECONDS + $2))
  while port_open "$port"; do
    [ "$SECONDS" -ge "$deadline" ] && { log "port $port still open after ${timeout}s"; return 1; }
    sleep 0.5
  done
}

# maven_fetch NAME – copies the runtime dependencies of maven/NAME/pom.xml into
# $CHATD_TS_DIR/lib/NAME (once; a stamp file holds the pom's checksum).
maven_fetch() {
  local name=$1 pom="$TS_SCRIPTS_DIR/maven/$1/pom.xml" dest="$CHATD_TS_DIR/lib/$1"
  local sum stamp="$CHATD_TS_DIR/lib/$1.stamp"
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && [ -d "$dest" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  log "downloading $name jars with Maven into $dest"
  rm -rf "$dest"; mkdir -p "$dest"
  local mlog="$TS_LOG_DIR/maven-$name.log"
  if ! mvn -B -q -Daether.connector.basic.threads=16 -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$dest" >"$mlog" 2>&1; then
    show_log "$mlog"; die "maven download for $name failed"
  fi
  echo "$sum" >"$stamp"
}

# make_certs DIR NAME – makes, once, a private CA (DIR/ca.pem, the file
# clients trust) and a server certificate for 127.0.0.1 and localhost signed
# by it (DIR/server.crt, key DIR/server.key), for NAME's TLS listener.
make_certs() {
  local t=$1 name=$2
  if [ -s "$t/server.crt" ] && [ -s "$t/server.key" ] && [ -s "$t/ca.pem" ]; then return 0; fi
  mkdir -p "$t"
  (
    cd "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=chatd test $name CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
  ) || die "$name: making the TLS certificates failed"
}

# classpath NAME – "dir/*" form for java -cp.
classpath() { echo "$CHATD_TS_DIR/lib/$1/*"; }

# usage for start|stop scripts
ts_usage() { echo "usage: $0 start|stop|status" >&2; exit 2; }

#!/usr/bin/env bash
# Runs every `chatd bench` scenario against a freshly started chatd on an
# empty data dir and prints one table. The server is pinned to CPU 0 and the
# load to CPU 1 (taskset) when the machine has two CPUs or more. Send and
# login limits are off on this server (a benchmark sends far faster than one
# person). Sizes can be changed through the environment, e.g.
#   IDLE_CONNS=2000 FANOUT_CONNS=2000 scripts/bench.sh
# Results (one JSON file per scenario) stay in $BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18080}
WORKERS=${BENCH_WORKERS:-2}              # load processes (each holds at most its share of the <= 20,000 open files)
IDLE_CONNS=${IDLE_CONNS:-10000}
FANOUT_CONNS=${FANOUT_CONNS:-10000}
FANOUT_ROOMS=${FANOUT_ROOMS:-100}
FANOUT_RATE=${FANOUT_RATE:-50}           # sends/s of the first step (x100 members = deliveries/s)
FANOUT_FACTOR=${FANOUT_FACTOR:-2}
FANOUT_STEPS=${FANOUT_STEPS:-7}
CHAT_CONNS=${CHAT_CONNS:-2000}
CONNECT_CONNS=${CONNECT_CONNS:-5000}
DURABLE_RATE=${DURABLE_RATE:-2000}
DURATION=${BENCH_DURATION:-5s}
BENCH_OUT=${BENCH_OUT:-$(mktemp -d /tmp/chatd-bench.XXXXXX)}
mkdir -p "$BENCH_OUT"

SERVER_CPU=() LOAD_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	SERVER_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi

busy() {
	local load
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "load average $load on $(nproc) CPUs"
	if awk -v l="$load" 'BEGIN { exit !(l > 1.5) }'; then
		echo "WARNING: the machine is busy with other work; pinning does not give chatd or the load a CPU of its own, so these figures understate chatd"
	fi
}
busy

BIN=$BENCH_OUT/chatd
echo "+ go build -o $BIN ./cmd/chatd"
go build -o "$BIN" ./cmd/chatd

URL=http://127.0.0.1:$PORT
SERVER_PID=
stop_server() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
}
trap stop_server EXIT

# start_server DIR: starts chatd on an empty data dir; READY_MS is the time until /healthz answered.
start_server() {
	local dir=$1 t0 t1
	rm -rf "$dir"
	mkdir -p "$dir"
	t0=$(date +%s%N)
	"${SERVER_CPU[@]}" "$BIN" serve --data-dir "$dir" --http-addr "127.0.0.1:$PORT" \
		--set limits.send_rate=0 --set limits.login_rate=0 --set gateway.max_conns_per_user=1000 \
		--set log.level=warn >>"$BENCH_OUT/server.log" 2>&1 &
	SERVER_PID=$!
	until curl -sf -o /dev/null "$URL/healthz"; do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "chatd exited; see $BENCH_OUT/server.log" >&2
			exit 1
		fi
		if [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 30000 ]; then
			echo "chatd not ready within 30s" >&2
			exit 1
		fi
		sleep 0.005
	done
	t1=$(date +%s%N)
	READY_MS=$(( (t1 - t0) / 1000000 ))
}

echo "== time to ready (chatd serve on an empty data dir until /healthz answers), 5 runs"
READY=()
for i in 1 2 3 4 5; do
	start_server "$BENCH_OUT/ready$i"
	READY+=("$READY_MS")
	stop_server
	rm -rf "$BENCH_OUT/ready$i"
done
echo "ready in ms: ${READY[*]}"

echo "== server: ${SERVER_CPU[*]} $BIN serve --data-dir $BENCH_OUT/data --http-addr 127.0.0.1:$PORT --set limits.send_rate=0 --set limits.login_rate=0 --set gateway.max_conns_per_user=1000"
start_server "$BENCH_OUT/data"
echo "server pid $SERVER_PID"

run() {
	local name=$1
	shift
	echo "+ ${LOAD_CPU[*]} chatd bench $name --url $URL --pid $SERVER_PID $*"
	"${LOAD_CPU[@]}" "$BIN" bench "$name" --url "$URL" --pid "$SERVER_PID" --conns-per-user 1000 \
		--json "$BENCH_OUT/$name.json" "$@"
}

run idle --conns "$IDLE_CONNS" --rooms 100 --workers "$WORKERS" --duration 10s --settle 5s
run fanout --conns "$FANOUT_CONNS" --rooms "$FANOUT_ROOMS" --workers "$WORKERS" --duration "$DURATION" \
	--rate "$FANOUT_RATE" --rate-factor "$FANOUT_FACTOR" --steps "$FANOUT_STEPS" --max-p99 50ms
run chat --conns "$CHAT_CONNS" --room-size 5 --rate "$CHAT_CONNS" --duration "$DURATION" --workers "$WORKERS"
run connect --conns "$CONNECT_CONNS" --rooms 100 --concurrency 64 --workers "$WORKERS"
run durable --conns 20 --rate "$DURABLE_RATE" --duration "$DURATION"

stop_server
echo
busy
echo "== results ($(nproc) CPUs, $(uname -m), $(go version | cut -d' ' -f3)); chatd serve ready in ms: ${READY[*]}"
"$BIN" bench table "$BENCH_OUT"/{idle,fanout,chat,connect,durable}.json
echo "(JSON in $BENCH_OUT)"

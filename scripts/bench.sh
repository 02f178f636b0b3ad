#!/usr/bin/env bash
# Runs every `chatd bench` scenario, each against a freshly started chatd on
# an empty data dir, then the read benchmarks (scripts/bench-reads.sh, if
# present), and prints the scenario table and one table of issue 6's bars
# (target, measured, PASS/FAIL) with the machine and the exact commands.
#
# The server is pinned to CPU 0 and the load to CPU 1 (taskset) when the
# machine has two CPUs or more. Send and login limits are off on the server
# (a benchmark sends far faster than one person). Traffic goes to 127.0.0.1
# only. Every scenario runs under `timeout`, and the whole script under a
# budget (BENCH_BUDGET seconds, default 1020 = 17 min): a scenario that
# would start past it is skipped and shows as NOT RUN.
#
# Sizes are the bars' and can be lowered through the environment while
# developing, e.g.
#   IDLE_CONNS=500 FANOUT_CONNS=500 FANOUT_RATES=5,10 PERSIST_DURATION=5s BENCH_SKIP_READS=1 scripts/bench.sh
# (a smaller run cannot pass bars 1, 2 and 4: the table checks the shape).
#   BENCH_SKIP_READS=1        do not run scripts/bench-reads.sh (bar 5)
#   READS_STORE/READS_INDEX   its corpus sizes (default 10,000,000 / 1,000,000), READS_SAMPLES queries per case (200)
#   BENCH_READS_TIMEOUT       its cap in seconds (600; the first run builds the corpora, ~5 min, cached after)
#   BENCH_ONLY="idle fanout"  run only these (of: ready idle fanout chat connect durable persist selftest reads)
# Results (one JSON file per scenario, server logs) stay in $BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18080}
WORKERS=${BENCH_WORKERS:-2}                  # load processes (each holds at most its share of the <= 20,000 open files)
IDLE_CONNS=${IDLE_CONNS:-10000}              # bar 1
FANOUT_CONNS=${FANOUT_CONNS:-10000}          # bar 2: 10,000 connections
FANOUT_ROOMS=${FANOUT_ROOMS:-100}            #        in 100 rooms of 100
FANOUT_RATES=${FANOUT_RATES:-250,500,1000,1600,2400,3200}  # sends/s per step (x100 members = deliveries/s); 1600 is the first over 150,000
FANOUT_REFINE=${FANOUT_REFINE:-3}             # then up to 3 steps bisecting between the last good rate and the first broken one
CHAT_CONNS=${CHAT_CONNS:-2000}
CONNECT_CONNS=${CONNECT_CONNS:-5000}
DURABLE_RATE=${DURABLE_RATE:-2000}           # bar 3
DURABLE_DURATION=${DURABLE_DURATION:-10s}
PERSIST_RATE=${PERSIST_RATE:-10000}          # bar 4
PERSIST_DURATION=${PERSIST_DURATION:-60s}
PERSIST_ROOMS=${PERSIST_ROOMS:-100}
DURATION=${BENCH_DURATION:-5s}               # each fanout step, chat
BUDGET=${BENCH_BUDGET:-1020}
READS_TIMEOUT=${BENCH_READS_TIMEOUT:-600}
ONLY=${BENCH_ONLY:-ready idle fanout chat connect durable persist selftest reads}
BENCH_OUT=${BENCH_OUT:-$(mktemp -d /tmp/chatd-bench.XXXXXX)}
mkdir -p "$BENCH_OUT"
export BENCH_OUT

T0=$(date +%s)
SERVER_CPU=() LOAD_CPU=() SENDER_CPU=-1
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	SERVER_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1) SENDER_CPU=0
fi
COMMANDS=()
note_cmd() { COMMANDS+=("$*"); echo "+ $*"; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
left() { echo $((BUDGET - ($(date +%s) - T0))); }

machine() {
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || uname -m), $(uname -srm)"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
	local rev
	if rev=$(git rev-parse --short HEAD 2>/dev/null); then
		git diff --quiet HEAD -- . 2>/dev/null || rev="$rev + uncommitted changes"
	else
		rev="? (not a git checkout)"
	fi
	echo "go: $(go version | cut -d' ' -f3-), chatd: $rev"
	local load
	load=$(cut -d' ' -f1 /proc/loadavg)
	if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n * 0.75) }'; then
		echo "WARNING: the machine is busy with other work; pinning does not give chatd or the load a CPU of its own, so these figures understate chatd"
	fi
	# The integration tier's servers (.ci/run leaves them up) took about a
	# quarter of a CPU between them and cut persist's acked rate by a
	# third in one session.
	local ts
	ts=$(pgrep -f "${CHATD_TS_DIR:-/var/tmp/chatd-testservers}" 2>/dev/null | wc -l || true)
	if [ "${ts:-0}" -gt 0 ]; then
		echo "WARNING: $ts test server processes (scripts/testservers) are running and share the CPUs; stop them with scripts/testservers/down.sh"
	fi
}
machine | tee "$BENCH_OUT/machine-before.txt"

BIN=$BENCH_OUT/chatd
note_cmd go build -o "$BIN" ./cmd/chatd
go build -o "$BIN" ./cmd/chatd

URL=http://127.0.0.1:$PORT
SERVER_PID=
stop_server() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID"
		# Bounded: 30 s for a clean stop, then SIGKILL.
		for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
}
trap stop_server EXIT

SERVE_ARGS=(--set limits.send_rate=0 --set limits.login_rate=0 --set gateway.max_conns_per_user=1000 --set log.level=warn)
# start_server DIR: starts chatd on an empty data dir; READY_MS is the time until /healthz answered.
start_server() {
	local dir=$1 t0 t1
	rm -rf "$dir"
	mkdir -p "$dir"
	t0=$(date +%s%N)
	"${SERVER_CPU[@]}" "$BIN" serve --data-dir "$dir" --http-addr "127.0.0.1:$PORT" "${SERVE_ARGS[@]}" >>"$BENCH_OUT/server.log" 2>&1 &
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

READY=()
if want ready; then
	echo "== time to ready (chatd serve on an empty data dir until /healthz answers), 5 runs"
	note_cmd "${SERVER_CPU[*]} $BIN serve --data-dir DIR --http-addr 127.0.0.1:$PORT ${SERVE_ARGS[*]}   (x5, until /healthz answers)"
	for i in 1 2 3 4 5; do
		start_server "$BENCH_OUT/ready$i"
		READY+=("$READY_MS")
		stop_server
		rm -rf "$BENCH_OUT/ready$i"
	done
	echo "ready in ms: ${READY[*]}"
fi

# scenario NAME CAP_SECONDS ARGS...: a fresh server, the scenario on the load
# CPU under timeout (its cap, or what is left of the budget), the server
# stopped again.
scenario() {
	local name=$1 cap=$2 t
	shift 2
	want "$name" || return 0
	t=$(left)
	if [ "$t" -lt 30 ]; then
		echo "== $name: skipped, the ${BUDGET}s budget is spent"
		return 0
	fi
	t=$(( cap < t ? cap : t ))
	echo "== $name (fresh server, at most ${t}s)"
	start_server "$BENCH_OUT/data-$name"
	note_cmd "${LOAD_CPU[*]} timeout ${t}s $BIN bench $name --url $URL --pid $SERVER_PID --conns-per-user 1000 --json $BENCH_OUT/$name.json $*"
	if ! "${LOAD_CPU[@]}" timeout --kill-after=10s "${t}s" "$BIN" bench "$name" --url "$URL" --pid "$SERVER_PID" --conns-per-user 1000 \
		--json "$BENCH_OUT/$name.json" "$@"; then
		echo "!! $name failed or ran out of time (see above); it shows as NOT RUN"
		rm -f "$BENCH_OUT/$name.json"
	fi
	stop_server
	rm -rf "$BENCH_OUT/data-$name"
}

scenario idle 240 --conns "$IDLE_CONNS" --rooms 100 --workers "$WORKERS" --settle 5s --duration 8s
scenario fanout 420 --conns "$FANOUT_CONNS" --rooms "$FANOUT_ROOMS" --body-size 100 --workers "$WORKERS" \
	--duration "$DURATION" --rates "$FANOUT_RATES" --refine "$FANOUT_REFINE" --max-p99 50ms --max-loss 0
scenario chat 180 --conns "$CHAT_CONNS" --room-size 5 --rate "$CHAT_CONNS" --duration "$DURATION" --workers "$WORKERS"
scenario connect 180 --conns "$CONNECT_CONNS" --rooms 100 --concurrency 64 --workers "$WORKERS"
scenario durable 150 --conns 20 --rate "$DURABLE_RATE" --duration "$DURABLE_DURATION" --workers 1
scenario persist 330 --conns "$PERSIST_ROOMS" --rooms "$PERSIST_ROOMS" --rate "$PERSIST_RATE" --duration "$PERSIST_DURATION" \
	--lag-wait 60s --workers 1

if want selftest && [ "$(left)" -ge 30 ]; then
	echo "== selftest: the tool's own receive capacity against a trivial local sender (no chatd)"
	note_cmd "${LOAD_CPU[*]} $BIN bench selftest --conns $FANOUT_CONNS --rooms $FANOUT_ROOMS --rate 1500 --duration 5s --workers $WORKERS --sender-cpu $SENDER_CPU --json $BENCH_OUT/selftest.json"
	"${LOAD_CPU[@]}" timeout --kill-after=10s 120s "$BIN" bench selftest --conns "$FANOUT_CONNS" --rooms "$FANOUT_ROOMS" --rate 1500 \
		--duration 5s --workers "$WORKERS" --sender-cpu "$SENDER_CPU" --json "$BENCH_OUT/selftest.json" ||
		echo "!! selftest failed"
fi

# Bar 5: scripts/bench-reads.sh times latest-50 and search on the embedded
# store with go test -bench (10 M stored, 1 M indexed; it builds and caches
# the corpora on first use, ~5 min). Its raw output goes to
# $BENCH_OUT/bench-reads.txt, which the bar table reads. It runs on the
# server CPU.
READS_STORE=${READS_STORE:-10000000}
READS_INDEX=${READS_INDEX:-1000000}
READS_SAMPLES=${READS_SAMPLES:-200}   # timed queries per case (p99: the 2nd worst of 200)
READS_FILE=$BENCH_OUT/bench-reads.txt READS_PARTIAL=()
if want reads; then
	if [ "${BENCH_SKIP_READS:-0}" = 1 ]; then
		echo "== reads: skipped (BENCH_SKIP_READS=1); bar 5 shows as NOT RUN"
	elif [ ! -f scripts/bench-reads.sh ]; then
		echo "== reads: scripts/bench-reads.sh does not exist; bar 5 shows as NOT RUN"
	elif [ "$(left)" -lt 60 ]; then
		echo "== reads: skipped, the ${BUDGET}s budget is spent"
	else
		t=$(left)
		t=$(( READS_TIMEOUT < t ? READS_TIMEOUT : t ))
		echo "== reads (scripts/bench-reads.sh, at most ${t}s)"
		note_cmd "OUT=$BENCH_OUT/bench-reads.txt ${SERVER_CPU[*]} timeout ${t}s sh scripts/bench-reads.sh -s $READS_STORE -i $READS_INDEX -n $READS_SAMPLES"
		OUT=$BENCH_OUT/bench-reads.txt "${SERVER_CPU[@]}" timeout --kill-after=10s "${t}s" sh scripts/bench-reads.sh \
			-s "$READS_STORE" -i "$READS_INDEX" -n "$READS_SAMPLES" 2>"$BENCH_OUT/bench-reads.log" ||
			echo "!! bench-reads.sh failed or ran out of time (see $BENCH_OUT/bench-reads.log)"
		if [ ! -f "$BENCH_OUT/bench-reads.txt" ] && [ -s "$BENCH_OUT/bench-reads.txt.tmp" ]; then
			# Cut short: the cases it finished still count, as PARTIAL.
			mv "$BENCH_OUT/bench-reads.txt.tmp" "$BENCH_OUT/bench-reads.partial.txt"
			READS_FILE=$BENCH_OUT/bench-reads.partial.txt READS_PARTIAL=(--reads-partial)
		fi
	fi
fi

stop_server
echo
echo "== results"
machine | tee "$BENCH_OUT/machine-after.txt"
echo "total bench.sh time: $(( $(date +%s) - T0 ))s"
RESULTS=()
for s in idle fanout chat connect durable persist; do
	[ -f "$BENCH_OUT/$s.json" ] && RESULTS+=("$BENCH_OUT/$s.json")
done
echo
if [ ${#RESULTS[@]} -gt 0 ]; then
	"$BIN" bench table "${RESULTS[@]}"
	echo
fi
READY_LIST=$(IFS=,; echo "${READY[*]:-}")
"$BIN" bench bars --ready-ms "$READY_LIST" --reads "$READS_FILE" "${READS_PARTIAL[@]}" --reads-store "$READS_STORE" --reads-index "$READS_INDEX" --selftest "$BENCH_OUT/selftest.json" "${RESULTS[@]}"
echo
echo "commands (server: ${SERVER_CPU[*]:-unpinned}; load: ${LOAD_CPU[*]:-unpinned}):"
printf '  %s\n' "${COMMANDS[@]}"
echo "(JSON and server.log in $BENCH_OUT)"

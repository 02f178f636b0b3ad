#!/bin/sh
# bench-reads.sh: read and write figures of the embedded SQLite store and
# search index (issue 6, bars 4 and 5), as a table.
#
#   scripts/bench-reads.sh [-s store-rows] [-i index-rows] [-n samples] [-w] [-q]
#
#   -s  messages in the message store for the latest-50 / before-50 reads
#       (default 10000000)
#   -i  messages in the search index for the searches (default 1000000)
#   -n  queries timed per case, for p50/p99 (default 500)
#   -w  also measure write throughput (store and index batches of 100, 500)
#   -q  quick: 200,000-message corpora, 200 samples (a smoke run)
#
# The corpora are built on first use (about 2 min for 10 M store messages,
# 3 min for 1 M indexed ones on 2 cores) and cached under CHATD_BENCH_DIR
# (default /var/tmp/chatd-bench; 10 M + 1 M take about 2 GB); later runs
# reuse them until the schema changes. Server CPU pinning is up to the
# caller, e.g. `taskset -c 0 scripts/bench-reads.sh`.
#
# The benchmarks run the garbage collector as chatd serve does (GOGC=200
# unless GOGC is set in the environment; see asServed in bench_test.go).
#
# Output: one row per case with p50 and p99 in microseconds and, for
# searches, the number of matches; then msgs/s per write batch with -w.
# The raw `go test -bench` output is kept in $OUT (default
# /var/tmp/chatd-bench/bench-reads.txt) for benchstat.
set -eu
cd "$(dirname "$0")/.."

store=10000000 index=1000000 samples=500 writes=0
while getopts s:i:n:wq opt; do
	case $opt in
	s) store=$OPTARG ;;
	i) index=$OPTARG ;;
	n) samples=$OPTARG ;;
	w) writes=1 ;;
	q) store=200000 index=200000 samples=200 ;;
	*) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2 ;;
	esac
done

dir=${CHATD_BENCH_DIR:-/var/tmp/chatd-bench}
mkdir -p "$dir"
out=${OUT:-$dir/bench-reads.txt}
bin=$(mktemp "${TMPDIR:-/tmp}/sqlite-bench.XXXXXX")
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./pkg/sqlite

bench() { # rows bench benchtime
	CHATD_BENCH_DIR=$dir CHATD_BENCH_ROWS=$1 "$bin" -test.run '^$' -test.bench "$2" \
		-test.benchtime "$3" -test.timeout 60m
}
run() { bench "$@" | tee -a "$out.tmp" >&2; }
: >"$out.tmp"
# A first pass builds the corpus if needed and warms the page cache, as a
# running server's is.
bench "$store" 'ReadMessages' 100x >/dev/null
run "$store" 'ReadMessages' "${samples}x"
bench "$index" 'Search' 10x >/dev/null
# Every case gets the same samples: the 500-room searches, once hundreds
# of ms and capped at 50 samples, now take tens, and a p99 of 50 samples
# was one outlier (the worst but one).
run "$index" 'Search' "${samples}x"
if [ "$writes" = 1 ]; then
	run "$store" 'WriteMessages|IndexMessages' 3s
fi
mv "$out.tmp" "$out"

echo
echo "store: $store messages; index: $index messages; $samples queries per case; $(nproc) cores"
awk '
function metric(name,   i) { for (i = 3; i < NF; i++) if ($(i+1) == name) return $i; return "" }
/^Benchmark(ReadMessages|Search)\// {
	name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
	if (!header++) printf "%-36s %10s %10s %10s\n", "case", "p50 µs", "p99 µs", "matches"
	printf "%-36s %10s %10s %10s\n", name, metric("p50-µs"), metric("p99-µs"), metric("matches")
}
/^Benchmark(WriteMessages|IndexMessages)\// {
	name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
	if (!wheader++) printf "\n%-36s %10s %10s\n", "write", "msgs/s", "µs/msg"
	printf "%-36s %10.0f %10.1f\n", name, metric("msgs/s"), metric("ns/msg") / 1000
}' "$out"

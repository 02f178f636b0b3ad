.PHONY: test bench bench-quick bench-selftest bench-go

# The whole test suite; needs nothing installed.
test:
	go test ./...

# Every `chatd bench` scenario against a freshly started chatd (server on CPU 0,
# load on CPU 1); prints the table. Sizes: see scripts/bench.sh.
# Bounded: each scenario under timeout, the whole run within BENCH_BUDGET
# (default 17 min); BENCH_SKIP_READS=1 leaves out scripts/bench-reads.sh.
bench:
	bash scripts/bench.sh

# The same pipeline at development sizes (a minute or two; the bar table
# will show the shape-dependent bars as FAIL).
bench-quick:
	IDLE_CONNS=500 FANOUT_CONNS=500 FANOUT_ROOMS=5 FANOUT_RATES=10,20 CHAT_CONNS=100 CONNECT_CONNS=200 \
	DURABLE_DURATION=3s PERSIST_RATE=500 PERSIST_DURATION=5s PERSIST_ROOMS=10 BENCH_DURATION=2s BENCH_SKIP_READS=1 \
	bash scripts/bench.sh

# The load tool's own receive capacity (frames per CPU-second of its
# workers) against a trivial local sender, at bar 2's size, on CPU 1.
bench-selftest:
	go build -o /tmp/chatd-selftest ./cmd/chatd
	taskset -c 1 /tmp/chatd-selftest bench selftest --conns 10000 --rooms 100 --rate 1500 --duration 5s --sender-cpu 0

# Go benchmarks of the hot paths.
bench-go:
	go test -run '^$$' -bench . -benchmem ./pkg/bench ./pkg/gateway ./pkg/chat

.PHONY: test bench bench-go

# The whole test suite; needs nothing installed.
test:
	go test ./...

# Every `chatd bench` scenario against a freshly started chatd (server on CPU 0,
# load on CPU 1); prints the table. Sizes: see scripts/bench.sh.
bench:
	bash scripts/bench.sh

# Go benchmarks of the hot paths.
bench-go:
	go test -run '^$$' -bench . -benchmem ./pkg/bench ./pkg/gateway ./pkg/chat

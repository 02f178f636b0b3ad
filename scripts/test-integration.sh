#!/usr/bin/env bash
# The integration tier: the same tests, with the CHATD_TEST_* variables that
# point them at real servers (scripts/testservers/up.sh writes them). Tests
# that need a server they are not given skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CHATD_TEST_POSTGRES_DSN:?source \$CHATD_TS_DIR/env.sh first (scripts/testservers/up.sh)}"
go test -count=1 -timeout 20m -p 1 \
  ./pkg/postgres/... ./pkg/redis/... ./pkg/natsbus/... ./pkg/kafka/... ./pkg/scylla/... ./pkg/elastic/... ./pkg/app/... \
  ./tests/distributed/...

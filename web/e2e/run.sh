#!/usr/bin/env bash
# Browser end-to-end tests of the web UI. Needs Node 20+, /usr/bin/chromium
# (apt-get install -y chromium) and a chatd binary: CHATD_BIN, or it builds one.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${CHATD_BIN:-}" ]; then
  CHATD_BIN="$(mktemp -d)/chatd"
  (cd ../.. && go build -o "$CHATD_BIN" ./cmd/chatd)
fi
export CHATD_BIN
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "run.sh: ${CHROMIUM_PATH:-/usr/bin/chromium} is missing (apt-get install -y chromium)" >&2
  exit 1
fi
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
mkdir -p artifacts
exec node --test --test-concurrency=1 --test-timeout=300000 tests/

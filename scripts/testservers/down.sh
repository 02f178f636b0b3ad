#!/usr/bin/env bash
# Stops the integration-test servers (all, or those named). Data is kept.
#   usage: down.sh [postgres|redis|nats|kafka|cassandra|opensearch ...]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(opensearch cassandra kafka nats redis postgres)
rc=0
for s in "${want[@]}"; do
  [ -x "$HERE/$s.sh" ] || { log "unknown server '$s'"; rc=1; continue; }
  "$HERE/$s.sh" stop || { log "stopping $s failed"; rc=1; }
done
exit $rc

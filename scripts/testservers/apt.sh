#!/usr/bin/env bash
# Installs the Debian packages the test tier needs (skips what is installed).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS=(postgresql redis-server nats-server chromium maven default-jre-headless curl openssl)
missing=()
for p in "${PKGS[@]}"; do
  # maven / java may come from elsewhere (preinstalled image): accept the binary.
  case $p in
    maven) command -v mvn >/dev/null && continue ;;
    default-jre-headless) command -v java >/dev/null && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  log "apt: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
stamp="$TS_RUN_DIR/apt-updated"
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
  log "apt-get update"
  $SUDO apt-get update -qq
  touch "$stamp"
fi
log "apt-get install ${missing[*]}"
# policy-rc.d: keep the packages' init scripts from starting services at install
# time; our scripts start them bound to 127.0.0.1 themselves.
prc=/usr/sbin/policy-rc.d
created_prc=0
if [ ! -e "$prc" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
  $SUDO chmod +x "$prc"; created_prc=1
fi
trap '[ "$created_prc" = 1 ] && $SUDO rm -f "$prc"' EXIT
install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$TS_LOG_DIR/apt.log" 2>&1; }
if ! install; then
  # stale package lists (e.g. a security update replaced a version): refresh once
  log "apt-get install failed; apt-get update and retry"
  $SUDO apt-get update -qq >>"$TS_LOG_DIR/apt.log" 2>&1 && touch "$stamp" || true
  install || { show_log "$TS_LOG_DIR/apt.log"; die "apt-get install failed"; }
fi
log "apt: installed ${missing[*]}"

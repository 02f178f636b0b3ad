#!/usr/bin/env bash
# Proves goreleaser.yaml without publishing anything:
#   1. installs goreleaser at a pinned version from the Go module proxy (once:
#      the binary is kept in GOBIN, by default $HOME/go/bin, and reused while
#      its version matches),
#   2. `goreleaser check` (fails on errors and on deprecated settings),
#   3. snapshot builds of linux/amd64 and darwin/arm64 through the real
#      builds section (ldflags, CGO_ENABLED=0, -trimpath),
#   4. runs the linux/amd64 binary's `chatd version` and checks that it
#      prints the stamped version and commit; checks the darwin/arm64 one is
#      an arm64 Mach-O executable.
# With --full it then runs `goreleaser release --snapshot --skip=docker`:
# every target, the archives (with chatd.toml, README.md, LICENSE) and
# checksums.txt. No Docker engine is needed either way.
#
# Usage: scripts/release-check.sh [--full]
# Env: GORELEASER_VERSION (default below), GOBIN, KEEP_DIST=1 keeps dist/.
#
# Measured on the 2-core dev machine (shared, heavily loaded): installing
# goreleaser took 34 min wall (8 min CPU) and is cached in GOBIN after that;
# with a cold Go build cache the two -trimpath builds took 23 + 6.5 min, with
# a warm one the whole check takes ~15 s. CI should keep $HOME/go/bin and the
# Go build cache between runs.
set -euo pipefail

# v2.15.1 is the newest goreleaser whose module graph builds with Go 1.26
# and is fully served by the module proxy here (v2.18+ needs a newer Go).
GORELEASER_VERSION="${GORELEASER_VERSION:-v2.15.1}"
FULL=0
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "release-check: unknown argument $arg" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - start))"; }
fail() { echo "release-check: FAIL: $*" >&2; exit 1; }

GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export GOBIN
GR="$GOBIN/goreleaser"

step "goreleaser $GORELEASER_VERSION"
if [ -x "$GR" ] && go version -m "$GR" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/goreleaser/goreleaser/v2[[:space:]]+$GORELEASER_VERSION([[:space:]]|$)"; then
  echo "using cached $GR"
else
  echo "installing into $GOBIN (compiles goreleaser: slow the first time)"
  # Outside the module, so chatd's go.mod is neither read nor touched.
  (cd "$(mktemp -d)" && GOFLAGS='' go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION")
fi
"$GR" --version 2>&1 | grep -iE 'gitversion|version' | head -1 || true

# goreleaser reads git: no tags is fine for --snapshot (version 0.0.0 →
# 0.0.1-snapshot), but without a remote it stamps commit "none". A work tree
# with no remote gets one for this run only, through git's environment
# config (nothing is written to .git/config).
git rev-parse HEAD >/dev/null 2>&1 || fail "not a git checkout"
commit="$(git rev-parse HEAD)"
if ! git ls-remote --get-url >/dev/null 2>&1; then
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/chatd/chatd.git
fi

step "goreleaser check"
"$GR" check --config goreleaser.yaml

out="$(mktemp -d)"
trap 'rm -rf "$out"; [ "${KEEP_DIST:-}" = 1 ] || rm -rf dist' EXIT

build() { # GOOS GOARCH
  step "snapshot build $1/$2"
  GOOS="$1" GOARCH="$2" "$GR" build --config goreleaser.yaml --snapshot --clean --single-target \
    --output "$out/chatd_$1_$2"
  [ -s "$out/chatd_$1_$2" ] || fail "no binary for $1/$2"
}

build linux amd64
# The version goreleaser stamped, from the metadata of the build just made.
version="$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' dist/metadata.json | head -1)"
[ -n "$version" ] || fail "no version in dist/metadata.json"
build darwin arm64

step "check the binaries"
got="$("$out/chatd_linux_amd64" version)"
echo "$got"
case "$got" in
  "chatd $version (commit $commit, built "*) ;;
  *) fail "chatd version printed \"$got\", want \"chatd $version (commit $commit, built ...)\"" ;;
esac
case "$got" in *"built unknown"*) fail "build date not stamped" ;; esac
# Mach-O 64-bit magic (cf fa ed fe) and CPU type arm64 (0x0100000c), little-endian.
magic="$(od -An -tx1 -N8 "$out/chatd_darwin_arm64" | tr -d ' \n')"
[ "$magic" = "cffaedfe0c000001" ] || fail "darwin/arm64 binary is not an arm64 Mach-O (header $magic)"
echo "darwin/arm64: Mach-O arm64, $(wc -c <"$out/chatd_darwin_arm64") bytes"
echo "linux/amd64: $(wc -c <"$out/chatd_linux_amd64") bytes"

if [ "$FULL" = 1 ]; then
  step "full snapshot release (all targets, archives, checksums; no docker, no publish)"
  "$GR" release --config goreleaser.yaml --snapshot --clean --skip=docker,publish
  ls -l dist/*.tar.gz dist/*.zip dist/checksums.txt
  for a in dist/*.tar.gz; do
    for f in chatd chatd.toml README.md LICENSE; do
      tar -tzf "$a" | grep -qx "$f" || fail "$a lacks $f"
    done
  done
  for a in dist/*.zip; do
    for f in chatd.exe chatd.toml README.md LICENSE; do
      unzip -Z1 "$a" | grep -qx "$f" || fail "$a lacks $f"
    done
  done
  (cd dist && sha256sum -c --quiet checksums.txt) || fail "checksums.txt does not match"
fi

step "release check passed"

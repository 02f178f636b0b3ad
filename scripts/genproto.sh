#!/usr/bin/env bash
# Regenerates the gRPC/protobuf Go code of proto/ into pkg/rpc/chatdv1.
#   scripts/genproto.sh          regenerate in place
#   scripts/genproto.sh --check  regenerate into a temp dir and fail if the
#                                committed code differs (CI)
# The plugin versions are pinned so every machine produces identical code;
# protoc-gen-go is kept equal to the google.golang.org/protobuf version in
# go.mod, because the generated code targets that runtime.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! command -v protoc >/dev/null 2>&1; then
  echo "genproto: installing protobuf-compiler" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get install -y protobuf-compiler >/dev/null
fi

# Plugins go to a versioned cache dir, not GOPATH/bin, so a different
# version someone has installed globally never sneaks into the output.
bin="${XDG_CACHE_HOME:-$HOME/.cache}/chatd-genproto/go-$PROTOC_GEN_GO_VERSION-grpc-$PROTOC_GEN_GO_GRPC_VERSION"
if [ ! -x "$bin/protoc-gen-go" ] || [ ! -x "$bin/protoc-gen-go-grpc" ]; then
  echo "genproto: installing protoc plugins into $bin" >&2
  mkdir -p "$bin"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

gen() { # gen OUTDIR
  PATH="$bin:$PATH" protoc -I proto \
    --go_out="$1" --go_opt=module=github.com/chatd/chatd \
    --go-grpc_out="$1" --go-grpc_opt=module=github.com/chatd/chatd \
    $(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
}

# The generated headers name the protoc version, which follows the distro's
# package; ignore that line so CI on another distro release still passes.
strip_protoc_version() { sed -E '/^\/\/ +(- )?protoc +v/d' "$1"; }

if [ "$check" -eq 0 ]; then
  gen "$root"
  echo "genproto: regenerated pkg/rpc/chatdv1" >&2
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen "$tmp"
status=0
want=$(cd "$tmp" && find . -name '*.go' | sort)
have=$(cd "$root" && find pkg/rpc/chatdv1 -name '*.go' 2>/dev/null | sed 's|^|./|' | sort)
if [ "$want" != "$have" ]; then
  echo "genproto: generated file set differs:" >&2
  diff <(echo "$have") <(echo "$want") >&2 || true
  status=1
fi
for f in $want; do
  [ -f "$root/$f" ] || continue
  if ! diff -u <(strip_protoc_version "$root/$f") <(strip_protoc_version "$tmp/$f") >&2; then
    echo "genproto: $f is out of date; run scripts/genproto.sh" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "genproto: generated code is up to date" >&2
exit "$status"

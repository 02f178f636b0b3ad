# syntax=docker/dockerfile:1
#
# One Dockerfile, two ways to get the binary into the same runtime image:
#
#   target "source" (the default, last stage): compiles ./cmd/chatd with the
#     golang image, so `docker build .` and `docker compose build` work from a
#     plain checkout, without a release.
#   target "release": copies the binary goreleaser already built and tested
#     (goreleaser.yaml, dockers_v2, passes --target=release). goreleaser's
#     build context holds only <os>/<arch>/chatd per platform, no sources;
#     BuildKit builds only the stages the chosen target needs, so the "build"
#     stage is never attempted there.
#
# Both end in the "runtime" stage, so the two images differ only in where
# the binary came from.

ARG GO_VERSION=1.26

# Cross-compiles on the build machine's own platform (no emulation): chatd
# is pure Go, CGO_ENABLED=0.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev COMMIT=none DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/chatd ./cmd/chatd

# Alpine rather than distroless: the compose healthchecks (and operators
# debugging a container) need a shell and wget; it costs about 8 MB.
FROM alpine:3.22 AS runtime
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 chatd && adduser -S -D -H -u 10001 -G chatd chatd \
 && mkdir /data && chown chatd:chatd /data
# 8080 HTTP (API, WebSocket, UI, /healthz, /readyz); 9090 gRPC between
# roles (grpc.addr); 4222/6222 only when the embedded NATS listens.
EXPOSE 8080 9090
VOLUME /data
WORKDIR /data
USER chatd
ENV CHATD_DATA_DIR=/data
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/chatd"]
CMD ["serve", "--data-dir", "/data"]

FROM runtime AS release
ARG TARGETPLATFORM
COPY --chmod=0755 ${TARGETPLATFORM}/chatd /usr/local/bin/chatd

FROM runtime AS source
COPY --from=build /out/chatd /usr/local/bin/chatd

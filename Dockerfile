# syntax=docker/dockerfile:1
# The kratos-injector image for people who build with docker: one static binary, `webhook`, that
# serves the admission webhook (`webhook serve`) and renders kratos.yaml in the injected init
# container (`webhook render`, found on PATH), on an empty base, as user 65532, with no shell.
#
# `make image` builds the same layout without docker (internal/ociimage: multi-arch OCI index,
# reproducible); that is what releases publish and what the e2e bed runs.
# internal/ociimage's TestDockerfileMatches keeps the two in step: same base (scratch), files,
# path, user, PATH, entrypoint and compiler flags.

FROM golang:1.26 AS build
WORKDIR /src
ENV GOWORK=off GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The same command as internal/ociimage.GoBuild and `make build`.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=${VERSION}" \
      -o /out/webhook ./cmd/webhook

FROM scratch
# /etc/passwd and /etc/group naming the nonroot user 65532 (as distroless's nonroot).
COPY internal/ociimage/rootfs/ /
COPY --from=build /out/webhook /usr/local/bin/webhook
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook"]

# syntax=docker/dockerfile:1
# The kratos-injector image for people who build with docker: static binaries on an empty base,
# as user 65532, with no shell. `webhook` serves the admission webhook (`webhook serve`) and renders
# kratos.yaml in the injected init container (`webhook render`, found on PATH); `courier-gate` is
# copied into pods for their kratos-courier container; `metrics-proxy` is kratos-metrics.
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
# The same command as internal/ociimage.GoBuild and `make build`, for each of its Commands.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    for cmd in webhook courier-gate metrics-proxy; do \
      CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=${VERSION}" \
        -o /out/$cmd ./cmd/$cmd || exit 1; \
    done

FROM scratch
# /etc/passwd and /etc/group naming the nonroot user 65532 (as distroless's nonroot).
COPY internal/ociimage/rootfs/ /
COPY --from=build /out/webhook /usr/local/bin/webhook
# The courier gate: copied by the injected kratos-config container into the pod, where the
# kratos-courier container runs it next to Kratos (internal/courier).
COPY --from=build /out/courier-gate /usr/local/bin/courier-gate
# The kratos-metrics container's proxy (cmd/metrics-proxy), on PATH.
COPY --from=build /out/metrics-proxy /usr/local/bin/metrics-proxy
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook"]

# syntax=docker/dockerfile:1
# The kratos-injector image: one static binary, `webhook`, that serves the admission webhook
# (`webhook serve`) and renders kratos.yaml in the injected init container (`webhook render`,
# found on PATH). Build with `make image` (VERSION is stamped into the binary as `make build`
# does). The test bed packs bin/webhook the same way (internal/testbed/images.go): same path, same
# user; manifests/manifests_test.go checks that the two agree.

FROM golang:1.26 AS build
WORKDIR /src
ENV GOWORK=off GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
# The same command as `make build`.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=${VERSION}" \
      -o /out/webhook ./cmd/webhook && \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=${VERSION}" \
      -o /out/courier-gate ./cmd/courier-gate && \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=${VERSION}" \
      -o /out/metrics-proxy ./cmd/metrics-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/webhook /usr/local/bin/webhook
# The courier gate: copied by the injected kratos-config container into the pod, where the
# kratos-courier container runs it next to Kratos (internal/courier).
COPY --from=build /out/courier-gate /usr/local/bin/courier-gate
# The kratos-metrics container's proxy (cmd/metrics-proxy), on PATH.
COPY --from=build /out/metrics-proxy /usr/local/bin/metrics-proxy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook"]

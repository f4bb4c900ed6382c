# kratos-injector — `make test` is the one command that proves everything.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
export GOWORK := off

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/kratos-injector/kratos-injector/internal/version.Version=$(VERSION)
BIN := $(CURDIR)/bin
# Where hack/tools.sh caches the test components (outside the clone; shared by fresh clones).
export KRATOS_INJECTOR_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kratos-injector
E2E_TIMEOUT ?= 45m
GO_TEST_FLAGS ?=

.PHONY: all build test unit fuzz-short fuzz integration e2e soak tools fmt vet lint-fix clean bench bench-apiserver demo

all: build

## build: the binaries into bin/ (static, as in the image)
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/webhook ./cmd/webhook
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-kratos ./cmd/kubectl-kratos
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/courier-gate ./cmd/courier-gate
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/metrics-proxy ./cmd/metrics-proxy

## tools: build/install the real test components (cached by version), print where they are
tools:
	@dir=$$(hack/tools.sh); echo "test components in $$dir:"; ls -l "$$dir" | sed 1d

## unit: unit and golden tests that need nothing but Go (no test bed, no components)
unit:
	go test $(GO_TEST_FLAGS) $$(hack/testpkgs.sh unit)

## integration: the package tests that start real components through internal/testbed
## (kube-apiserver + etcd + kwok, a real Kratos, Postgres, nginx): the actions, the plugin, instance
## discovery, self-signed TLS, the webhook server, the manifests, the monitoring and ingress
## examples, the test bed's edge
integration: tools
	go test $(GO_TEST_FLAGS) $$(hack/testpkgs.sh integration)

## e2e: end-to-end tests on the real test bed (needs root for the real node)
E2E_LOG ?= $(CURDIR)/_output/e2e.log
e2e: build image tools
	@mkdir -p $(dir $(E2E_LOG))
	@# One package (internal/testbed's own tests are integration tests), so go test streams each test's progress.
	go test $(GO_TEST_FLAGS) -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/ 2>&1 | tee $(E2E_LOG)
	@! grep -- '--- SKIP' $(E2E_LOG) || { echo "e2e: a test was skipped; a skip is a failure here"; exit 1; }

## soak: the long e2e (test/e2e/soak_test.go, build tag soak; not part of `make test`): an injected
## Kratos on Postgres with SMTP serves steady traffic for SOAK_DURATION while Postgres and Mailpit
## are taken away every 3 minutes and labelled pods are admitted throughout; prints the figures
SOAK_DURATION ?= 10m
SOAK_LOG ?= $(CURDIR)/_output/soak.log
soak: build tools
	@mkdir -p $(dir $(SOAK_LOG))
	SOAK_DURATION=$(SOAK_DURATION) go test -tags soak -count=1 -timeout 6h -v -run '^TestSoak$$' ./test/e2e/ 2>&1 | tee $(SOAK_LOG)

## test: vet, unit, a short fuzz, integration and e2e — everything
test: vet unit fuzz-short integration e2e

## fuzz-short: every fuzz target for a few seconds (part of `make test`)
fuzz-short:
	FUZZTIME=$${FUZZTIME:-5s} hack/fuzz.sh

## fuzz: every fuzz target for FUZZTIME (default 5m) each
fuzz:
	FUZZTIME=$${FUZZTIME:-5m} hack/fuzz.sh

## demo: a local cluster with an injected Kratos and a walk through `kubectl kratos` (root; Ctrl-C stops it; DEMO_EXIT=1 exits after the walk)
demo: build tools
	go build -o $(BIN)/demo ./hack/demo
	$(BIN)/demo

## bench: injection and admission-handler micro-benchmarks, then the load harness (hack/loadtest):
## bare net/http, controller-runtime allow-all and `webhook serve` as separate processes under
## vegeta, BENCH_DURATION per phase per server; its table also goes to _output/loadtest.md
## (see docs/architecture.md, 'Performance')
BENCH_DURATION ?= 10s
bench:
	go test -run '^$$' -bench . -benchmem ./internal/inject/...
	@mkdir -p _output
	go run ./hack/loadtest -duration $(BENCH_DURATION) | tee _output/loadtest.md

## bench-apiserver: admission as the API server records it (its own latency histogram), on the
## test bed (root): 1,000 pods of 10 Deployments on kwok, twice each, admitted by the injector,
## by controller-runtime's allow-all and by allow-all answering the injector's patch (~10 min)
bench-apiserver: build image tools
	@mkdir -p _output
	go test -count=1 -timeout 40m -run '^$$' -bench AdmissionThroughAPIServer -benchtime 1x ./test/e2e/ 2>&1 | tee _output/bench-apiserver.log

## manifests: write manifests/ from the Helm chart charts/kratos-injector (the one source;
## charts' TestManifestsUpToDate fails when they drift)
.PHONY: manifests
manifests:
	go run ./hack/genmanifests manifests

fmt:
	gofmt -w $$(git ls-files '*.go')

## vet: gofmt check, go vet, golangci-lint (.golangci.yml; built once by hack/tools.sh, cached)
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted"; exit 1; }
	go vet ./...
	@dir=$$(hack/tools.sh golangci-lint); echo "golangci-lint $$("$$dir/golangci-lint" version --short) run ./..."; \
	  "$$dir/golangci-lint" run ./...

## lint-fix: apply golangci-lint's fixes and formatters (gofmt, gci import groups) to the tree
lint-fix:
	@dir=$$(hack/tools.sh golangci-lint); echo "golangci-lint $$("$$dir/golangci-lint" version --short) fmt ./... && run --fix ./..."; \
	  "$$dir/golangci-lint" fmt ./...; "$$dir/golangci-lint" run --fix ./...

clean:
	rm -rf $(BIN)

## image: the injector image with Go only (internal/ociimage via hack/image): a multi-arch
## (linux/amd64, linux/arm64) OCI image index, static binary, user 65532, no shell, written as an
## OCI image layout in $(IMAGE_DIR); reproducible (timestamps = SOURCE_DATE_EPOCH, default HEAD's
## commit time). The e2e bed runs this image. Push: crane push $(IMAGE_DIR) $(IMAGE)
IMAGE_REPO ?= ghcr.io/kratos-injector/kratos-injector
IMAGE ?= $(IMAGE_REPO):$(VERSION)
IMAGE_DIR ?= $(CURDIR)/_output/image
.PHONY: image docker-image
image:
	go run ./hack/image -version $(VERSION) -repository $(IMAGE_REPO) -o $(IMAGE_DIR)

## release: VERSION=vX.Y.Z: everything a release uploads, into $(DIST) (hack/release): plugin
## archives for linux/darwin/windows x amd64/arm64, the image (OCI layout + tarball), the krew
## manifest (validated by krew's validate-krew-manifest), install YAML per TLS mode and the Helm
## chart, all pinned to the image digest, and checksums.txt. Publishing: docs/releasing.md.
DIST ?= $(CURDIR)/dist
.PHONY: release
release:
	@[[ "$(VERSION)" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$$ ]] || { echo "make release VERSION=vX.Y.Z (got $(VERSION))"; exit 2; }
	@dir=$$(hack/tools.sh validate-krew-manifest); \
	  go run ./hack/release -version $(VERSION) -o $(DIST) -krew-validator "$$dir/validate-krew-manifest"

## docker-image: the same image from the Dockerfile (needs docker with BuildKit; not part of `make test`)
docker-image:
	docker build -t $(IMAGE) --build-arg VERSION=$(VERSION) .

# xosprobe — build, test and run. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Images: the reference they are imported/pushed as, the full commit for the
# revision label, the commit time stamped on every file (same commit, same digest).
IMAGE ?= ghcr.io/xosprobe/xosprobe
IMAGE_TAG ?= dev
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
WINDOWS_BUILDS ?= ltsc2019 ltsc2022 ltsc2025
NANOSERVER_DIR ?= $(HOME)/.cache/xosprobe/nanoserver
GOLANGCI_LINT_VERSION := v2.15.0
export WINEDEBUG ?= -all
export WINEPREFIX ?= $(HOME)/.wine

.PHONY: help build test test-unit test-windows lint demo bench bench-ebpf generate image-linux image-windows images-docker clean dashboards dashboards-check rules-test prometheus-live e2e chart-test manifests deps-demo deps-test deps-e2e

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: bin/xosprobe bin/xosprobe.exe ## bin/xosprobe (linux/amd64) and bin/xosprobe.exe (windows/amd64)

bin/xosprobe: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/xosprobe

bin/xosprobe.exe: FORCE
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/xosprobe

FORCE:

# What make demo / test / e2e need from Debian: installed when missing and
# run as root (saying what), else named (test/deps.sh).
deps-demo deps-test deps-e2e:
	@test/deps.sh $(@:deps-%=%)

test: deps-test lint test-unit test-windows dashboards-check rules-test chart-test prometheus-live ## everything CI runs: lint, Linux tests with -race, Windows tests under Wine, dashboards, alert rules, the Helm chart, and dashboards and rules against a real Prometheus

test-unit: ## Linux unit and integration tests with the race detector
	$(GO) test -race -count=1 ./...

test-windows: build ## Windows build's tests (the packages of xosprobe.exe; cmd/xosprobe-image is a build-host tool) and binary under Wine (real QPC, real Winsock)
	test/wine/setup.sh
	GOOS=windows GOARCH=amd64 $(GO) test -count=1 -exec wine ./probe/... ./agent/... ./cmd/xosprobe/
	test/crossos.sh
	XOSPROBE_WINDOWS_BINARY=$(CURDIR)/bin/xosprobe.exe $(GO) test -count=1 -run TestDemo -v ./cmd/xosprobe

lint: ## gofmt, go vet (both OSes), golangci-lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

dashboards: ## regenerate dashboards/*.json and dashboards/queries.txt from Go
	cd dashboards && $(GO) run .

dashboards-check: ## dashboards: drift check, PromQL parse, metric/label contract, evaluation
	cd dashboards && $(GO) vet ./... && $(GO) test -count=1 ./...

chart-test: bin/helm ## charts/xosprobe: helm lint, values, and manifests/ rendered from it object by object (Helm v4 built from the Go module proxy)
	cd test/chart && $(GO) vet ./... && HELM_BIN=$(CURDIR)/bin/helm $(GO) test -count=1 ./...

manifests: bin/helm ## render manifests/base and manifests/prometheus-operator from charts/xosprobe, and copy the chart's rules and dashboards
	cd test/chart && HELM_BIN=$(CURDIR)/bin/helm $(GO) test -count=1 -run 'Copies' ./... -update
	cd test/chart && HELM_BIN=$(CURDIR)/bin/helm $(GO) test -count=1 -run 'Rendered' ./... -update

bin/helm: test/chart/go.mod test/chart/go.sum ## Helm v4 as test/chart's go.mod pins it (the e2e installs the chart with it)
	cd test/chart && CGO_ENABLED=0 $(GO) build -trimpath -o ../../bin/helm helm.sh/helm/v4/cmd/helm

rules-test: ## promtool check/test of manifests/prometheus (promtool: Debian package prometheus)
	manifests/prometheus/test.sh

prometheus-live: build ## every dashboard query and alert rule against a real Prometheus scraping the demo mesh
	test/prometheus/live.sh

e2e: deps-e2e build image-linux bin/helm ## the mixed Windows/Linux cluster in a box (root; first build of the control plane ~10-20 min)
	@if command -v wine >/dev/null; then test/wine/setup.sh; fi
	bash test/e2e/build.sh
	cd test/e2e && XOSPROBE_E2E_STRICT=1 $(GO) test -count=1 -timeout 60m -v ./...

demo: deps-demo build ## the main job without a cluster: aggregator + Linux and Windows (Wine) agents on loopback, 60 s
	@if command -v wine >/dev/null; then test/wine/setup.sh; fi
	bin/xosprobe demo --duration $(or $(DEMO_DURATION),60s)

generate: ## rebuild the committed eBPF object and its Go bindings (Debian: clang llvm libbpf-dev)
	@for t in clang llvm-strip; do command -v $$t >/dev/null || { echo "generate: $$t not found (apt-get install clang llvm libbpf-dev)"; exit 1; }; done
	@test -f /usr/include/bpf/bpf_helpers.h || { echo "generate: bpf/bpf_helpers.h not found (apt-get install libbpf-dev)"; exit 1; }
	$(GO) generate ./probe/kernelrtt/ebpf/

bench-ebpf: ## CPU cost of the eBPF RTT collector on the probe (root)
	bench/ebpf/run.sh

bench: ## benchmarks with figures to compare (see README)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./probe/... | tee bench.out

image-linux: bin/xosprobe ## bin/xosprobe-linux.oci.tar: the Linux image (OCI layout, onto scratch); no Docker, no registry
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./cmd/xosprobe-image linux --binary bin/xosprobe \
	  --out bin/xosprobe-linux.oci.tar --name $(IMAGE):$(IMAGE_TAG)-linux --version $(VERSION) --revision $(REVISION)

image-windows: bin/xosprobe.exe ## bin/xosprobe-windows.oci.tar: one index, an image per Windows build, onto nanoserver layouts pulled beforehand (README)
	@bases=; for b in $(WINDOWS_BUILDS); do p=$(NANOSERVER_DIR)/nanoserver-$$b; \
	  if [ ! -d $$p ] && [ -f $$p.tar ]; then p=$$p.tar; fi; bases="$$bases --base $$b=$$p"; done; \
	  set -x; SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./cmd/xosprobe-image windows --binary bin/xosprobe.exe \
	  --out bin/xosprobe-windows.oci.tar --name $(IMAGE):$(IMAGE_TAG)-windows --version $(VERSION) --revision $(REVISION) \
	  --builds "$(WINDOWS_BUILDS)" $$bases

images-docker: ## the same images with a Docker engine: Dockerfile.linux, Dockerfile.windows once per Windows build
	@if ! docker info >/dev/null 2>&1; then echo "images-docker: no Docker engine reachable here (docker info failed); use make image-linux / image-windows"; exit 1; fi; \
	args="--build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg REVISION=$(REVISION)"; \
	docker build -f Dockerfile.linux $$args -t $(IMAGE):$(IMAGE_TAG)-linux . && \
	for v in $(WINDOWS_BUILDS); do docker build -f Dockerfile.windows $$args --build-arg WINDOWS_VERSION=$$v -t $(IMAGE):$(IMAGE_TAG)-windows-$$v . || exit 1; done

clean:
	rm -rf bin bench.out

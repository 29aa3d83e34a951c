# xosprobe — build, test and run. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOLANGCI_LINT_VERSION := v2.15.0
export WINEDEBUG ?= -all
export WINEPREFIX ?= $(HOME)/.wine

.PHONY: help build test test-unit test-windows lint demo bench bench-ebpf generate images clean dashboards dashboards-check rules-test prometheus-live e2e

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: bin/xosprobe bin/xosprobe.exe ## bin/xosprobe (linux/amd64) and bin/xosprobe.exe (windows/amd64)

bin/xosprobe: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/xosprobe

bin/xosprobe.exe: FORCE
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/xosprobe

FORCE:

test: lint test-unit test-windows dashboards-check rules-test prometheus-live ## everything CI runs: lint, Linux tests with -race, Windows tests under Wine, dashboards, alert rules, both against a real Prometheus

test-unit: ## Linux unit and integration tests with the race detector
	$(GO) test -race -count=1 ./...

test-windows: build ## Windows build's tests and binary under Wine (real QPC, real Winsock)
	test/wine/setup.sh
	GOOS=windows GOARCH=amd64 $(GO) test -count=1 -exec wine ./probe/... ./agent/... ./cmd/...
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

rules-test: ## promtool check/test of manifests/prometheus (promtool: Debian package prometheus)
	manifests/prometheus/test.sh

prometheus-live: build ## every dashboard query and alert rule against a real Prometheus scraping the demo mesh
	test/prometheus/live.sh

e2e: build ## the mixed Windows/Linux cluster in a box (root; first build of the control plane ~10-20 min)
	@if command -v wine >/dev/null; then test/wine/setup.sh; fi
	bash test/e2e/build.sh
	cd test/e2e && XOSPROBE_E2E_STRICT=1 $(GO) test -count=1 -timeout 40m -v ./...

demo: build ## the main job without a cluster: aggregator + Linux and Windows (Wine) agents on loopback, 60 s
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

images: ## container images, where a Docker engine is present
	@if ! docker info >/dev/null 2>&1; then echo "images: no Docker engine reachable here (docker info failed); nothing built"; exit 0; fi; \
	docker build -f Dockerfile.linux -t xosprobe:$(VERSION)-linux . && \
	for v in ltsc2019 ltsc2022; do docker build -f Dockerfile.windows --build-arg WINDOWS_VERSION=$$v -t xosprobe:$(VERSION)-windows-$$v . || exit 1; done

clean:
	rm -rf bin bench.out

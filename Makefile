# sandbox-guard. `make demo` shows what it does on a throwaway local node; `make test` runs every
# test, end-to-end included (root on Linux; missing tools are built into $(SG_CACHE)).
SHELL := /bin/bash
GO ?= go
BIN := bin/sandbox-guard
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DEPS := test/tools/install-deps.sh
export SG_CACHE ?= /var/cache/sandbox-guard-e2e
# End-to-end runs use this environment: real containerd 2.x and 1.7, runc, CNI, registry, crictl.
WITH_DEPS = set -o pipefail; eval "$$($(DEPS))" && export SG_PLUGIN=$(CURDIR)/$(BIN) &&

.PHONY: all build unit e2e test bench demo lint clean deps

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./plugin

deps:
	@$(DEPS) >/dev/null

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/demo)

e2e: build
	$(WITH_DEPS) $(GO) test -count=1 -v -timeout 20m ./test/e2e/...

test: lint unit e2e

demo: build
	$(WITH_DEPS) $(GO) test -c -o bin/demo ./test/demo && ./bin/demo -test.run '^TestDemo$$' -test.timeout 10m

bench: build
	$(WITH_DEPS) $(GO) run ./test/bench -out docs/benchmarks.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

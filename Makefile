# sandbox-guard. `make demo` shows what it does on a throwaway local node; `make test` runs every
# test, end-to-end included (root on Linux; missing tools are built into $(SG_CACHE)).
SHELL := /bin/bash
GO ?= go
BIN := bin/sandbox-guard
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DEPS := test/tools/install-deps.sh
export SG_CACHE ?= /var/cache/sandbox-guard-e2e
# End-to-end runs use this environment: real containerd 1.7, 2.2, 2.3 and 2.4, runc, CNI, registry
# and the real crictl ($(DEPS) keeps CRICTL if set, else builds it). A failing $(DEPS) stops the
# target.
WITH_DEPS = set -o pipefail; deps=$$($(DEPS)) && eval "$$deps" && export SG_PLUGIN=$(CURDIR)/$(BIN) &&

.PHONY: all build unit e2e test bench bench-reboot demo lint clean deps fuzz

all: build

# Build tags that keep what the plugin never uses out of the binary (docs/benchmarks.md, section 5):
# grpcnotrace drops gRPC's x/net/trace, whose html/template makes the linker keep every exported
# method of every linked type (reflect by name): 7.5 MiB of the binary. no_gogo drops
# typeurl's gogo/protobuf handler (containerd v2 and NRI register no gogo types).
BUILD_TAGS := grpcnotrace,no_gogo
GOBUILD = CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
build:
	$(GOBUILD) -o $(BIN) ./plugin

deps:
	@$(DEPS) >/dev/null

# The containerd config reader's differential test runs the containerd binaries already built
# into $(SG_CACHE) (`make deps`); a line not built yet is skipped (fails under REQUIRE_E2E=1).
# $(VERIFY) is a Go module of its own (Helm, the Prometheus operator's types, Prometheus's rule
# loader: the chart and alert tests), so that none of it enters the plugin's go.mod and binary.
VERIFY := deploy/verify
unit:
	eval "$$($(DEPS) --env)" && $(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/demo) && \
	  cd $(VERIFY) && $(GO) test -race -count=1 ./...

# Every test runs on four containerd lines, the lines of one test in parallel (about 7-8 minutes
# on 2 cores, plus 20-25 for the kubelet tests); the timeout leaves room for SG_E2E_SERIAL=1 (one
# line after another, ~15 minutes, ~60 with the kubelet tests).
e2e: build
	$(WITH_DEPS) $(GO) test -count=1 -v -timeout 90m ./test/e2e/...

test: lint deps unit e2e fuzz

# Every fuzz target for a fixed short time (FUZZTIME each); the corpus each finds stays in Go's
# cache, outside the repository. A failure is shown and run once more: a failing input is saved
# under testdata and fails again at once, a hiccup of the fuzz engine under load does not.
FUZZTIME ?= 10s
FUZZ_TARGETS := ./internal/config:FuzzParse ./internal/gate:FuzzDecide ./internal/ecr:FuzzParseHost ./internal/bridge:FuzzMerge
fuzz:
	@set -e; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; for t in $(FUZZ_TARGETS); do echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
	  if ! $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" >"$$out" 2>&1; then cat "$$out"; \
	    echo "fuzz $${t#*:} failed; once more (an input that fails is saved under testdata and fails again at once)"; \
	    $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; fi; done; echo "fuzz: 0 failures"

demo: build
	$(WITH_DEPS) $(GO) test -c -o bin/demo ./test/demo && ./bin/demo -test.run '^TestDemo$$' -test.timeout 10m

bench: build
	$(WITH_DEPS) $(GO) test -c -o bin/bench ./test/bench && ./bin/bench -test.run '^TestBench$$' -test.timeout 40m -out docs/benchmarks.md

# The reboot-recovery measurement (section 7) alone, into the existing report.
bench-reboot: build
	$(WITH_DEPS) $(GO) test -c -o bin/bench ./test/bench && ./bin/bench -test.run '^TestBench$$' -test.timeout 30m -out docs/benchmarks.md -only 7

# golangci-lint (.golangci.yml) is built once into $(SG_CACHE), per version and Go release: a
# binary built by an older Go refuses newer code. Built in a temp dir then renamed, so an
# interrupted or concurrent build never leaves a half-written binary behind.
GOLANGCI_VERSION := v2.15.0
GOLANGCI_DIR := $(SG_CACHE)/golangci-lint-$(GOLANGCI_VERSION)-$(shell GOTOOLCHAIN=local $(GO) env GOVERSION)
GOLANGCI := $(GOLANGCI_DIR)/bin/golangci-lint

lint: $(GOLANGCI)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOTOOLCHAIN=local $(GOLANGCI) run ./...
	cd $(VERIFY) && $(GO) vet ./... && GOTOOLCHAIN=local $(GOLANGCI) run ./...

$(GOLANGCI):
	@echo "installing golangci-lint $(GOLANGCI_VERSION) into $(GOLANGCI_DIR)"
	@mkdir -p $(GOLANGCI_DIR) && tmp=$$(mktemp -d $(GOLANGCI_DIR)/bin.XXXXXX) && chmod 755 $$tmp && \
	if GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN=$$tmp \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION); then \
		mv -T $$tmp $(GOLANGCI_DIR)/bin 2>/dev/null || rm -rf $$tmp; \
	else rm -rf $$tmp; exit 1; fi
	@test -x $@

clean:
	rm -rf bin

# --- install and image (deploy/README.md) ---------------------------------------------------
# `make install` pre-registers the plugin on this machine (root): the binary in /opt/nri/plugins,
# its configuration in /etc/nri/conf.d (kept if edited), containerd's NRI drop-in in
# /etc/containerd/config.d. DESTDIR installs into another root (an image build); INSTALL_FLAGS
# adds flags, e.g. INSTALL_FLAGS=--containerd-major=2 where no containerd config exists yet.
# `make image` writes bin/sandbox-guard-image.tar, an OCI archive (no Docker, no registry) holding
# one image index for IMAGE_PLATFORMS (the binary cross-compiled for each: CGO is off), for
# `ctr -n k8s.io images import` or `skopeo copy --all oci-archive:...`.
IMAGE ?= localhost/sandbox-guard:$(VERSION)
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
DESTDIR ?=
INSTALL_FLAGS ?=
.PHONY: install image

install: build
	$(BIN) install --root $(if $(DESTDIR),$(abspath $(DESTDIR)),/) $(INSTALL_FLAGS)

image:
	@set -e; bins=; for p in $(IMAGE_PLATFORMS); do out=bin/$${p/\//-}/sandbox-guard; echo "build $$p -> $$out"; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} $(GOBUILD) -o $$out ./plugin; bins="$$bins --binary $$out"; done; \
	  $(GO) run ./deploy/image $$bins --out bin/sandbox-guard-image.tar --ref $(IMAGE)

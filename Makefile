# thinlayer — see README.md.
GO ?= go
THINLAYER_REQUIRE_KERNEL ?=
export THINLAYER_REQUIRE_KERNEL
PKGS := ./...
FUZZTIME ?= 10s

.PHONY: all build deps test unit vet fuzz bench clean demo

all: build

build:
	CGO_ENABLED=0 $(GO) build $(PKGS)

# libdevmapper-dev: Moby's cgo driver, the peer in compat/ and bench/.
deps:
	@EXTRA_PACKAGES="libdevmapper-dev btrfs-progs lvm2" ./scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	@! grep -rn --include='*.go' -E 'exec\.Command(Context)?\([^)]*"(dmsetup|losetup)"' $$(find . -name '*.go' ! -name '*_test.go') || { echo "the library must not exec dmsetup/losetup"; exit 1; }

# Packages whose tests need no device-mapper: also run under the race
# detector, which cannot run inside User-Mode Linux (ThreadSanitizer wants a
# 47-bit address space).
RACE_PKGS := ./internal/... ./fsutil/... ./loopback/... ./deviceset/...

# All tests, kernel ones included: test binaries that need device-mapper boot
# User-Mode Linux themselves when the host kernel has none (testutil.Main).
test: deps build vet
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	cd compat && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...
	cd containerd && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...

# Every fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m for a long run).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# thinlayer against Moby's devicemapper driver and the floor, in the test
# harness's kernel, without and with udev: prints the tables of
# docs/benchmarks.md (raw output in bench/out). Knobs: see scripts/bench.sh.
bench: deps
	./scripts/bench.sh

# The thinlayer command's tour in a throwaway loop-backed home, in a real
# kernel: User-Mode Linux where the host's has no dm-thin (docs/cli.md).
demo: deps
	CGO_ENABLED=0 $(GO) build -o bin/thinlayer ./cmd/thinlayer
	./bin/thinlayer demo

clean:
	rm -rf bin

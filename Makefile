# thinlayer — see README.md.
GO ?= go
THINLAYER_REQUIRE_KERNEL ?=
export THINLAYER_REQUIRE_KERNEL
PKGS := ./...
FUZZTIME ?= 10s
# Crash-test fault points (internal/faults) exist only in test builds.
TEST_TAGS := -tags thinlayer_faults

.PHONY: all build deps test unit vet fuzz bench clean demo powercut

all: build

build:
	CGO_ENABLED=0 $(GO) build $(PKGS)

# libdevmapper-dev: Moby's cgo driver, the peer in compat/ and bench/.
# docker.io, busybox-static: Docker Engine on the plugin (dockerplugin/enginetest).
deps:
	@EXTRA_PACKAGES="libdevmapper-dev btrfs-progs lvm2 containerd docker.io busybox-static" ./scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)
	$(GO) vet $(TEST_TAGS) $(PKGS)
	$(GO) mod tidy -diff
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	@! grep -rn --include='*.go' -E 'exec\.Command(Context)?\([^)]*"(dmsetup|losetup)"' $$(find . -name '*.go' ! -name '*_test.go') || { echo "the library must not exec dmsetup/losetup"; exit 1; }

# Packages whose tests need no device-mapper: also run under the race
# detector, which cannot run inside User-Mode Linux (ThreadSanitizer wants a
# 47-bit address space).
RACE_PKGS := ./internal/... ./fsutil/... ./layertar/... ./loopback/... ./deviceset/... ./dockerplugin

# All tests, kernel ones included: test binaries that need device-mapper boot
# User-Mode Linux themselves when the host kernel has none (testutil.Main).
# -timeout bounds one test binary, not the run: dockerplugin/enginetest
# drives real dockerd processes in UML one after another and is the long
# pole (each docker run is 15-20 s of runc and shim execs there).
test: deps build vet
	$(GO) test $(TEST_TAGS) -count=1 -timeout 40m $(PKGS)
	$(GO) test $(TEST_TAGS) -race -count=1 -timeout 20m $(RACE_PKGS)
	THINLAYER_NO_UML=1 $(GO) test -race -count=1 -timeout 20m -run '$(RACE_HOST_TESTS)' ./graphdriver
	@$(MAKE) --no-print-directory fuzz-smoke
	cd compat && $(GO) vet ./... && $(GO) test -count=1 -timeout 40m ./...
	cd containerd && $(GO) vet ./... && $(GO) test -count=1 -timeout 40m ./...
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./benchtable ./stracecount

# The driver's own concurrency and a tar bomb, on a fake DeviceSet: the
# host half of the stress test (the kernel half runs in UML, without -race;
# docs/reliability.md).
RACE_HOST_TESTS := ^(TestDriverRace|TestTarBombBoundedMemory)$$

# Bounded fuzzing in make test, on the host: status and option parsing,
# DevInfo decoding, layer tars, and layer apply against Moby's (compat/;
# make fuzz runs every target for longer).
FUZZ_SMOKE := ./devmapper:FuzzParseThinPoolStatus ./devmapper:FuzzParseThinStatus \
	./dmopts:FuzzParseOptions ./deviceset:FuzzDecodeDevInfo ./layertar:FuzzApplyLayer \
	./testutil/logwrites:FuzzParse
FUZZ_SMOKE_TIME ?= 4s

.PHONY: fuzz-smoke
fuzz-smoke:
	@for t in $(FUZZ_SMOKE); do pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$pkg $$fn ($(FUZZ_SMOKE_TIME))"; \
		THINLAYER_NO_UML=1 $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZ_SMOKE_TIME) $$pkg || exit 1; done
	@echo "fuzz compat FuzzApplyMatchesMoby ($(FUZZ_SMOKE_TIME))"
	cd compat && THINLAYER_NO_UML=1 $(GO) test -run '^$$' -fuzz '^FuzzApplyMatchesMoby$$' -fuzztime $(FUZZ_SMOKE_TIME) .

# The power-cut walk at every flush of every operation (make test cuts
# each operation at a sample of its flushes), on thinlayer and on Moby
# v24.0.9's driver (compat): prints "power-cut walk: N operations, M
# replay points: X lost, Y inconsistent" for each (docs/reliability.md).
# Full output in bin/powercut*.log.
PC_RUN := THINLAYER_POWERCUT=full $(GO) test $(TEST_TAGS) -count=1 -timeout 120m -v -run
PC_GREP := grep -E '^(power-cut walk:|--- FAIL|FAIL|ok)|lost:|inconsistent:'
powercut: deps
	@mkdir -p bin; rc=0; \
	$(PC_RUN) '^TestPowerCutWalk$$' ./graphdriver/powercut >bin/powercut.log 2>&1 || rc=1; \
	(cd compat && $(PC_RUN) '^TestMobyPowerCutWalk$$' .) >bin/powercut-moby.log 2>&1 || rc=1; \
	echo "thinlayer:"; $(PC_GREP) bin/powercut.log; \
	echo "Moby v24.0.9 (peer):"; $(PC_GREP) bin/powercut-moby.log | grep -v '^    walk.go'; exit $$rc

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

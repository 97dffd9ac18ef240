# Cambium. `make demo` and `make test` are the two commands; see README.md.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
BUILD     := build
FUZZTIME  ?= 1m
# The whole suite; CI's limit is 90 minutes.
TESTFLAGS ?= -count=1 -timeout 60m

.PHONY: build test vet deps fuzz bench demo extension clean

## build: compile every package, and the CLI as build/cambium.
build:
	$(GO) build ./...
	$(GO) build -o $(BUILD)/cambium ./cmd/cambium

## deps: install what the tests need (apt packages, MinIO), only if missing.
deps:
	@scripts/install-deps

## vet: go vet and a gofmt check.
vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: install what is missing, vet, and run every test (S3 against a real MinIO).
# The full log goes to build/test.log; the console shows each top-level test,
# the MinIO lines and each package's result.
test: deps vet
	@mkdir -p $(BUILD)
	@echo "go test $(TESTFLAGS) ./...  (full log: $(BUILD)/test.log)"
	@if ! $(GO) test -v $(TESTFLAGS) ./... > $(BUILD)/test.log 2>&1; then \
		grep -E '^(--- FAIL|FAIL|panic:)|^\s+--- FAIL|_test\.go:[0-9]+:' $(BUILD)/test.log | head -200; \
		echo "make test: FAILED (see $(BUILD)/test.log)"; exit 1; fi
	@grep -E '^(--- (PASS|SKIP)|ok |FAIL)|testminio:|against MinIO|violations|kills|coldopen|fastforward' $(BUILD)/test.log
	@echo "go test -race -short ./engine/ ./segment/ ./remote/...  (full log: $(BUILD)/test-race.log)"
	@if ! $(GO) test -race -short -count=1 ./engine/ ./segment/ ./remote/... > $(BUILD)/test-race.log 2>&1; then \
		grep -E 'FAIL|DATA RACE|panic:' -A20 $(BUILD)/test-race.log | head -100; \
		echo "make test: FAILED under -race (see $(BUILD)/test-race.log)"; exit 1; fi
	@cat $(BUILD)/test-race.log
	@echo "tests: $$(grep -c '^--- PASS' $(BUILD)/test.log) passed, 0 failed"

## fuzz: run every fuzz target for FUZZTIME each (default 1m).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

## bench: every workload of the harness at the reference sizes of BENCHMARKS.md, each
## with its baselines measured in the same run (build/bench.json, charts in build/bench/;
## about three quarters of an hour, 14 minutes of it the lifecycle workload), then the Go
## micro-benchmarks. BENCHFLAGS adds flags, e.g.
## BENCHFLAGS='--only coldopen --coldopen-size 256MiB'.
BENCHFLAGS ?=
bench: build deps extension
	$(BUILD)/cambium bench --json $(BUILD)/bench.json --svg $(BUILD)/bench $(BENCHFLAGS)
	$(GO) test ./engine ./segment -run '^$$' -bench . -benchtime 2s

## demo: build build/cambium and run its end-to-end story (a writer, a lazy replica,
## a pull, time travel) on an object store in a temporary directory, or $CAMBIUM_REMOTE.
demo: build
	@$(BUILD)/cambium demo

## extension: build/libcambium.so, the loadable SQLite extension (c-shared Go + C shim),
## exporting only its entry points.
# Relative relocations packed (DT_RELR, -z pack-relative-relocs) where the linker and the C
# library have them (binutils 2.38, glibc 2.36): loading the library then relocates it in a
# fraction of the time, and takes about 12% fewer page faults (issue 16).
RELR := $(shell t=$$(mktemp) && printf 'int main(void){return 0;}' | $${CC:-cc} -x c - -o $$t -Wl,-z,pack-relative-relocs 2>/dev/null && $$t && echo '-extldflags=-Wl,-z,pack-relative-relocs'; rm -f $$t)
extension:
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -ldflags='$(RELR)' -o $(BUILD)/libcambium.so ./extension/loadable
	@rm -f $(BUILD)/libcambium.h
	@if command -v nm >/dev/null; then \
		syms=$$(nm -D --defined-only $(BUILD)/libcambium.so | awk '{print $$3}' | sort | xargs); \
		if [ "$$syms" != "sqlite3_cambium_init sqlite3_extension_init" ]; then \
			echo "make extension: libcambium.so exports more than its entry points: $$syms" | cut -c1-300; exit 1; fi; \
	fi
	@echo "built $(BUILD)/libcambium.so: in sqlite3, .load $(BUILD)/libcambium then .open file:NAME?vfs=cambium&dir=DIR"

clean:
	rm -rf $(BUILD)

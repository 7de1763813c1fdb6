# rkl — build, test, demo and install.
#
#   make demo     build everything and run the C example against the simulator
#   make check    all tests (Rust in both runtime ABIs, C under sanitizers and valgrind)
#   make bench    benchmarks (release build)
#   make docs     the C API reference (Doxygen) into build/docs/html
#   make install  PREFIX=/usr/local DESTDIR=
#   make dist     release tarballs and .deb packages for x86_64 and aarch64 (mk/dist.mk)

CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig

TARGET      := $(CURDIR)/target
# A private install used by the demo and the C tests, exactly as a user's.
STAGE       := $(CURDIR)/build/stage
SIM_LIB     := $(TARGET)/debug/librkllmrt.so
SIM_VARIANTS := default family-1-1 family-1-2-0 missing-abort oversized-param

export RKLLM_SIM_TIME_SCALE ?= 0

.PHONY: all build build-release sim-variants tools test-rust check demo bench install clean

all: build

tools:
	@scripts/ensure-tools.sh

build:
	$(CARGO) build --workspace

build-release:
	$(CARGO) build --workspace --release

sim-variants:
	@for v in $(SIM_VARIANTS); do \
	  f="--features $$v"; [ $$v = default ] && f=""; \
	  $(CARGO) build -q -p rkllm-sim $$f --target-dir $(TARGET)/sim-$$v || exit 1; \
	done

# The Rust suite runs once per runtime ABI the simulator imitates; the tests
# use the simulator builds in target/sim-*.
# The bounded fuzzers use fixed seeds here so that `make check` is
# repeatable; `make hardening` explores fresh random seeds.
FUZZ_SEED ?= 20261123
# The `rkl` command's tests (cli/) run in `make cli-check` (mk/cli.mk).
test-rust: build sim-variants
	RKLLM_SIM_ABI=1.2 RKL_FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test --workspace --exclude rkl-cli
	RKLLM_SIM_ABI=1.3 RKL_FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test --workspace --exclude rkl-cli

include mk/*.mk

check: tools test-rust $(CHECK_EXTRA)
	@echo "make check: all passed"

clean:
	$(CARGO) clean
	rm -rf build

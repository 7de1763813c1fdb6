# aarch64 (the RK3588/RK3576 boards), cross-built here and run under qemu-user.
#
#   make check-aarch64   installs the cross toolchain from Debian's packages when it is
#                        missing (scripts/ensure-aarch64-tools.sh), cross-builds the
#                        workspace for aarch64-unknown-linux-gnu into target/aarch64, then
#                        runs under qemu-aarch64: the Rust suite in both runtime ABIs
#                        (with the simulator variants built for aarch64), the C and C++
#                        API tests (no sanitizers, no valgrind) and the demo
#
# Rust is Debian's rustc-web/cargo-web in /usr/bin with libstd-rust-web-dev:arm64;
# /usr/bin comes first in PATH so that rustup's shims are not used. Everything
# runs inside scripts/with-aarch64-binfmt.sh: emulated programs start emulated
# programs (rkl-host, rkl-cache, tests re-running themselves), which needs a
# binfmt_misc registration; that script makes a private one.
# Host builds are untouched: Rust builds into target/aarch64, C into build/aarch64.

A64_TRIPLE  := aarch64-unknown-linux-gnu
A64_CARGO_DIR := $(TARGET)/aarch64
# Cargo's output for the target (what target/ is for the host builds).
A64_OUT     := $(A64_CARGO_DIR)/$(A64_TRIPLE)
A64_BUILD   := $(CURDIR)/build/aarch64
A64_STAGE   := $(A64_BUILD)/stage
A64_CBUILD  := $(A64_BUILD)/c
A64_SIM_LIB := $(A64_OUT)/debug/librkllmrt.so
A64_CC      := aarch64-linux-gnu-gcc
A64_CXX     := aarch64-linux-gnu-g++
A64_STAGE_PC = PKG_CONFIG_PATH=$(A64_STAGE)/lib/pkgconfig PKG_CONFIG_LIBDIR=$(A64_STAGE)/lib/pkgconfig $(PKG_CONFIG)

# The environment of every aarch64 step. CARGO_BUILD_TARGET and
# CARGO_TARGET_DIR make a plain `cargo build` (as in `make install`) build
# for aarch64 into target/aarch64.
A64_ENV := PATH=/usr/bin:/bin:$$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo \
  CARGO_BUILD_TARGET=$(A64_TRIPLE) CARGO_TARGET_DIR=$(A64_CARGO_DIR) \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$(A64_CC) \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64 \
  CC_aarch64_unknown_linux_gnu=$(A64_CC) CXX_aarch64_unknown_linux_gnu=$(A64_CXX)
A64_CARGO := $(A64_ENV) /usr/bin/cargo

A64_C_TEST_ENV := RKL_RUNTIME=$(A64_SIM_LIB) RKLLM_SIM_TIME_SCALE=0 RKL_TEST_TMP=$(A64_CBUILD)/tmp

.PHONY: check-aarch64 aarch64-tools aarch64-all aarch64-build aarch64-sim-variants aarch64-test-rust \
        aarch64-stage aarch64-c-check aarch64-demo

check-aarch64: aarch64-tools
	@scripts/with-aarch64-binfmt.sh $(MAKE) --no-print-directory aarch64-all
	@echo "make check-aarch64: all passed"

aarch64-tools:
	@scripts/ensure-aarch64-tools.sh

# The steps, in order (run inside the binfmt namespace by check-aarch64).
aarch64-all:
	@$(MAKE) --no-print-directory aarch64-test-rust
	@$(MAKE) --no-print-directory aarch64-c-check
	@$(MAKE) --no-print-directory aarch64-demo

aarch64-build:
	$(A64_CARGO) build --workspace --tests

# As sim-variants, for aarch64. The tests look for target/sim-<variant>/debug
# beside the deps/ their executable is in, which for a cross build is
# target/aarch64/aarch64-unknown-linux-gnu/sim-<variant>/debug; cargo puts a
# cross build one level deeper, so the library is copied there.
aarch64-sim-variants:
	@for v in $(SIM_VARIANTS); do \
	  f="--features $$v"; [ $$v = default ] && f=""; \
	  $(A64_ENV) /usr/bin/cargo build -q -p rkllm-sim $$f --target-dir $(A64_CARGO_DIR)/sim-$$v || exit 1; \
	  mkdir -p $(A64_OUT)/sim-$$v/debug; \
	  cp -p $(A64_CARGO_DIR)/sim-$$v/$(A64_TRIPLE)/debug/librkllmrt.so $(A64_OUT)/sim-$$v/debug/ || exit 1; \
	done

# qemu-user's own code cache is part of the tested process's RSS and grows
# as late paths get translated: the stress test's RSS allowance is larger
# here (natively it is 2 MiB; growth seen here: about 2 MiB).
# The crate's doctest finds the runtime through RKL_RUNTIME (natively it
# falls back to target/debug, an x86-64 build here).
A64_TEST_ENV := RKL_RSS_GROWTH_KIB=8192 RKL_RUNTIME=$(A64_OUT)/sim-default/debug/librkllmrt.so
aarch64-test-rust: aarch64-build aarch64-sim-variants
	RKLLM_SIM_ABI=1.2 RKL_FUZZ_SEED=$(FUZZ_SEED) $(A64_TEST_ENV) $(A64_CARGO) test --workspace --exclude rkl-cli
	RKLLM_SIM_ABI=1.3 RKL_FUZZ_SEED=$(FUZZ_SEED) $(A64_TEST_ENV) $(A64_CARGO) test --workspace --exclude rkl-cli

# The staged install of `make stage`, built for aarch64 (debug profile).
aarch64-stage:
	$(A64_CARGO) build -p rkllm-sim
	@mkdir -p $(A64_BUILD)
	@$(A64_ENV) $(MAKE) --no-print-directory install RKL_PROFILE=debug CARGO=/usr/bin/cargo \
	  TARGET=$(A64_OUT) NATIVE_LIBS=$(A64_BUILD)/native-static-libs.txt DESTDIR= PREFIX=$(A64_STAGE) \
	  LIBDIR=$(A64_STAGE)/lib INCDIR=$(A64_STAGE)/include PCDIR=$(A64_STAGE)/lib/pkgconfig \
	  BINDIR=$(A64_STAGE)/bin LIBEXECDIR=$(A64_STAGE)/libexec

# The C tests (plain builds) in both runtime ABIs, the C++ wrapper's tests,
# and test_api linked statically, all without sanitizers.
aarch64-c-check: aarch64-stage
	@mkdir -p $(A64_CBUILD)/tmp
	@for t in $(C_TESTS); do \
	  echo "  CC $$t (aarch64)"; \
	  $(A64_CC) $(C_STD_FLAGS) -O1 tests/c/$$t.c -o $(A64_CBUILD)/$$t \
	    $$($(A64_STAGE_PC) --cflags --libs rkl) -lpthread -lm -Wl,-rpath,$(A64_STAGE)/lib || exit 1; \
	done
	$(A64_CC) $(C_STD_FLAGS) -x c -c tests/c/header_only.c -o $(A64_CBUILD)/header-c99.o $$($(A64_STAGE_PC) --cflags rkl)
	$(A64_CXX) -std=c++11 $(CXX_STD_FLAGS) -x c++ -c tests/c/header_only.c -o $(A64_CBUILD)/header-cxx11.o \
	  $$($(A64_STAGE_PC) --cflags rkl)
	$(A64_CXX) -std=c++17 $(CXX_STD_FLAGS) tests/c/test_cpp.cpp -o $(A64_CBUILD)/test_cpp \
	  $$($(A64_STAGE_PC) --cflags --libs rkl) -lpthread -Wl,-rpath,$(A64_STAGE)/lib
	$(A64_CXX) -std=c++17 $(CXX_STD_FLAGS) tests/c/test_cache_cpp.cpp -o $(A64_CBUILD)/test_cache_cpp \
	  $$($(A64_STAGE_PC) --cflags --libs rkl) -lpthread -Wl,-rpath,$(A64_STAGE)/lib
	$(A64_CC) $(C_STD_FLAGS) tests/c/test_api.c -o $(A64_CBUILD)/test_api-static $$($(A64_STAGE_PC) --cflags rkl) \
	  $$($(A64_STAGE_PC) --static --libs rkl | sed 's/-lrkl\b/-Wl,-Bstatic -lrkl -Wl,-Bdynamic/') -lpthread -lm
	@if readelf -d $(A64_CBUILD)/test_api-static | grep -q 'librkl\.so'; then \
	  echo "test_api-static still needs librkl.so"; exit 1; fi
	@for abi in 1.2 1.3; do for t in $(C_TESTS) test_cpp test_cache_cpp; do \
	  echo "== $$t, ABI $$abi, aarch64 (qemu)"; \
	  $(A64_C_TEST_ENV) RKLLM_SIM_ABI=$$abi qemu-aarch64 $(A64_CBUILD)/$$t || exit 1; \
	done; done
	@echo "== test_api linked statically, aarch64 (qemu)"
	@$(A64_C_TEST_ENV) RKL_TEST_QUICK=1 RKLLM_SIM_ABI=1.3 qemu-aarch64 $(A64_CBUILD)/test_api-static
	@echo "C API tests on aarch64: all passed"

# `make demo`, for aarch64 under qemu.
aarch64-demo: aarch64-stage
	@mkdir -p $(A64_CBUILD)/demo-cache
	$(A64_CC) $(C_STD_FLAGS) examples/c/chat.c -o $(A64_CBUILD)/chat \
	  $$($(A64_STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$(A64_STAGE)/lib
	$(A64_CC) $(C_STD_FLAGS) examples/c/cache_demo.c -o $(A64_CBUILD)/cache_demo \
	  $$($(A64_STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$(A64_STAGE)/lib
	@echo
	RKL_RUNTIME=$(A64_SIM_LIB) qemu-aarch64 $(A64_CBUILD)/chat examples/c/demo-model.txt \
	  "Hello! Who are you, and what can you do?"
	@echo
	RKL_RUNTIME=$(A64_SIM_LIB) qemu-aarch64 $(A64_CBUILD)/cache_demo examples/c/cache-demo-model.txt $(A64_CBUILD)/demo-cache
	@echo
	qemu-aarch64 $(A64_STAGE)/bin/rkl-cache list $(A64_CBUILD)/demo-cache

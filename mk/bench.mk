# Benchmarks (BENCHMARKS.md).
#
#   make bench        release build of everything (rkl, the simulator, the C,
#                     Go, Node and Python drivers in bench/), the full run,
#                     then BENCHMARKS.md and bench/plots/*.png are rewritten
#                     from it (commit them). A few minutes on 2 cores.
#   make bench-smoke  the same drivers on the debug builds with tiny sizes,
#                     written to build/bench-smoke/ (part of `make check`, so
#                     the benchmarks cannot rot; seconds).
#
# The drivers print "BENCH {json}" lines; bench/run.py runs them, summarises
# and renders the tables and plots (matplotlib from PyPI in a venv under
# build/bench). Go and Node come from Debian's packages and koffi from npm,
# as for the bindings (mk/bindings.mk).

BENCH_BUILD := $(CURDIR)/build/bench
BENCH_VENV  := $(BENCH_BUILD)/venv
BENCH_SMOKE := $(CURDIR)/build/bench-smoke
BENCH_CFLAGS := -std=c11 -O2 -Wall -Wextra -Werror -g

.PHONY: bench bench-smoke bench-run bench-drivers

CHECK_EXTRA += bench-smoke

$(BENCH_VENV)/.ready: bench/requirements.txt
	@$(MAKE) --no-print-directory bindings-tools
	rm -rf $(BENCH_VENV)
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
	@touch $@

# The drivers for one cargo profile: $(MAKE) bench-drivers BENCH_PROFILE=release|debug
# BENCH_OUT=dir. librkl is linked from target/$(BENCH_PROFILE) through a
# folder that also holds its soname link, and a pkg-config file for cgo.
BENCH_PROFILE ?= release
BENCH_OUT     ?= $(BENCH_BUILD)/$(BENCH_PROFILE)
BENCH_LIBDIR   = $(BENCH_OUT)/lib
BENCH_GO_ENV   = GOPATH=$(CURDIR)/build/bindings/go GOCACHE=$(CURDIR)/build/bindings/go-cache \
                 GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off GOTELEMETRY=off CGO_ENABLED=1 \
                 PKG_CONFIG_PATH=$(BENCH_LIBDIR)/pkgconfig

bench-drivers:
	@mkdir -p $(BENCH_LIBDIR)/pkgconfig
	ln -sf $(TARGET)/$(BENCH_PROFILE)/librkl.so $(BENCH_LIBDIR)/librkl.so
	ln -sf $(TARGET)/$(BENCH_PROFILE)/librkl.so $(BENCH_LIBDIR)/librkl.so.0
	@printf 'Name: rkl\nDescription: rkl (bench build)\nVersion: $(RKL_VERSION)\nCflags: -I$(CURDIR)/include\nLibs: -L$(BENCH_LIBDIR) -lrkl -Wl,-rpath,$(BENCH_LIBDIR)\n' \
	  > $(BENCH_LIBDIR)/pkgconfig/rkl.pc
	$(CC) $(BENCH_CFLAGS) -shared -fPIC bench/c/malloc_count.c -o $(BENCH_OUT)/malloc_count.so
	$(CC) $(BENCH_CFLAGS) bench/c/raw_rkllm.c -o $(BENCH_OUT)/raw_rkllm \
	  -L$(TARGET)/$(BENCH_PROFILE) -lrkllmrt -Wl,-rpath,$(TARGET)/$(BENCH_PROFILE) -lpthread -ldl
	$(CC) $(BENCH_CFLAGS) -Iinclude bench/c/rkl_bench.c -o $(BENCH_OUT)/rkl_bench \
	  -L$(BENCH_LIBDIR) -lrkl -Wl,-rpath,$(BENCH_LIBDIR) -lpthread -ldl
	cd bench/go && $(BENCH_GO_ENV) go build -o $(BENCH_OUT)/go-bench .

# One run of bench/run.py: BENCH_MODE=full|smoke, the drivers in $(BENCH_OUT),
# the Rust benches' output in $(BENCH_OUT)/rust.txt (benches/generate.rs) and
# $(BENCH_OUT)/rust-cache.txt (benches/cache_load.rs, run with the cache sizes
# of bench/run.py's mode: BENCH_CACHE_MIB / BENCH_SMOKE_CACHE_MIB below) and
# $(BENCH_OUT)/rust-auto-cache.txt (benches/auto_cache.rs: automatic caching
# at the real time scale; the smoke run shrinks it with BENCH_SMOKE_AUTO_ENV).
# cli/benches/serve.rs (rkl serve vs the library, TTFT with automatic
# caching through the server) writes $(BENCH_OUT)/rust-serve.txt and
# benches/image_input.rs (passing a 576 x 1536 image) rust-image.txt:
# sections 8 and 9 of the report.
BENCH_MODE ?= full
BENCH_MD    ?= $(CURDIR)/BENCHMARKS.md
BENCH_PLOTS ?= $(CURDIR)/bench/plots
BENCH_TARGET_NAME ?= bench
BENCH_CACHE_MIB       := 8,33,256
BENCH_SMOKE_CACHE_MIB := 1
# benches/auto_cache.rs in the smoke run: a shorter system prompt, a tenth of
# the real time, small caches, few rounds (well under a second of sleeping).
BENCH_SMOKE_AUTO_ENV  := RKL_BENCH_ROUNDS=2 RKL_BENCH_PAIRS=2 RKL_BENCH_LOOKUPS=40 \
                         RKL_BENCH_PREFIX_TOKENS=100 RKL_BENCH_TIME_SCALE=0.1 RKL_BENCH_KV_BYTES=4096

bench-run:
	$(BENCH_VENV)/bin/python bench/run.py --mode $(BENCH_MODE) --bin $(BENCH_OUT) \
	  --sim $(TARGET)/$(BENCH_PROFILE)/librkllmrt.so --lib $(BENCH_LIBDIR)/librkl.so.0 \
	  --work $(BENCH_OUT)/work --md $(BENCH_MD) --plots $(BENCH_PLOTS) --json $(BENCH_OUT)/results.json \
	  --rust $(BENCH_OUT)/rust.txt --rust-cache $(BENCH_OUT)/rust-cache.txt \
	  --rust-auto $(BENCH_OUT)/rust-auto-cache.txt --rust-image $(BENCH_OUT)/rust-image.txt \
	  --rust-serve $(BENCH_OUT)/rust-serve.txt --go-bin $(BENCH_OUT)/go-bench --python $(BENCH_VENV)/bin/python \
	  --node node --node-path $(NODE_APP)/node_modules --host $(TARGET)/$(BENCH_PROFILE)/rkl-host --cmdline "make $(BENCH_TARGET_NAME)"

# Everything in release mode: the workspace (librkl, rkl-cache and the
# simulator: `cargo build --release -p rkllm-sim` is part of it), the Rust
# bench (cargo's bench profile is the release profile), the drivers.
bench: build-release bindings-tools $(NODE_APP)/.ready $(BENCH_VENV)/.ready
	$(CARGO) build --release -p rkllm-sim
	@$(MAKE) --no-print-directory bench-drivers BENCH_PROFILE=release BENCH_OUT=$(BENCH_BUILD)/release
	RKL_BENCH_SIM=$(TARGET)/release/librkllmrt.so RKLLM_SIM_ABI=1.3 \
	  $(CARGO) bench --bench generate > $(BENCH_BUILD)/release/rust.txt
	RKL_BENCH_CACHE_MIB=$(BENCH_CACHE_MIB) $(CARGO) bench --bench cache_load > $(BENCH_BUILD)/release/rust-cache.txt
	RKL_BENCH_SIM=$(TARGET)/release/librkllmrt.so RKLLM_SIM_ABI=1.3 \
	  $(CARGO) bench --bench auto_cache > $(BENCH_BUILD)/release/rust-auto-cache.txt
	RKL_BENCH_SIM=$(TARGET)/release/librkllmrt.so RKLLM_SIM_ABI=1.3 \
	  $(CARGO) bench --bench image_input > $(BENCH_BUILD)/release/rust-image.txt
	RKLLM_SIM_ABI=1.3 $(CARGO) bench -p rkl-cli --bench serve > $(BENCH_BUILD)/release/rust-serve.txt
	@cat $(BENCH_BUILD)/release/rust-serve.txt
	@$(MAKE) --no-print-directory bench-run BENCH_MODE=full BENCH_PROFILE=release \
	  BENCH_OUT=$(BENCH_BUILD)/release BENCH_TARGET_NAME=bench

# The smoke run uses the debug builds `make check` has already made (the Rust
# bench too, in the dev profile), so it adds seconds, not a release build.
bench-smoke: stage bindings-tools $(NODE_APP)/.ready $(BENCH_VENV)/.ready
	@$(MAKE) --no-print-directory bench-drivers BENCH_PROFILE=debug BENCH_OUT=$(BENCH_SMOKE)
	RKL_BENCH_SIM=$(TARGET)/debug/librkllmrt.so RKLLM_SIM_ABI=1.3 RKL_BENCH_ROUNDS=2 \
	  $(CARGO) bench -q --profile dev --bench generate > $(BENCH_SMOKE)/rust.txt
	RKL_BENCH_CACHE_MIB=$(BENCH_SMOKE_CACHE_MIB) RKL_BENCH_ROUNDS=2 \
	  $(CARGO) bench -q --profile dev --bench cache_load > $(BENCH_SMOKE)/rust-cache.txt
	RKL_BENCH_SIM=$(TARGET)/debug/librkllmrt.so RKLLM_SIM_ABI=1.3 $(BENCH_SMOKE_AUTO_ENV) \
	  $(CARGO) bench -q --profile dev --bench auto_cache > $(BENCH_SMOKE)/rust-auto-cache.txt
	$(CARGO) build -q -p rkl-cli -p rkllm-sim
	$(CARGO) build -q -p rkl --bin rkl-host
	RKL_BENCH_SIM=$(TARGET)/debug/librkllmrt.so RKL_BENCH_HOST=$(TARGET)/debug/rkl-host RKLLM_SIM_ABI=1.3 \
	  RKL_BENCH_ROUNDS=2 $(CARGO) bench -q --profile dev --bench image_input > $(BENCH_SMOKE)/rust-image.txt
	@grep -q '"name":"image_isolated_image_cost_ms"' $(BENCH_SMOKE)/rust-image.txt
	RKLLM_SIM_ABI=1.3 RKL_BENCH_ROUNDS=5 RKL_BENCH_TIME_SCALE=0.05 \
	  $(CARGO) bench -q -p rkl-cli --profile dev --bench serve > $(BENCH_SMOKE)/rust-serve.txt
	@grep -q '"name":"serve_ttft_second_ms"' $(BENCH_SMOKE)/rust-serve.txt
	@$(MAKE) --no-print-directory bench-run BENCH_MODE=smoke BENCH_PROFILE=debug BENCH_OUT=$(BENCH_SMOKE) \
	  BENCH_MD=$(BENCH_SMOKE)/BENCHMARKS.md BENCH_PLOTS=$(BENCH_SMOKE)/plots BENCH_TARGET_NAME=bench-smoke \
	  > $(BENCH_SMOKE)/report.txt
	@test -s $(BENCH_SMOKE)/plots/per_token.png && test -s $(BENCH_SMOKE)/plots/cache_ttft.png
	@grep -q '| hash in place |' $(BENCH_SMOKE)/BENCHMARKS.md
	@grep -q '^## 7. Automatic prompt caching' $(BENCH_SMOKE)/BENCHMARKS.md
	@grep -q '| fresh model on the same directory (cache from disk) |' $(BENCH_SMOKE)/BENCHMARKS.md
	@grep -q '| zero-cost simulator |' $(BENCH_SMOKE)/BENCHMARKS.md
	@grep -q '^## 8. Passing an image embedding' $(BENCH_SMOKE)/BENCHMARKS.md
	@grep -q '| second request (cache hit) |' $(BENCH_SMOKE)/BENCHMARKS.md
	@echo "bench-smoke: every benchmark ran (report: build/bench-smoke/BENCHMARKS.md)"

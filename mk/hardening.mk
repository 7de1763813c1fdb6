# Hardening: the long C loop under leak checkers, and longer runs of the
# fuzzers and stress tests than `make check` does.
#
# The property tests, fuzzers and stress tests themselves are Rust
# integration tests (tests/prop_utf8.rs, tests/fuzz_c_api.rs,
# tests/fuzz_cache.rs, tests/stress.rs) and run in `make test-rust`, bounded:
# full size in the default-ABI run (1.3), a third in the 1.2 run.
# tests/stress.rs stresses both modes: in-process, and isolation mode with
# worker crashes (a model that dies of SIGSEGV, workers killed, restarts);
# RKL_HARDENING_SCALE sets the volume of both (3,200 operations each at 1).
#
#   make c-stress     tests/c/test_stress.c: a long open/generate/stream/
#                     abort/cache/close loop under LeakSanitizer (ASan) and
#                     valgrind (part of `make check`); RKL_STRESS_CYCLES sets
#                     the number of cycles (default 1000, 200 under valgrind;
#                     the runtime version lines are filtered from the output)
#   make hardening    the fuzzers and stress tests at FUZZ_SCALE times their
#                     `make check` size (default 20), release build; seeds are
#                     printed, RKL_FUZZ_SEED=... replays one

FUZZ_SCALE      ?= 20
STRESS_CYCLES    ?= 1000
VG_STRESS_CYCLES ?= 200

.PHONY: c-stress hardening

CHECK_EXTRA += c-stress

c-stress: stage
	@mkdir -p $(CBUILD)/tmp
	$(CC) $(C_STD_FLAGS) $(SAN_FLAGS) tests/c/test_stress.c -o $(CBUILD)/test_stress-asan \
	  $$($(STAGE_PC) --cflags --libs rkl) -lpthread -ldl -Wl,-rpath,$(STAGE)/lib
	$(CC) $(C_STD_FLAGS) -O1 tests/c/test_stress.c -o $(CBUILD)/test_stress \
	  $$($(STAGE_PC) --cflags --libs rkl) -lpthread -ldl -Wl,-rpath,$(STAGE)/lib
	@echo "== test_stress, ABI 1.3, ASan+UBSan+LeakSanitizer, $(STRESS_CYCLES) cycles"
	@$(C_TEST_ENV) $(ASAN_ENV) RKLLM_SIM_ABI=1.3 RKL_STRESS_CYCLES=$(STRESS_CYCLES) $(CBUILD)/test_stress-asan \
	  > $(CBUILD)/test_stress-asan.out; st=$$?; grep -v '^I rkllm' $(CBUILD)/test_stress-asan.out; exit $$st
	@echo "== test_stress, ABI 1.2, valgrind, $(VG_STRESS_CYCLES) cycles"
	@$(C_TEST_ENV) RKLLM_SIM_ABI=1.2 RKL_STRESS_CYCLES=$(VG_STRESS_CYCLES) $(VALGRIND) $(CBUILD)/test_stress \
	  > $(CBUILD)/test_stress.out; st=$$?; grep -v '^I rkllm' $(CBUILD)/test_stress.out; exit $$st

hardening: build sim-variants
	RKL_HARDENING_SCALE=$(FUZZ_SCALE) $(CARGO) test --release --test prop_utf8 --test fuzz_c_api \
	  --test fuzz_cache --test stress -- --nocapture

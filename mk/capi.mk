# The C API: install, the staged install used by the demo and the C tests,
# the C/C++ tests under ASan+UBSan and valgrind, and the header check.
#
#   make install PREFIX=/usr/local DESTDIR=   release build: librkl.so.X.Y.Z (+ .so.X, .so
#                                             links), librkl.a, rkl.h, rkl.hpp, rkl.pc, and
#                                             the rkl and rkl-cache tools in $(BINDIR), and rkl-host
#                                             (isolation mode's worker) in $(LIBEXECDIR), their
#                                             man pages (man/) in $(MANDIR)/man1
#   make demo                                 examples/c/chat.c, then examples/c/cache_demo.c
#                                             (TTFT without and with a prompt cache), then
#                                             `rkl serve` answering one streamed curl request,
#                                             against the simulator
#   make c-check                              all C tests (part of `make check`)
#   make header                               regenerate include/rkl.h (then commit it)
#   make check-header                         fail if include/rkl.h is stale

PKG_CONFIG ?= pkg-config
CXX        ?= c++
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
# librkl finds rkl-host in ../libexec from its own directory (or RKL_HOST).
LIBEXECDIR ?= $(PREFIX)/libexec
# Which cargo profile `make install` ships; the staged install uses debug.
RKL_PROFILE ?= release

RKL_VERSION := $(shell sed -n 's/^version = "\([^"]*\)"/\1/p' $(CURDIR)/Cargo.toml | head -n 1)
RKL_SOMAJOR := $(firstword $(subst ., ,$(RKL_VERSION)))

CBUILD     := $(CURDIR)/build/c
STAGE_PC   := PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig $(PKG_CONFIG)
NATIVE_LIBS := $(CURDIR)/build/native-static-libs.txt

C_STD_FLAGS   := -std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -g
CXX_STD_FLAGS := -Wall -Wextra -Werror -pedantic -g
SAN_FLAGS     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# What the tests need at run time: the simulator as the runtime.
C_TEST_ENV    := RKL_RUNTIME=$(SIM_LIB) RKLLM_SIM_TIME_SCALE=0 RKL_TEST_TMP=$(CBUILD)/tmp
ASAN_ENV      := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
VALGRIND      := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                 --show-leak-kinds=definite --track-origins=no

C_TESTS := test_api test_misuse test_cache test_isolation test_inputs test_stream_read

.PHONY: install stage demo c-check c-build c-asan c-valgrind c-cxx c-static header check-header lib-build

CHECK_EXTRA += check-header c-check

# ---------------------------------------------------------------- install

lib-build:
ifeq ($(RKL_PROFILE),release)
	$(CARGO) build -p rkl --lib --bin rkl-cache --bin rkl-host --release
	$(CARGO) build -p rkl-cli --release
else
	$(CARGO) build -p rkl --lib --bin rkl-cache --bin rkl-host
	$(CARGO) build -p rkl-cli
endif

# Libs.private for the static library, as rustc reports it. Asked once (it
# needs a build of its own, in its own target dir) and cached.
$(NATIVE_LIBS): Cargo.toml
	@mkdir -p $(dir $@)
	@rm -rf $(TARGET)/native-libs-probe
	@$(CARGO) rustc -q -p rkl --lib --crate-type staticlib --target-dir $(TARGET)/native-libs-probe \
	  -- --print native-static-libs 2>&1 \
	  | sed -n 's/.*native-static-libs: *//p' | tail -n 1 > $@.tmp
	@test -s $@.tmp || { echo "could not learn the native libraries of librkl.a"; rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@
	@echo "librkl.a needs: $$(cat $@)"

install: lib-build $(NATIVE_LIBS)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
	  $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/rkl.1 man/rkl-cache.1 man/rkl-host.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0755 $(TARGET)/$(RKL_PROFILE)/rkl-cache $(DESTDIR)$(BINDIR)/rkl-cache
	install -m 0755 $(TARGET)/$(RKL_PROFILE)/rkl $(DESTDIR)$(BINDIR)/rkl
	install -m 0755 $(TARGET)/$(RKL_PROFILE)/rkl-host $(DESTDIR)$(LIBEXECDIR)/rkl-host
	install -m 0755 $(TARGET)/$(RKL_PROFILE)/librkl.so $(DESTDIR)$(LIBDIR)/librkl.so.$(RKL_VERSION)
	ln -sf librkl.so.$(RKL_VERSION) $(DESTDIR)$(LIBDIR)/librkl.so.$(RKL_SOMAJOR)
	ln -sf librkl.so.$(RKL_SOMAJOR) $(DESTDIR)$(LIBDIR)/librkl.so
	install -m 0644 $(TARGET)/$(RKL_PROFILE)/librkl.a $(DESTDIR)$(LIBDIR)/librkl.a
	install -m 0644 include/rkl.h include/rkl.hpp $(DESTDIR)$(INCDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(RKL_VERSION)|' -e "s|@LIBS_PRIVATE@|$$(cat $(NATIVE_LIBS))|" \
	    pkgconfig/rkl.pc.in > $(DESTDIR)$(PCDIR)/rkl.pc

# A private install into $(STAGE), exactly as a user's, plus the simulator.
stage:
	$(CARGO) build -p rkllm-sim
	@$(MAKE) --no-print-directory install RKL_PROFILE=debug DESTDIR= PREFIX=$(STAGE) \
	  LIBDIR=$(STAGE)/lib INCDIR=$(STAGE)/include PCDIR=$(STAGE)/lib/pkgconfig BINDIR=$(STAGE)/bin \
	  LIBEXECDIR=$(STAGE)/libexec MANDIR=$(STAGE)/share/man

# ---------------------------------------------------------------- demo

demo: stage
	@mkdir -p $(CBUILD)
	$(CC) $(C_STD_FLAGS) examples/c/chat.c -o $(CBUILD)/chat \
	  $$($(STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$$($(STAGE_PC) --variable=libdir rkl)
	@echo
	RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/chat examples/c/demo-model.txt \
	  "Hello! Who are you, and what can you do?"
	$(CC) $(C_STD_FLAGS) examples/c/cache_demo.c -o $(CBUILD)/cache_demo \
	  $$($(STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$$($(STAGE_PC) --variable=libdir rkl)
	@mkdir -p $(CBUILD)/demo-cache
	@echo
	RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/cache_demo examples/c/cache-demo-model.txt $(CBUILD)/demo-cache
	@echo
	$(STAGE)/bin/rkl-cache list $(CBUILD)/demo-cache
	@echo
	@scripts/ensure-cli-tools.sh
	RKL_RUNTIME=$(SIM_LIB) scripts/demo-serve.sh $(STAGE)/bin/rkl examples/c/demo-model.txt $(CBUILD)/demo-serve

# The examples' exit status: chat answers (0), fails a generation (1),
# cannot open the model (1), is misused (2).
.PHONY: check-c-examples
CHECK_EXTRA += check-c-examples

check-c-examples: stage
	@mkdir -p $(CBUILD)/tmp
	$(CC) $(C_STD_FLAGS) examples/c/chat.c -o $(CBUILD)/chat \
	  $$($(STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$$($(STAGE_PC) --variable=libdir rkl)
	@printf 'reply = one two three four five\nfault = error@token:3\n' > $(CBUILD)/tmp/failing-model.txt
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/chat examples/c/demo-model.txt hi < /dev/null > /dev/null \
	  || { echo "chat: exit $$? on success"; exit 1; }
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/chat $(CBUILD)/tmp/failing-model.txt hi < /dev/null > /dev/null 2>&1; \
	  s=$$?; [ $$s -eq 1 ] || { echo "chat: exit $$s when generation fails, expected 1"; exit 1; }
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/chat /nonexistent/model hi < /dev/null > /dev/null 2>&1; \
	  s=$$?; [ $$s -eq 1 ] || { echo "chat: exit $$s when the model is missing, expected 1"; exit 1; }
	@$(CBUILD)/chat > /dev/null 2>&1; \
	  s=$$?; [ $$s -eq 2 ] || { echo "chat: exit $$s without arguments, expected 2"; exit 1; }
	@echo "examples/c/chat.c: exit statuses as documented"
	$(CC) $(C_STD_FLAGS) examples/c/image_chat.c -o $(CBUILD)/image_chat \
	  $$($(STAGE_PC) --cflags --libs rkl) -Wl,-rpath,$$($(STAGE_PC) --variable=libdir rkl)
	$(CC) $(C_STD_FLAGS) examples/c/embed.c -o $(CBUILD)/embed \
	  $$($(STAGE_PC) --cflags --libs rkl) -lm -Wl,-rpath,$$($(STAGE_PC) --variable=libdir rkl)
	@printf 'RKLLM-SIM 1\ntime_scale = 0\nhidden_size = 16\nreply = I see {input} for: {prompt}\n' > $(CBUILD)/tmp/vl-model.txt
	@python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<%df" % (4*16), *[i/64 for i in range(4*16)]))' \
	  > $(CBUILD)/tmp/image.f32
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/image_chat $(CBUILD)/tmp/vl-model.txt $(CBUILD)/tmp/image.f32 4 16 "What is this?" \
	  > $(CBUILD)/tmp/image_chat.out && grep -q 'I see multimodal images=1 tokens=4 .* for: <image>What is this?' $(CBUILD)/tmp/image_chat.out \
	  || { cat $(CBUILD)/tmp/image_chat.out; echo "image_chat: unexpected answer"; exit 1; }
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/image_chat $(CBUILD)/tmp/vl-model.txt $(CBUILD)/tmp/image.f32 5 16 "x" > /dev/null 2>&1; \
	  s=$$?; [ $$s -eq 1 ] || { echo "image_chat: exit $$s on a short file, expected 1"; exit 1; }
	@RKL_RUNTIME=$(SIM_LIB) $(CBUILD)/embed $(CBUILD)/tmp/vl-model.txt "Retrieve me." > $(CBUILD)/tmp/embed.out \
	  && grep -q '^[0-9]* tokens -> 16 dims:' $(CBUILD)/tmp/embed.out \
	  || { cat $(CBUILD)/tmp/embed.out; echo "embed: unexpected output"; exit 1; }
	@echo "examples/c/image_chat.c and embed.c: answer as documented"

# ---------------------------------------------------------------- C tests

header:
	RKL_BLESS=1 $(CARGO) test -q --test header

check-header:
	$(CARGO) test -q --test header

c-build: stage
	@mkdir -p $(CBUILD)/tmp
	@for t in $(C_TESTS); do \
	  echo "  CC $$t (asan+ubsan, plain)"; \
	  $(CC) $(C_STD_FLAGS) $(SAN_FLAGS) tests/c/$$t.c -o $(CBUILD)/$$t-asan \
	    $$($(STAGE_PC) --cflags --libs rkl) -lpthread -lm -Wl,-rpath,$(STAGE)/lib || exit 1; \
	  $(CC) $(C_STD_FLAGS) -O1 tests/c/$$t.c -o $(CBUILD)/$$t \
	    $$($(STAGE_PC) --cflags --libs rkl) -lpthread -lm -Wl,-rpath,$(STAGE)/lib || exit 1; \
	done

# Every test program in both runtime ABIs under ASan+UBSan.
c-asan: c-build
	@for abi in 1.2 1.3; do for t in $(C_TESTS); do \
	  echo "== $$t, ABI $$abi, ASan+UBSan"; \
	  $(C_TEST_ENV) $(ASAN_ENV) RKLLM_SIM_ABI=$$abi $(CBUILD)/$$t-asan || exit 1; \
	done; done

# Every test program in both runtime ABIs under valgrind (the plain builds;
# valgrind and ASan do not mix). Definite leaks are errors; the runtime's
# dispatcher thread lives for the whole process, so its allocations show as
# "possibly lost" and are not reported. No suppressions are needed.
c-valgrind: c-build
	@for abi in 1.2 1.3; do for t in $(C_TESTS); do \
	  echo "== $$t, ABI $$abi, valgrind"; \
	  $(C_TEST_ENV) RKLLM_SIM_ABI=$$abi $(VALGRIND) $(CBUILD)/$$t || exit 1; \
	done; done

# The header alone as C99 and C++11, the C++17 wrapper's test, and
# test_stream_read.c (C99 above) as C++11.
c-cxx: stage
	@mkdir -p $(CBUILD)
	@echo "== rkl.h as C99 and C++11, rkl.hpp as C++17"
	$(CC) $(C_STD_FLAGS) -x c -c tests/c/header_only.c -o $(CBUILD)/header-c99.o $$($(STAGE_PC) --cflags rkl)
	$(CXX) -std=c++11 $(CXX_STD_FLAGS) -x c++ -c tests/c/header_only.c -o $(CBUILD)/header-cxx11.o $$($(STAGE_PC) --cflags rkl)
	$(CXX) -std=c++17 $(CXX_STD_FLAGS) $(SAN_FLAGS) tests/c/test_cpp.cpp -o $(CBUILD)/test_cpp \
	  $$($(STAGE_PC) --cflags --libs rkl) -lpthread -Wl,-rpath,$(STAGE)/lib
	$(CXX) -std=c++17 $(CXX_STD_FLAGS) $(SAN_FLAGS) tests/c/test_cache_cpp.cpp -o $(CBUILD)/test_cache_cpp \
	  $$($(STAGE_PC) --cflags --libs rkl) -lpthread -Wl,-rpath,$(STAGE)/lib
	$(CXX) -std=c++11 $(CXX_STD_FLAGS) $(SAN_FLAGS) -x c++ tests/c/test_stream_read.c -o $(CBUILD)/test_stream_read_cxx \
	  $$($(STAGE_PC) --cflags --libs rkl) -lpthread -Wl,-rpath,$(STAGE)/lib
	@for abi in 1.2 1.3; do for t in test_cpp test_cache_cpp test_stream_read_cxx; do \
	  echo "== $$t, ABI $$abi, ASan+UBSan"; \
	  $(C_TEST_ENV) $(ASAN_ENV) RKLLM_SIM_ABI=$$abi $(CBUILD)/$$t || exit 1; \
	done; done

# Linking librkl.a through `pkg-config --static` (-lrkl made static, the
# native libraries from Libs.private), checked to need no librkl.so.
c-static: stage
	@mkdir -p $(CBUILD)
	@echo "== test_api linked statically"
	$(CC) $(C_STD_FLAGS) tests/c/test_api.c -o $(CBUILD)/test_api-static $$($(STAGE_PC) --cflags rkl) \
	  $$($(STAGE_PC) --static --libs rkl | sed 's/-lrkl\b/-Wl,-Bstatic -lrkl -Wl,-Bdynamic/') -lpthread -lm
	@if readelf -d $(CBUILD)/test_api-static | grep -q 'librkl\.so'; then \
	  echo "test_api-static still needs librkl.so"; exit 1; fi
	@$(C_TEST_ENV) RKL_TEST_QUICK=1 RKLLM_SIM_ABI=1.3 $(CBUILD)/test_api-static

c-check: c-asan c-cxx c-static c-valgrind
	@echo "C API tests: all passed"

# Bindings and examples for Go, Node, Python and C++ (examples/<lang>), each
# tested against the simulator through the staged install ($(STAGE)), the
# way a user's program finds an installed librkl: pkg-config, or the loader.
#
#   make bindings-check   all four (part of `make check`)
#   make go-check         examples/go: go vet, go test -race (both ABIs), cmd/chat
#   make node-check       examples/node: npm ci (koffi), node --test (both ABIs)
#   make py-check         examples/python: pytest in a venv (both ABIs)
#   make cpp-check        examples/cpp: built with -Wall -Wextra -Werror, run (both ABIs)
#
# Tools come from Debian's packages when missing
# (scripts/ensure-bindings-tools.sh); pytest from PyPI into a venv and koffi
# from npm, both under build/ or the example's own folder.

BIND_BUILD := $(CURDIR)/build/bindings
BIND_TMP   := $(BIND_BUILD)/tmp
BIND_ABIS  := 1.2 1.3
# What every binding's tests need at run time: the simulator as the runtime,
# the staged librkl for the loader.
BIND_ENV   := RKL_RUNTIME=$(SIM_LIB) RKLLM_SIM_TIME_SCALE=0 \
              LD_LIBRARY_PATH=$(STAGE)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}

.PHONY: bindings-check bindings-tools go-check node-check py-check cpp-check

CHECK_EXTRA += bindings-check

bindings-check: go-check node-check py-check cpp-check
	@echo "bindings: all passed"

bindings-tools:
	@scripts/ensure-bindings-tools.sh

# A fast model for the example programs' smoke runs.
$(BIND_TMP)/hello.sim:
	@mkdir -p $(dir $@)
	@printf 'RKLLM-SIM 1\nreply = Hello, {prompt}! ✓\ntime_scale = 0\n' > $@

# The hello world of a README (its first ```LANG block), on the fast model:
# $(call snippet,README,LANG)
snippet = awk '$$0 == "```$(2)" { f = 1; next } /^```$$/ { if (f) exit } f' $(1) \
          | sed 's|qwen3-0.6b.rkllm|$(BIND_TMP)/hello.sim|'
comma := ,
HELLO := Hello$(comma) Hello!! ✓
# Runs a program ($(1)) and checks its output for $(2); fails if it fails.
expect = $(1) > $(BIND_BUILD)/out-$@.txt && grep -F '$(2)' $(BIND_BUILD)/out-$@.txt >/dev/null \
         || { cat $(BIND_BUILD)/out-$@.txt; exit 1; }

# ---------------------------------------------------------------- Go
# Nothing is downloaded: the module has no dependencies, GOPROXY is off.
# cgo finds librkl through pkg-config; the rpath lets the binaries find it.
GO_ENV := GOPATH=$(BIND_BUILD)/go GOCACHE=$(BIND_BUILD)/go-cache GOFLAGS=-mod=mod \
          GOTOOLCHAIN=local GOPROXY=off GOTELEMETRY=off CGO_ENABLED=1 \
          PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig CGO_LDFLAGS=-Wl,-rpath,$(STAGE)/lib

go-check: stage bindings-tools $(BIND_TMP)/hello.sim
	@echo "== Go: vet"
	cd examples/go && $(GO_ENV) go vet ./...
	@test -z "$$(cd examples/go && gofmt -l .)" || { echo "gofmt: $$(cd examples/go && gofmt -l .)"; exit 1; }
	@for abi in $(BIND_ABIS); do \
	  echo "== Go: go test -race, ABI $$abi"; \
	  (cd examples/go && $(GO_ENV) $(BIND_ENV) RKLLM_SIM_ABI=$$abi go test -race -count=1 ./...) || exit 1; \
	done
	@echo "== Go: cmd/chat"
	cd examples/go && $(GO_ENV) go build -o $(BIND_BUILD)/go-chat ./cmd/chat
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/go-chat $(BIND_TMP)/hello.sim Go,Hello$(comma) Go! ✓)
	@echo "== Go: README hello world"
	@mkdir -p $(BIND_BUILD)/go-hello
	@printf 'module hello\n\ngo 1.19\n\nrequire rkl v0.0.0\n\nreplace rkl => $(CURDIR)/examples/go\n' \
	  > $(BIND_BUILD)/go-hello/go.mod
	@$(call snippet,examples/go/README.md,go) > $(BIND_BUILD)/go-hello/main.go
	cd $(BIND_BUILD)/go-hello && $(GO_ENV) go build -o hello .
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/go-hello/hello,$(HELLO))

# ---------------------------------------------------------------- Python
PY_VENV := $(BIND_BUILD)/venv

$(PY_VENV)/.ready: examples/python/requirements-test.txt
	@$(MAKE) --no-print-directory bindings-tools
	rm -rf $(PY_VENV)
	python3 -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install -q --disable-pip-version-check -r examples/python/requirements-test.txt
	@touch $@

py-check: stage $(PY_VENV)/.ready $(BIND_TMP)/hello.sim
	@for abi in $(BIND_ABIS); do \
	  echo "== Python: pytest, ABI $$abi"; \
	  $(BIND_ENV) RKLLM_SIM_ABI=$$abi $(PY_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	    examples/python/tests || exit 1; \
	done
	@echo "== Python: README hello world"
	@$(call snippet,examples/python/README.md,python) > $(BIND_BUILD)/hello.py
	$(call expect,$(BIND_ENV) PYTHONPATH=$(CURDIR)/examples/python $(PY_VENV)/bin/python $(BIND_BUILD)/hello.py,$(HELLO))

# ---------------------------------------------------------------- C++
CPP_FLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -g
CPP_LINK   = $$(PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig $(PKG_CONFIG) --cflags --libs rkl) -pthread \
             -Wl,-rpath,$(STAGE)/lib

cpp-check: stage $(BIND_TMP)/hello.sim
	@mkdir -p $(BIND_TMP)
	$(CXX) $(CPP_FLAGS) examples/cpp/chat.cpp -o $(BIND_BUILD)/cpp-chat $(CPP_LINK)
	$(CXX) $(CPP_FLAGS) examples/cpp/test_rkl.cpp -o $(BIND_BUILD)/cpp-test $(CPP_LINK)
	@for abi in $(BIND_ABIS); do \
	  echo "== C++: test_rkl, ABI $$abi"; \
	  $(BIND_ENV) RKL_TEST_TMP=$(BIND_TMP) RKLLM_SIM_ABI=$$abi $(BIND_BUILD)/cpp-test || exit 1; \
	done
	@echo "== C++: chat"
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/cpp-chat $(BIND_TMP)/hello.sim C++ stream,Hello$(comma) stream! ✓)
	@echo "== C++: README hello world"
	@$(call snippet,examples/cpp/README.md,cpp) > $(BIND_BUILD)/hello.cpp
	$(CXX) $(CPP_FLAGS) $(BIND_BUILD)/hello.cpp -o $(BIND_BUILD)/cpp-hello $(CPP_LINK)
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/cpp-hello,$(HELLO))

# ---------------------------------------------------------------- Node
# koffi (and, for the type check, typescript and @types/node) from npm, as
# locked in package-lock.json, into examples/node/node_modules.
NODE_DIR := examples/node

$(NODE_DIR)/node_modules/.ready: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@$(MAKE) --no-print-directory bindings-tools
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-check: stage $(NODE_DIR)/node_modules/.ready $(BIND_TMP)/hello.sim
	@echo "== Node: index.d.ts (tsc --strict)"
	cd $(NODE_DIR) && node_modules/.bin/tsc -p .
	@mkdir -p $(BIND_TMP)
	@for abi in $(BIND_ABIS); do \
	  echo "== Node: node --test, ABI $$abi"; \
	  (cd $(NODE_DIR) && $(BIND_ENV) RKL_TEST_TMP=$(BIND_TMP) RKLLM_SIM_ABI=$$abi node --test test/) || exit 1; \
	done
	@echo "== Node: README hello world"
	@mkdir -p $(BIND_BUILD)/node-path && ln -sfn $(CURDIR)/$(NODE_DIR) $(BIND_BUILD)/node-path/rkl
	@$(call snippet,$(NODE_DIR)/README.md,js) > $(BIND_BUILD)/hello.js
	$(call expect,$(BIND_ENV) NODE_PATH=$(BIND_BUILD)/node-path node $(BIND_BUILD)/hello.js,$(HELLO))

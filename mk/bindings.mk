# The bindings (bindings/<lang>) and the example programs that use them
# (examples/<lang>), each tested against the simulator through the staged
# install ($(STAGE)), the way a user's program finds an installed librkl:
# pkg-config, or the loader. Each binding is installed the way its ecosystem
# does it, from this repository, and used from there:
#
#   make bindings-check   all four (part of `make check`)
#   make go-check         bindings/go: go vet, gofmt, go doc, go test -race (both ABIs);
#                         examples/go/chat and the README's hello world as modules
#                         that require GO_MODULE through a replace directive
#   make node-check       bindings/node: `npm pack`, the tarball installed into an empty
#                         project under build/ (koffi, typescript, @types/node from npm);
#                         tsc --strict on its types (CommonJS and ESM), node --test there
#                         (both ABIs), examples/node/chat.mjs and the README's hello world
#   make py-check         bindings/python: `pip install bindings/python` into a fresh venv
#                         (pytest from PyPI), pytest against that install (both ABIs),
#                         examples/python/chat.py, the README's hello world, `pip wheel`
#   make cpp-check        bindings/cpp (rkl.hpp's tests and README) and examples/cpp:
#                         built with -Wall -Wextra -Werror, run (both ABIs)
#
# Tools come from Debian's packages when missing
# (scripts/ensure-bindings-tools.sh); everything else from PyPI and npm into
# build/bindings.

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
# A README's install line: its first ```sh block must hold `$(2)`.
# $(call install_line,README,TEXT)
install_line = awk '$$0 == "```sh" { f = 1; next } /^```$$/ { if (f) exit } f' $(1) | grep -qF -- '$(2)' \
               || { echo "$(1): the first sh block lacks '$(2)'"; exit 1; }
comma := ,
HELLO := Hello$(comma) Hello!! ✓
# Runs a program ($(1)) and checks its output for $(2); fails if it fails.
expect = $(1) > $(BIND_BUILD)/out-$@.txt && grep -F '$(2)' $(BIND_BUILD)/out-$@.txt >/dev/null \
         || { cat $(BIND_BUILD)/out-$@.txt; exit 1; }

# ---------------------------------------------------------------- Go
# The module path users put in go.mod (bindings/go/go.mod).
GO_MODULE := github.com/rkl-project/rkl/bindings/go
# Nothing is downloaded: the module has no dependencies, GOPROXY is off, and
# the programs that use it find it through a replace directive.
# cgo finds librkl through pkg-config; the rpath lets the binaries find it.
GO_ENV := GOPATH=$(BIND_BUILD)/go GOCACHE=$(BIND_BUILD)/go-cache GOFLAGS=-mod=mod \
          GOTOOLCHAIN=local GOPROXY=off GOTELEMETRY=off CGO_ENABLED=1 \
          PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig CGO_LDFLAGS=-Wl,-rpath,$(STAGE)/lib

go-check: stage bindings-tools $(BIND_TMP)/hello.sim
	@echo "== Go: vet, gofmt, go doc"
	cd bindings/go && $(GO_ENV) go vet ./...
	@test -z "$$(gofmt -l bindings/go examples/go)" || { echo "gofmt: $$(gofmt -l bindings/go examples/go)"; exit 1; }
	@grep -qx 'module $(GO_MODULE)' bindings/go/go.mod || { echo "bindings/go/go.mod: not module $(GO_MODULE)"; exit 1; }
	@mkdir -p $(BIND_BUILD)
	@cd bindings/go && $(GO_ENV) go doc -all . > $(BIND_BUILD)/go-doc.txt
	@grep -q '^package rkl // import "$(GO_MODULE)"' $(BIND_BUILD)/go-doc.txt \
	  && grep -q '^func Open(' $(BIND_BUILD)/go-doc.txt && grep -q 'Package rkl runs LLMs' $(BIND_BUILD)/go-doc.txt \
	  || { head -20 $(BIND_BUILD)/go-doc.txt; echo "go doc: unexpected output"; exit 1; }
	@for abi in $(BIND_ABIS); do \
	  echo "== Go: go test -race, ABI $$abi"; \
	  (cd bindings/go && $(GO_ENV) $(BIND_ENV) RKLLM_SIM_ABI=$$abi go test -race -count=1 ./...) || exit 1; \
	done
	@echo "== Go: examples/go/chat (requires $(GO_MODULE), replaced by bindings/go)"
	cd examples/go/chat && $(GO_ENV) go vet . && $(GO_ENV) go build -o $(BIND_BUILD)/go-chat .
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/go-chat $(BIND_TMP)/hello.sim Go,Hello$(comma) Go! ✓)
	@echo "== Go: README install line and hello world"
	@$(call install_line,bindings/go/README.md,go get $(GO_MODULE))
	@mkdir -p $(BIND_BUILD)/go-hello
	@printf 'module hello\n\ngo 1.19\n\nrequire $(GO_MODULE) v0.0.0\n\nreplace $(GO_MODULE) => $(CURDIR)/bindings/go\n' \
	  > $(BIND_BUILD)/go-hello/go.mod
	@$(call snippet,bindings/go/README.md,go) > $(BIND_BUILD)/go-hello/main.go
	cd $(BIND_BUILD)/go-hello && $(GO_ENV) go build -o hello .
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/go-hello/hello,$(HELLO))

# ---------------------------------------------------------------- Python
# A fresh venv per run; the package is installed into it from
# bindings/python (not editable) and the tests import it from there: they
# run outside the source tree, with `python -P` (no script or working
# directory on sys.path). Then `pip wheel` builds the wheel a user would
# install, and its contents are checked. pip's cache keeps the PyPI
# downloads (pytest, setuptools for the build) between runs.
PY_VENV  := $(BIND_BUILD)/venv
PY_WHEEL := $(BIND_BUILD)/wheels
PY_PIP   := $(PY_VENV)/bin/pip -q --disable-pip-version-check

py-check: stage bindings-tools $(BIND_TMP)/hello.sim
	@echo "== Python: pip install bindings/python into a fresh venv"
	rm -rf $(PY_VENV) $(PY_WHEEL)
	python3 -m venv $(PY_VENV)
	$(PY_PIP) install -r bindings/python/requirements-test.txt
	$(PY_PIP) install bindings/python
	@cd $(BIND_TMP) && $(BIND_ENV) $(PY_VENV)/bin/python -P -c \
	  'import rkl, sys, os; p = os.path.realpath(rkl.__file__); assert p.startswith(os.path.realpath(sys.prefix)), p; \
	   assert os.path.exists(os.path.join(os.path.dirname(p), "py.typed")), "no py.typed"; print("rkl", rkl.version(), "from", p)'
	@for abi in $(BIND_ABIS); do \
	  echo "== Python: pytest, ABI $$abi"; \
	  (cd $(BIND_TMP) && $(BIND_ENV) RKLLM_SIM_ABI=$$abi $(PY_VENV)/bin/python -P -m pytest -q -p no:cacheprovider \
	    --rootdir=$(CURDIR)/bindings/python $(CURDIR)/bindings/python/tests) || exit 1; \
	done
	@echo "== Python: librkl found through pkg-config's libdir (no loader path)"
	@cd $(BIND_TMP) && env -u LD_LIBRARY_PATH -u RKL_LIBRARY RKL_RUNTIME=$(SIM_LIB) PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig $(PY_VENV)/bin/python -P -c \
	  'import rkl; assert rkl.library._name.startswith("$(STAGE)/lib/"), rkl.library._name; print("via pkg-config:", rkl.library._name)'
	@echo "== Python: examples/python/chat.py"
	$(call expect,$(BIND_ENV) $(PY_VENV)/bin/python -P examples/python/chat.py $(BIND_TMP)/hello.sim Python,Hello$(comma) Python! ✓)
	@echo "== Python: README install line and hello world"
	@$(call install_line,bindings/python/README.md,pip install)
	@$(call snippet,bindings/python/README.md,python) > $(BIND_BUILD)/hello.py
	$(call expect,$(BIND_ENV) $(PY_VENV)/bin/python -P $(BIND_BUILD)/hello.py,$(HELLO))
	@echo "== Python: pip wheel"
	$(PY_PIP) wheel --no-deps -w $(PY_WHEEL) bindings/python
	@$(PY_VENV)/bin/python -c 'import sys, zipfile, glob; w = glob.glob("$(PY_WHEEL)/rkl-*-py3-none-any.whl"); \
	  assert len(w) == 1, w; names = zipfile.ZipFile(w[0]).namelist(); \
	  assert "rkl/__init__.py" in names and "rkl/py.typed" in names, names; print("wheel:", w[0])'
	@rm -rf bindings/python/build bindings/python/src/rkl.egg-info # setuptools' leftovers

# ---------------------------------------------------------------- C++
# rkl.hpp is installed with rkl.h by `make install` (include/), so the C++
# binding has no package of its own: bindings/cpp holds its tests and README.
CPP_FLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -g
CPP_LINK   = $$(PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig $(PKG_CONFIG) --cflags --libs rkl) -pthread \
             -Wl,-rpath,$(STAGE)/lib

cpp-check: stage $(BIND_TMP)/hello.sim
	@mkdir -p $(BIND_TMP)
	$(CXX) $(CPP_FLAGS) examples/cpp/chat.cpp -o $(BIND_BUILD)/cpp-chat $(CPP_LINK)
	$(CXX) $(CPP_FLAGS) $(SAN_FLAGS) bindings/cpp/test_rkl.cpp -o $(BIND_BUILD)/cpp-test $(CPP_LINK)
	@for abi in $(BIND_ABIS); do \
	  echo "== C++: test_rkl (ASan/UBSan), ABI $$abi"; \
	  $(BIND_ENV) $(ASAN_ENV) RKL_TEST_TMP=$(BIND_TMP) RKLLM_SIM_ABI=$$abi $(BIND_BUILD)/cpp-test || exit 1; \
	done
	@echo "== C++: chat"
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/cpp-chat $(BIND_TMP)/hello.sim C++ stream,Hello$(comma) stream! ✓)
	@echo "== C++: README install line and hello world"
	@$(call install_line,bindings/cpp/README.md,make install)
	@$(call snippet,bindings/cpp/README.md,cpp) > $(BIND_BUILD)/hello.cpp
	$(CXX) $(CPP_FLAGS) $(BIND_BUILD)/hello.cpp -o $(BIND_BUILD)/cpp-hello $(CPP_LINK)
	$(call expect,$(BIND_ENV) $(BIND_BUILD)/cpp-hello,$(HELLO))

# ---------------------------------------------------------------- Node
# `npm pack` makes the package's tarball; an empty project under build/
# installs it with npm (koffi from npm as its dependency, and typescript and
# @types/node for the type check), and the tests, the example and the
# README's hello world run there, requiring or importing 'rkl' as a user's
# code does. The project is made again only when the tarball changes.
NODE_SRC  := $(wildcard bindings/node/*.js bindings/node/*.mjs bindings/node/*.ts bindings/node/*.mts) \
             bindings/node/package.json bindings/node/README.md
NODE_PACK := $(BIND_BUILD)/node-pack
# NODE_APP (mk/00-base.mk): the project that installs the tarball.
NODE_TGZ  := $(NODE_PACK)/rkl-$(shell sed -n 's/^  "version": "\(.*\)",/\1/p' bindings/node/package.json).tgz
# The type checker's versions, exactly.
NODE_DEV_DEPS := "typescript": "5.9.3", "@types/node": "20.19.43"
NPM := npm --no-audit --no-fund --loglevel=error

$(NODE_TGZ): $(NODE_SRC)
	@$(MAKE) --no-print-directory bindings-tools
	@rm -rf $(NODE_PACK) && mkdir -p $(NODE_PACK)
	cd bindings/node && $(NPM) pack --pack-destination $(NODE_PACK) >/dev/null
	@test -s $@ || { echo "npm pack did not make $@"; exit 1; }

$(NODE_APP)/.ready: $(NODE_TGZ)
	rm -rf $(NODE_APP) && mkdir -p $(NODE_APP)
	@printf '{\n  "name": "rkl-node-app",\n  "private": true,\n  "dependencies": { "rkl": "file:%s" },\n  "devDependencies": { %s }\n}\n' \
	  '$(NODE_TGZ)' '$(NODE_DEV_DEPS)' > $(NODE_APP)/package.json
	@printf '{\n  "compilerOptions": { "strict": true, "noEmit": true, "target": "es2022", "module": "node16",\n    "moduleResolution": "node16", "types": ["node"] },\n  "files": ["test/types-check.ts", "test/types-check.mts"]\n}\n' \
	  > $(NODE_APP)/tsconfig.json
	cd $(NODE_APP) && $(NPM) install
	@touch $@

node-check: stage $(NODE_APP)/.ready $(BIND_TMP)/hello.sim
	@rm -rf $(NODE_APP)/test $(NODE_APP)/testlib
	cp -r bindings/node/test bindings/node/testlib examples/node/chat.mjs $(NODE_APP)/
	@echo "== Node: the installed package's types (tsc --strict, CommonJS and ESM)"
	cd $(NODE_APP) && node_modules/.bin/tsc -p .
	@mkdir -p $(BIND_TMP)
	@for abi in $(BIND_ABIS); do \
	  echo "== Node: node --test, ABI $$abi"; \
	  (cd $(NODE_APP) && $(BIND_ENV) RKL_HEADER=$(CURDIR)/include/rkl.h RKL_TEST_TMP=$(BIND_TMP) RKLLM_SIM_ABI=$$abi \
	    node --test test/) || exit 1; \
	done
	@echo "== Node: examples/node/chat.mjs"
	$(call expect,cd $(NODE_APP) && $(BIND_ENV) node chat.mjs $(BIND_TMP)/hello.sim Node,Hello$(comma) Node! ✓)
	@echo "== Node: README install line and hello world"
	@$(call install_line,bindings/node/README.md,npm install)
	@$(call snippet,bindings/node/README.md,js) > $(NODE_APP)/hello.js
	$(call expect,cd $(NODE_APP) && $(BIND_ENV) node hello.js,$(HELLO))

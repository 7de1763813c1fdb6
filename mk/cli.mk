# The `rkl` command (cli/): its tests, and the Python/curl check of `rkl serve`.
#
#   make cli-check   the Rust tests of cli/ (tests/serve.rs, tests/load.rs:
#                    the endpoints, refusals, disconnects, 32 clients x 20
#                    streamed requests with a crashing model), then the
#                    official `openai` Python client and curl against
#                    `rkl serve` (cli/tests/python). Part of `make check`.
#
# The Rust tests of cli/ run here only (the top Makefile's test-rust leaves
# the package out): they start `rkl serve` processes, which pick their ABI
# per test, so one run covers both.

CLI_BUILD := $(CURDIR)/build/cli
CLI_VENV  := $(CLI_BUILD)/venv

.PHONY: cli-check cli-tools cli-build cli-python

CHECK_EXTRA += cli-check

cli-tools:
	@scripts/ensure-cli-tools.sh

$(CLI_VENV)/.ready: cli/tests/python/requirements.txt
	@$(MAKE) --no-print-directory cli-tools
	rm -rf $(CLI_VENV)
	python3 -m venv $(CLI_VENV)
	$(CLI_VENV)/bin/pip install -q --disable-pip-version-check -r cli/tests/python/requirements.txt
	@touch $@

# The command, the simulator and the worker program the tests use.
cli-build:
	$(CARGO) build -p rkl-cli -p rkllm-sim
	$(CARGO) build -p rkl --bin rkl-host

cli-python: cli-build $(CLI_VENV)/.ready
	@rm -rf $(CLI_BUILD)/python-work
	$(CLI_VENV)/bin/python cli/tests/python/test_openai.py $(TARGET)/debug/rkl $(SIM_LIB) $(CLI_BUILD)/python-work

cli-check: cli-build
	$(CARGO) test -p rkl-cli
	@$(MAKE) --no-print-directory cli-python
	@echo "cli-check: all passed"

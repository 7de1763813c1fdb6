# The habits of a Rust codebase: rustfmt's layout and a clippy without
# warnings, over every crate and target of the workspace.

.PHONY: check-format check-clippy
CHECK_EXTRA += check-format check-clippy

check-format:
	$(CARGO) fmt --all --check

check-clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

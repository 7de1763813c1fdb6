# Documentation and packaging checks.
#
#   make docs            include/rkl.h's comments as HTML with Doxygen (Debian's
#                        doxygen, installed when missing) into build/docs/html
#   make check-docs      make docs, failing on any Doxygen warning; the man pages
#                        (man/*.1) checked with groff -ww; the Rust API docs
#                        (cargo doc, warnings denied) (part of `make check`)
#   make check-package   cargo package -p rkl: the crate packs and builds from its
#                        tarball (part of `make check`)
#
# The Rust doctests (the crate's example against the simulator) run with the
# rest of the Rust suite: `cargo test --workspace` in test-rust.

DOCS_BUILD := $(CURDIR)/build/docs

.PHONY: docs docs-tools check-docs check-package

CHECK_EXTRA += check-docs check-package

docs-tools:
	@scripts/ensure-docs-tools.sh

docs: docs-tools
	@rm -rf $(DOCS_BUILD) && mkdir -p $(DOCS_BUILD)
	doxygen docs/Doxyfile
	@echo "C API reference: $(DOCS_BUILD)/html/index.html"

check-docs: docs
	@if [ -s $(DOCS_BUILD)/doxygen-warnings.txt ]; then \
	  cat $(DOCS_BUILD)/doxygen-warnings.txt; echo "Doxygen warned (above)"; exit 1; fi
	@grep -q 'rkl_stream_read' $(DOCS_BUILD)/html/globals_func.html \
	  || { echo "build/docs: the functions are missing"; exit 1; }
	@for m in man/*.[1-8]; do \
	  out=$$(groff -man -ww -z $$m 2>&1); [ -z "$$out" ] || { echo "$$m: $$out"; exit 1; }; \
	done
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -q -p rkl --no-deps
	@echo "docs: Doxygen, man pages and rustdoc without warnings"

check-package:
	$(CARGO) package -q -p rkl --allow-dirty

# Release artefacts for the boards and for PCs, with a glibc floor.
#
#   make dist        for x86_64 (amd64) and aarch64 (arm64), into build/dist/:
#                    rkl-$(RKL_VERSION)-<triplet>.tar.gz (lib .so and .a, header, .pc,
#                    rkl-host, rkl-cache, README, LICENSE) and the Debian packages
#                    librkl0, librkl-dev, rkl-tools (dpkg-deb). Built against
#                    Debian 11's glibc 2.31 (a sysroot from deb.debian.org, in
#                    build/sysroot), and checked with objdump -T to need nothing newer
#                    (scripts/dist.sh, scripts/check-glibc-floor.sh)
#   make dist-check  make dist, then scripts/dist-test.sh: installs the amd64 packages
#                    into a throwaway root with dpkg --root, checks their control data,
#                    builds C programs against it with pkg-config and runs them against
#                    the simulator (in-process and isolated, with the packaged
#                    rkl-host), and runs rkl-cache of both architectures on glibc 2.31's
#                    own loader (arm64 under qemu-aarch64). Run by .ci/run.
#
# Rust is Debian's (rustc-web, as for check-aarch64); the release builds go to
# target/dist, apart from the other builds.

GLIBC_FLOOR    ?= 2.31
DEB_REVISION   ?= 1
DEB_VERSION    := $(RKL_VERSION)-$(DEB_REVISION)
DEB_MAINTAINER ?= rkl maintainers <maintainers@users.noreply.r-seed-b24ff305.example>
DIST_DIR       := $(CURDIR)/build/dist
SYSROOT_DIR    := $(CURDIR)/build/sysroot
DIST_TARGET_DIR := $(TARGET)/dist
DIST_ARCHES    := amd64 arm64
# Dates in the packages and tarballs: the last commit's, for reproducible output.
DIST_EPOCH     := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

DIST_ENV := VERSION=$(RKL_VERSION) DEB_VERSION=$(DEB_VERSION) GLIBC_FLOOR=$(GLIBC_FLOOR) \
  DEB_MAINTAINER="$(DEB_MAINTAINER)" DIST_DIR=$(DIST_DIR) SYSROOT_DIR=$(SYSROOT_DIR) \
  DIST_TARGET_DIR=$(DIST_TARGET_DIR) SOURCE_DATE_EPOCH=$(DIST_EPOCH)

.PHONY: dist dist-check

dist: tools aarch64-tools
	@rm -f $(DIST_DIR)/*.tar.gz $(DIST_DIR)/*.deb
	@for a in $(DIST_ARCHES); do \
	  echo "== dist: $$a"; \
	  $(DIST_ENV) scripts/dist.sh $$a || exit 1; \
	done
	@echo "make dist: build/dist/"; ls -l $(DIST_DIR) | grep -v '^total\|work$$'

dist-check: dist
	$(CARGO) build -p rkllm-sim
	@$(DIST_ENV) SIM_LIB=$(SIM_LIB) scripts/dist-test.sh

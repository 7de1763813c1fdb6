#!/bin/sh
# Installs what `make docs` needs on a fresh Debian machine, from Debian's
# packages, when missing: Doxygen (for include/rkl.h) and man (groff), to
# check the man pages in man/. Does nothing when all is there.
set -eu
missing=""
command -v doxygen >/dev/null 2>&1 || missing="$missing doxygen"
command -v groff >/dev/null 2>&1 || missing="$missing groff-base"
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

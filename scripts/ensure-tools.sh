#!/bin/sh
# Installs what `make check` and `make demo` need on a fresh Debian machine,
# from Debian's packages; does nothing when everything is already there.
set -eu
missing=""
for tool in cc:gcc c++:g++ pkg-config:pkg-config valgrind:valgrind; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing

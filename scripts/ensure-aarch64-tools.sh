#!/bin/sh
# Installs what `make check-aarch64` needs on a Debian 12 (bookworm) amd64
# machine, from Debian's packages; does nothing when everything is there:
#   rustc-web, cargo-web            Rust 1.96 in /usr/bin (bookworm-security)
#   libstd-rust-web-dev:arm64       its standard library for aarch64
#   gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu,
#   libc6-dev-arm64-cross           the cross C compiler and linker
#   qemu-user                       qemu-aarch64, the test runner
# libstd-rust-web-dev:arm64 needs arm64 as a foreign dpkg architecture; it
# brings the arm64 libc6 in /lib/aarch64-linux-gnu that qemu-aarch64 loads
# the test programs with.
set -eu
PKGS="rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=""
for p in $PKGS; do
  installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "check-aarch64 needs Debian's packages:$missing (no apt-get here)" >&2
  exit 1
fi
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing

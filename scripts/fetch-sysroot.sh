#!/bin/sh
# Makes a Debian 11 (bullseye, glibc 2.31) sysroot for one architecture, to
# link release artefacts against: `make dist` builds librkl.so, rkl-host
# and rkl-cache with gcc --sysroot=DIR, so they need no glibc newer than
# Debian 11's (and Ubuntu 20.04's) 2.31.
#
#   scripts/fetch-sysroot.sh amd64|arm64 DIR
#
# The packages (libc6, libc6-dev, linux-libc-dev, libgcc-s1) come from
# deb.debian.org's bullseye suite through apt-get download with a private
# configuration under DIR.apt (its own sources list and package lists, the
# system's apt state untouched; signatures checked with Debian's archive
# keyring), and are unpacked with dpkg-deb -x. Absolute symbolic links
# inside are made relative so that they point into DIR. The versions are
# written to DIR/VERSIONS. Does nothing when DIR/.ready exists.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 amd64|arm64 DIR" >&2; exit 2; }
arch=$1
dir=$2
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bullseye
PKGS="libc6 libc6-dev linux-libc-dev libgcc-s1"
[ -e "$dir/.ready" ] && exit 0

apt=$dir.apt
rm -rf "$dir" "$apt"
mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" \
  "$apt/cache/archives/partial" "$apt/debs"
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
  > "$apt/etc/sources.list"
set -- -o Dir::Etc::SourceList="$apt/etc/sources.list" -o Dir::Etc::SourceParts="$apt/etc/sources.list.d" \
  -o Dir::Etc::Preferences="$apt/etc/preferences" -o Dir::Etc::PreferencesParts="$apt/etc/preferences.d" \
  -o Dir::State="$apt/state" -o Dir::State::status=/dev/null -o Dir::Cache="$apt/cache" \
  -o APT::Architecture="$arch" -o APT::Architectures::="$arch" -o Debug::NoLocking=1 \
  -o APT::Sandbox::User="$(id -un)"
echo "fetching Debian $SUITE's $PKGS for $arch from $MIRROR"
apt-get "$@" -qq update
(cd "$apt/debs" && apt-get "$@" -qq download $(for p in $PKGS; do printf '%s:%s ' "$p" "$arch"; done))

mkdir -p "$dir"
: > "$dir/VERSIONS"
for deb in "$apt"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dir"
  dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}\n' "$deb" >> "$dir/VERSIONS"
done
version=$(dpkg-deb -f "$apt"/debs/libc6_*.deb Version)
case $version in
  2.31-*) ;;
  *) echo "expected glibc 2.31 from $SUITE, got libc6 $version" >&2; exit 1 ;;
esac
# /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-2.31.so and the
# like: relative, so that they resolve inside the sysroot.
find "$dir" -type l | while read -r link; do
  target=$(readlink "$link")
  case $target in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir$target")" "$link" ;;
  esac
done
rm -rf "$apt/state" "$apt/cache"
touch "$dir/.ready"
echo "sysroot $dir:"; sed 's/^/  /' "$dir/VERSIONS"

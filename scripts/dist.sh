#!/bin/sh
# One architecture's release artefacts for `make dist` (mk/dist.mk):
#
#   scripts/dist.sh amd64|arm64
#
# with VERSION, DEB_VERSION, GLIBC_FLOOR, DEB_MAINTAINER, DIST_DIR,
# SYSROOT_DIR and DIST_TARGET_DIR in the environment (mk/dist.mk sets them).
#
# 1. A Debian 11 (glibc 2.31) sysroot (scripts/fetch-sysroot.sh).
# 2. A release build of librkl (.so, .a), rkl-host and rkl-cache with
#    Debian's cargo/rustc in /usr/bin, for the target triple, linked by gcc
#    with --sysroot: -B and -L put the sysroot's crt files and libraries
#    before the compiler's own (a native or cross gcc otherwise finds
#    bookworm's glibc first, whatever --sysroot says).
# 3. The glibc floor: objdump -T of librkl.so, rkl-host, rkl-cache and of
#    a C program linked with librkl.a (tests/c/test_api.c, through the
#    tarball's rkl.pc, --static, against the sysroot) must need no version
#    above GLIBC_FLOOR (scripts/check-glibc-floor.sh names the symbol).
# 4. DIST_DIR/rkl-VERSION-<gnu triplet>.tar.gz: lib/ (librkl.so.VERSION,
#    the .so.MAJOR and .so links, librkl.a, pkgconfig/rkl.pc relocatable
#    through ${pcfiledir}), include/, bin/rkl-cache, libexec/rkl-host,
#    README.md, LICENSE.
# 5. DIST_DIR/{librkl0,librkl-dev,rkl-tools}_DEB_VERSION_<arch>.deb, built
#    with dpkg-deb: the libraries in /usr/lib/<multiarch>, rkl-host in
#    /usr/libexec (which librkl finds from there, ../../libexec), rkl-cache
#    in /usr/bin. Depends are read from the binaries' symbol versions
#    (dpkg-shlibdeps would resolve them against this machine's newer libc
#    and ask for more than the binaries need).
set -eu
arch=${1:?usage: $0 amd64|arm64}
: "${VERSION:?}" "${DEB_VERSION:?}" "${GLIBC_FLOOR:?}" "${DEB_MAINTAINER:?}"
: "${DIST_DIR:?}" "${SYSROOT_DIR:?}" "${DIST_TARGET_DIR:?}"
case $arch in
  amd64) triple=x86_64-unknown-linux-gnu; ma=x86_64-linux-gnu; tools=x86_64-linux-gnu- ;;
  arm64) triple=aarch64-unknown-linux-gnu; ma=aarch64-linux-gnu; tools=aarch64-linux-gnu- ;;
  *) echo "unknown architecture $arch" >&2; exit 2 ;;
esac
cc=${tools}gcc
objdump=${tools}objdump
strip=${tools}strip
somajor=${VERSION%%.*}
umask 022

sysroot=$SYSROOT_DIR/$arch
scripts/fetch-sysroot.sh "$arch" "$sysroot"
SYSROOT_CFLAGS="--sysroot=$sysroot -isystem $sysroot/usr/include/$ma -isystem $sysroot/usr/include"
SYSROOT_LDFLAGS="--sysroot=$sysroot -B$sysroot/usr/lib/$ma -L$sysroot/lib/$ma -L$sysroot/usr/lib/$ma"

# ---- 2. build
TRIPLE_ENV=$(echo "$triple" | tr a-z- A-Z_)
rustflags=""
for f in $SYSROOT_LDFLAGS; do rustflags="$rustflags -C link-arg=$f"; done
# A target directory per architecture: the host's build scripts and proc
# macros are linked with the x86_64 linker setting only in the amd64 build,
# and a shared directory would rebuild them (and all after them) every time.
export PATH="/usr/bin:/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo \
  CARGO_TARGET_DIR="$DIST_TARGET_DIR/$arch"
export "CARGO_TARGET_${TRIPLE_ENV}_LINKER=$cc" "CARGO_TARGET_${TRIPLE_ENV}_RUSTFLAGS=${rustflags# }"
out=$DIST_TARGET_DIR/$arch/$triple/release
work=$DIST_DIR/work/$arch
mkdir -p "$work"
# What librkl.a needs besides itself, as rustc reports it; asked once per
# Cargo.lock (it costs a second compilation of the crate).
native=$work/native-static-libs.txt
if [ ! -s "$native" ] || [ Cargo.lock -nt "$native" ] || [ Cargo.toml -nt "$native" ]; then
  /usr/bin/cargo rustc -q --release --target "$triple" -p rkl --lib -- --print native-static-libs 2>&1 \
    | sed -n 's/.*native-static-libs: *//p' | tail -n 1 > "$native.tmp"
  [ -s "$native.tmp" ] || { echo "could not learn the native libraries of librkl.a for $triple" >&2; exit 1; }
  mv "$native.tmp" "$native"
fi
/usr/bin/cargo build -q --release --target "$triple" -p rkl --lib --bin rkl-cache --bin rkl-host
/usr/bin/cargo build -q --release --target "$triple" -p rkl-cli --bin rkl

# ---- 4. the tarball's tree (also the source of the packages' files)
name=rkl-$VERSION-$ma
tree=$work/$name
rm -rf "$tree"
mkdir -p "$tree/lib/pkgconfig" "$tree/include" "$tree/bin" "$tree/libexec" "$tree/share/man/man1"
install -m 0755 "$out/librkl.so" "$tree/lib/librkl.so.$VERSION"
ln -s "librkl.so.$VERSION" "$tree/lib/librkl.so.$somajor"
ln -s "librkl.so.$somajor" "$tree/lib/librkl.so"
install -m 0644 "$out/librkl.a" "$tree/lib/librkl.a"
install -m 0755 "$out/rkl-cache" "$tree/bin/rkl-cache"
install -m 0755 "$out/rkl" "$tree/bin/rkl"
install -m 0755 "$out/rkl-host" "$tree/libexec/rkl-host"
install -m 0644 man/*.1 "$tree/share/man/man1/"
"$strip" --strip-debug "$tree/lib/librkl.so.$VERSION" "$tree/lib/librkl.a" "$tree/bin/rkl-cache" "$tree/bin/rkl" \
  "$tree/libexec/rkl-host"
install -m 0644 include/rkl.h include/rkl.hpp "$tree/include/"
install -m 0644 README.md LICENSE "$tree/"
# pkgconfig/rkl.pc.in, relocatable: the prefix is where the tree was unpacked.
pc() { # prefix libdir includedir
  sed -e "s|@PREFIX@|$1|" -e "s|@LIBDIR@|$2|" -e "s|@INCDIR@|$3|" -e "s|@VERSION@|$VERSION|" \
      -e "s|@LIBS_PRIVATE@|$(cat "$native")|" pkgconfig/rkl.pc.in
}
pc '${pcfiledir}/../..' '${prefix}/lib' '${prefix}/include' > "$tree/lib/pkgconfig/rkl.pc"
chmod 0644 "$tree/lib/pkgconfig/rkl.pc"

# ---- 3. the glibc floor, and a consumer of librkl.a linked against the sysroot
echo "== glibc floor $GLIBC_FLOOR, $arch"
consumer=$work/test_api-static
pcenv="env PKG_CONFIG_LIBDIR=$tree/lib/pkgconfig PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR="
# shellcheck disable=SC2046,SC2086 # word splitting of flags is intended
"$cc" $SYSROOT_CFLAGS -std=c99 -D_POSIX_C_SOURCE=200809L -O1 tests/c/test_api.c -o "$consumer" \
  $($pcenv pkg-config --cflags rkl) $SYSROOT_LDFLAGS \
  $($pcenv pkg-config --static --libs rkl | sed 's/-lrkl\b/-Wl,-Bstatic -lrkl -Wl,-Bdynamic/') -lpthread -lm
if readelf -d "$consumer" | grep -q 'librkl\.so'; then
  echo "$consumer needs librkl.so: librkl.a was not linked" >&2; exit 1
fi
scripts/check-glibc-floor.sh --objdump "$objdump" "$GLIBC_FLOOR" "$tree/lib/librkl.so.$VERSION" \
  "$tree/bin/rkl-cache" "$tree/bin/rkl" "$tree/libexec/rkl-host" "$consumer"

mkdir -p "$DIST_DIR"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:-0}" \
  -C "$work" -czf "$DIST_DIR/$name.tar.gz" "$name"
echo "built $DIST_DIR/$name.tar.gz"

# ---- 5. Debian packages
# "libc6 (>= 2.30), libgcc-s1 (>= 4.2)": the highest GLIBC_ and GCC_
# versions the files need, for the libraries they name.
depends() {
  needed=$(for f in "$@"; do readelf -d "$f"; done | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
  syms=$(for f in "$@"; do "$objdump" -T "$f"; done)
  dep=""
  glibc=$(printf '%s\n' "$syms" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
  [ -n "$glibc" ] && dep="libc6 (>= $glibc)"
  if printf '%s\n' "$needed" | grep -qx 'libgcc_s\.so\.1'; then
    gcc=$(printf '%s\n' "$syms" | grep -o 'GCC_[0-9][0-9.]*' | sed 's/GCC_//' | sort -uV | tail -n 1 \
      | cut -d. -f1-2)
    dep="$dep, libgcc-s1 (>= ${gcc:-3.0})"
  fi
  for lib in $needed; do
    case $lib in
      libc.so.6|libdl.so.2|libpthread.so.0|libm.so.6|librt.so.1|libutil.so.1|ld-linux-*|libgcc_s.so.1) ;;
      *) echo "unexpected NEEDED $lib in $*" >&2; exit 1 ;;
    esac
  done
  printf '%s\n' "$dep"
}

date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-0}")
debroot=$work/deb
rm -rf "$debroot"
# A package's tree with its copyright and changelog; finish writes its
# control file (fields as arguments, the description on stdin), md5sums, .deb.
newpkg() { # package
  d=$debroot/$1
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$1"
  cat > "$d/usr/share/doc/$1/copyright" <<EOC
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rkl

Files: *
Copyright: the rkl authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOC
  printf 'rkl (%s) unstable; urgency=medium\n\n  * Release %s, built by make dist.\n\n -- %s  %s\n' \
    "$DEB_VERSION" "$VERSION" "$DEB_MAINTAINER" "$date" | gzip -9n > "$d/usr/share/doc/$1/changelog.Debian.gz"
  chmod 0644 "$d/usr/share/doc/$1/copyright" "$d/usr/share/doc/$1/changelog.Debian.gz"
}
finish() { # package control-fields... (after Package, before Description)
  d=$debroot/$1; pkg=$1; shift
  size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
  {
    echo "Package: $pkg"
    echo "Source: rkl"
    echo "Version: $DEB_VERSION"
    echo "Architecture: $arch"
    echo "Maintainer: $DEB_MAINTAINER"
    echo "Installed-Size: $size"
    for field in "$@"; do echo "$field"; done
    echo "Priority: optional"
  } > "$d/DEBIAN/control"
  cat >> "$d/DEBIAN/control"
  (cd "$d" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | xargs md5sum) \
    > "$d/DEBIAN/md5sums"
  chmod 0644 "$d/DEBIAN/"*
  dpkg-deb --root-owner-group -Zxz --build "$d" "$DIST_DIR/${pkg}_${DEB_VERSION}_$arch.deb" >/dev/null
  echo "built $DIST_DIR/${pkg}_${DEB_VERSION}_$arch.deb"
}
desc_tail=" rkl runs LLMs on Rockchip NPUs (RK3588, RK3576) through Rockchip's
 closed runtime librkllmrt.so, which it finds and identifies at run time
 (releases 1.2.1-1.2.3 and 1.3.0): one stable C API, every runtime call on
 one thread, complete UTF-8 only, checked input, and an isolation mode that
 survives crashes of the runtime. The runtime itself is not included."

lib=usr/lib/$ma
newpkg librkl0
mkdir -p "$debroot/librkl0/$lib"
cp -P "$tree/lib/librkl.so.$VERSION" "$tree/lib/librkl.so.$somajor" "$debroot/librkl0/$lib/"
chmod 0644 "$debroot/librkl0/$lib/librkl.so.$VERSION" # a shared library is not a program (Debian policy 8.1)
echo "librkl $somajor librkl0 (>= $VERSION)" > "$debroot/librkl0/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$debroot/librkl0/DEBIAN/triggers"
dep=$(depends "$tree/lib/librkl.so.$VERSION")
finish librkl0 "Depends: $dep" "Recommends: rkl-tools" \
  "Multi-Arch: same" "Section: libs" <<EOC
Description: crash-hardened C library for LLMs on Rockchip NPUs
$desc_tail
 .
 This package has the shared library. Isolation mode needs rkl-host, from
 rkl-tools.
EOC

newpkg librkl-dev
mkdir -p "$debroot/librkl-dev/$lib/pkgconfig" "$debroot/librkl-dev/usr/include"
ln -s "librkl.so.$somajor" "$debroot/librkl-dev/$lib/librkl.so"
cp -p "$tree/lib/librkl.a" "$debroot/librkl-dev/$lib/"
cp -p "$tree/include/rkl.h" "$tree/include/rkl.hpp" "$debroot/librkl-dev/usr/include/"
pc /usr "/$lib" /usr/include > "$debroot/librkl-dev/$lib/pkgconfig/rkl.pc"
chmod 0644 "$debroot/librkl-dev/$lib/pkgconfig/rkl.pc"
finish librkl-dev "Depends: librkl0 (= $DEB_VERSION)" "Multi-Arch: same" "Section: libdevel" <<EOC
Description: crash-hardened C library for LLMs on Rockchip NPUs (development files)
$desc_tail
 .
 This package has the header rkl.h, the C++17 wrapper rkl.hpp, the static
 library and the pkg-config file (pkg-config --cflags --libs rkl).
EOC

newpkg rkl-tools
mkdir -p "$debroot/rkl-tools/usr/bin" "$debroot/rkl-tools/usr/libexec" "$debroot/rkl-tools/usr/share/man/man1"
cp -p "$tree/bin/rkl-cache" "$tree/bin/rkl" "$debroot/rkl-tools/usr/bin/"
cp -p "$tree/libexec/rkl-host" "$debroot/rkl-tools/usr/libexec/"
for page in "$tree"/share/man/man1/*.1; do gzip -9n < "$page" > "$debroot/rkl-tools/usr/share/man/man1/$(basename "$page").gz"; done
dep=$(depends "$tree/bin/rkl-cache" "$tree/bin/rkl" "$tree/libexec/rkl-host")
finish rkl-tools "Depends: $dep" "Section: utils" <<EOC
Description: crash-hardened C library for LLMs on Rockchip NPUs (tools)
$desc_tail
 .
 This package has rkl (info, run, chat, bench, cache and serve: an
 OpenAI-compatible server), rkl-cache, which lists, checks, cleans and prunes
 prompt caches, and rkl-host, the worker process of isolation mode
 (/usr/libexec/rkl-host, where librkl looks for it).
EOC

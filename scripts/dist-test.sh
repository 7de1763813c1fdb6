#!/bin/sh
# The test of `make dist-check` (mk/dist.mk), after `make dist`:
#
# 1. The packages' control data: Architecture, Version, Multi-Arch, Depends
#    (libc6 no newer than GLIBC_FLOOR; librkl-dev on exactly this librkl0),
#    the multiarch paths and the SONAME links, for amd64 and arm64.
# 2. The amd64 packages installed with dpkg into a throwaway root
#    (dpkg --root, its own database; --force-depends since the root holds
#    no libc6, whose dependency step 1 checked).
# 3. C programs built against that root with pkg-config
#    (PKG_CONFIG_SYSROOT_DIR): tests/c/dist_smoke.c, run against the
#    simulator (SIM_LIB) in-process and in isolation mode, where librkl
#    must find the packaged /usr/libexec/rkl-host by itself (and fails
#    without it); tests/c/test_api.c linked with the packaged librkl.so and,
#    through pkg-config --static, with librkl.a.
# 4. glibc 2.31 for real: rkl-cache of both architectures and dist_smoke
#    (built against the Debian 11 sysroot and the packaged librkl.so) run on
#    the sysroot's own ld.so and libc 2.31, arm64 under qemu-aarch64.
#
# Environment: VERSION, DEB_VERSION, GLIBC_FLOOR, DIST_DIR, SYSROOT_DIR,
# SIM_LIB (mk/dist.mk sets them).
set -eu
: "${VERSION:?}" "${DEB_VERSION:?}" "${GLIBC_FLOOR:?}" "${DIST_DIR:?}" "${SYSROOT_DIR:?}" "${SIM_LIB:?}"
t=$DIST_DIR/test
rm -rf "$t"
mkdir -p "$t"
fail() { echo "dist-test: $*" >&2; exit 1; }
field() { dpkg-deb -f "$1" "$2"; }
newer() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$1" ] && [ "$1" != "$2" ]; }

# ---- 1. control data
for arch in amd64 arm64; do
  case $arch in amd64) ma=x86_64-linux-gnu ;; arm64) ma=aarch64-linux-gnu ;; esac
  for pkg in librkl0 librkl-dev rkl-tools; do
    deb=$DIST_DIR/${pkg}_${DEB_VERSION}_$arch.deb
    [ -f "$deb" ] || fail "missing $deb"
    [ "$(field "$deb" Package)" = "$pkg" ] || fail "$deb: Package is not $pkg"
    [ "$(field "$deb" Version)" = "$DEB_VERSION" ] || fail "$deb: Version is not $DEB_VERSION"
    [ "$(field "$deb" Architecture)" = "$arch" ] || fail "$deb: Architecture is not $arch"
    dpkg-deb -c "$deb" | awk '{ s = $6; if ($7 == "->") s = s " -> " $8; print s }' > "$t/$pkg-$arch.list"
  done
  l=$t/librkl0-$arch.list
  grep -qx "./usr/lib/$ma/librkl.so.$VERSION" "$l" || fail "librkl0 ($arch) lacks /usr/lib/$ma/librkl.so.$VERSION"
  grep -qx "./usr/lib/$ma/librkl.so.${VERSION%%.*} -> librkl.so.$VERSION" "$l" \
    || fail "librkl0 ($arch): no SONAME link librkl.so.${VERSION%%.*}"
  grep -qx "./usr/lib/$ma/librkl.so -> librkl.so.${VERSION%%.*}" "$t/librkl-dev-$arch.list" \
    || fail "librkl-dev ($arch): no librkl.so link"
  for f in "./usr/lib/$ma/librkl.a" "./usr/lib/$ma/pkgconfig/rkl.pc" ./usr/include/rkl.h ./usr/include/rkl.hpp; do
    grep -qx "$f" "$t/librkl-dev-$arch.list" || fail "librkl-dev ($arch) lacks $f"
  done
  for f in ./usr/bin/rkl-cache ./usr/bin/rkl ./usr/libexec/rkl-host ./usr/share/man/man1/rkl-cache.1.gz; do
    grep -qx "$f" "$t/rkl-tools-$arch.list" || fail "rkl-tools ($arch) lacks $f"
  done
  for pkg in librkl0 librkl-dev; do
    [ "$(field "$DIST_DIR/${pkg}_${DEB_VERSION}_$arch.deb" Multi-Arch)" = same ] || fail "$pkg ($arch): not Multi-Arch: same"
  done
  [ "$(field "$DIST_DIR/librkl-dev_${DEB_VERSION}_$arch.deb" Depends)" = "librkl0 (= $DEB_VERSION)" ] \
    || fail "librkl-dev ($arch) does not depend on librkl0 (= $DEB_VERSION)"
  for pkg in librkl0 rkl-tools; do
    dep=$(field "$DIST_DIR/${pkg}_${DEB_VERSION}_$arch.deb" Depends)
    v=$(printf '%s\n' "$dep" | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    [ -n "$v" ] || fail "$pkg ($arch): Depends '$dep' names no libc6 version"
    if newer "$v" "$GLIBC_FLOOR"; then fail "$pkg ($arch): Depends on libc6 $v, above the floor $GLIBC_FLOOR"; fi
    echo "$pkg ($arch): Depends: $dep"
  done
done
echo "control data, paths and links of the packages: as expected"

# ---- 2. install the amd64 packages into a throwaway root
root=$t/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: > "$root/var/lib/dpkg/status"
: > "$root/var/lib/dpkg/available"
dpkg --root="$root" --log=/dev/null --force-not-root --force-depends --force-script-chrootless \
  -i "$DIST_DIR/librkl0_${DEB_VERSION}_amd64.deb" "$DIST_DIR/librkl-dev_${DEB_VERSION}_amd64.deb" \
  "$DIST_DIR/rkl-tools_${DEB_VERSION}_amd64.deb" > "$t/dpkg.log" 2>&1 || { cat "$t/dpkg.log"; fail "dpkg -i failed"; }
for pkg in librkl0 librkl-dev rkl-tools; do
  [ "$(dpkg-query --root="$root" -W -f='${Status}' "$pkg")" = "install ok installed" ] || fail "$pkg is not installed"
done
lib=$root/usr/lib/x86_64-linux-gnu
readelf -d "$lib/librkl.so" | grep -q "SONAME.*\[librkl\.so\.${VERSION%%.*}\]" || fail "installed librkl.so has no SONAME librkl.so.0"
echo "installed into $root with dpkg --root"

# ---- 3. C programs against the installed root
pc="env PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_LIBDIR=$lib/pkgconfig PKG_CONFIG_PATH="
flags=$($pc pkg-config --cflags --libs rkl)
echo "pkg-config --cflags --libs rkl: $flags"
case $flags in *"-I$root/usr/include"*"-L$lib"*) ;; *) fail "pkg-config does not point into the root" ;; esac
cflags="-std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -O1"
# shellcheck disable=SC2086
cc $cflags tests/c/dist_smoke.c -o "$t/dist_smoke" $flags
# shellcheck disable=SC2086
cc $cflags tests/c/test_api.c -o "$t/test_api" $flags -lpthread -lm
# shellcheck disable=SC2086
cc $cflags tests/c/test_api.c -o "$t/test_api-static" $($pc pkg-config --cflags rkl) \
  $($pc pkg-config --static --libs rkl | sed 's/-lrkl\b/-Wl,-Bstatic -lrkl -Wl,-Bdynamic/') -lpthread -lm
readelf -d "$t/test_api-static" | grep -q 'librkl\.so' && fail "test_api-static needs librkl.so"

model=$t/model.txt
printf 'RKLLM-SIM 1\nname = dist-test\nreply = pong from the packaged librkl\n' > "$model"
# No rkl-host on PATH or named: isolation mode must find the packaged one.
run() { env -u RKL_HOST PATH=/usr/bin:/bin LD_LIBRARY_PATH="$lib" RKL_RUNTIME="$SIM_LIB" \
  RKLLM_SIM_TIME_SCALE=0 RKL_TEST_TMP="$t/tmp" "$@"; }
mkdir -p "$t/tmp"
for mode in in-process isolated; do
  out=$(run "$t/dist_smoke" "$model" "$mode") || fail "dist_smoke $mode failed"
  case $out in *"pong from the packaged librkl"*) ;; *) fail "dist_smoke $mode: unexpected reply: $out" ;; esac
  echo "dist_smoke, $mode: $(printf '%s' "$out" | tr '\n' ' ')"
done
mv "$root/usr/libexec/rkl-host" "$t/rkl-host.away"
if run "$t/dist_smoke" "$model" isolated > "$t/without-host.out" 2>&1; then
  fail "isolation mode worked without the packaged rkl-host: which worker did it start?"
fi
mv "$t/rkl-host.away" "$root/usr/libexec/rkl-host"
echo "isolation mode fails without /usr/libexec/rkl-host: $(tail -n 1 "$t/without-host.out" | cut -c1-120)..."
for abi in 1.2 1.3; do
  run env RKLLM_SIM_ABI=$abi "$t/test_api" > "$t/test_api-$abi.out" 2>&1 \
    || { cat "$t/test_api-$abi.out"; fail "test_api (packaged librkl.so, ABI $abi) failed"; }
done
run env RKL_TEST_QUICK=1 RKLLM_SIM_ABI=1.3 "$t/test_api-static" > "$t/test_api-static.out" 2>&1 \
  || { cat "$t/test_api-static.out"; fail "test_api (packaged librkl.a) failed"; }
echo "test_api against the packaged librkl.so (ABI 1.2, 1.3) and librkl.a: passed"

# ---- 4. on glibc 2.31's own loader and libc
sr=$SYSROOT_DIR/amd64
on231() { "$sr/lib64/ld-linux-x86-64.so.2" --library-path "$sr/lib/x86_64-linux-gnu:$lib" "$@"; }
mkdir -p "$t/caches"
on231 "$root/usr/bin/rkl-cache" list "$t/caches" > "$t/rkl-cache-231.out" 2>&1 \
  || { cat "$t/rkl-cache-231.out"; fail "rkl-cache (amd64) does not run on glibc 2.31"; }
on231 "$root/usr/bin/rkl" cache list "$t/caches" > "$t/rkl-231.out" 2>&1 \
  || { cat "$t/rkl-231.out"; fail "rkl (amd64) does not run on glibc 2.31"; }
# shellcheck disable=SC2086
cc --sysroot="$sr" -isystem "$sr/usr/include/x86_64-linux-gnu" -isystem "$sr/usr/include" $cflags \
  tests/c/dist_smoke.c -o "$t/dist_smoke-231" $flags \
  -B"$sr/usr/lib/x86_64-linux-gnu" -L"$sr/lib/x86_64-linux-gnu" -L"$sr/usr/lib/x86_64-linux-gnu"
v=$(on231 "$t/dist_smoke-231" version) || fail "librkl.so (amd64) does not load on glibc 2.31"
[ "$v" = "$VERSION" ] || fail "rkl_version() on glibc 2.31 says '$v', expected $VERSION"
# No simulator built for glibc 2.31: a missing runtime must be an error, not a crash.
if RKL_RUNTIME=/nonexistent/librkllmrt.so on231 "$t/dist_smoke-231" "$model" > "$t/nort.out" 2>&1; then
  fail "dist_smoke opened a model without a runtime"
fi
grep -q '^rkl_open: ' "$t/nort.out" || { cat "$t/nort.out"; fail "no rkl_open message on glibc 2.31"; }
echo "amd64 on glibc 2.31 (Debian 11's ld.so and libc): rkl-cache and rkl run, librkl.so loads (rkl_version $v, rkl_open reports a missing runtime)"

sr=$SYSROOT_DIR/arm64
a64=$t/arm64
dpkg-deb -x "$DIST_DIR/rkl-tools_${DEB_VERSION}_arm64.deb" "$a64"
G_SLICE=always-malloc qemu-aarch64 "$sr/lib/ld-linux-aarch64.so.1" --library-path "$sr/lib/aarch64-linux-gnu" \
  "$a64/usr/bin/rkl-cache" list "$t/caches" > "$t/rkl-cache-231-arm64.out" 2>&1 \
  || { cat "$t/rkl-cache-231-arm64.out"; fail "rkl-cache (arm64) does not run on glibc 2.31"; }
echo "arm64 on glibc 2.31 (qemu-aarch64): rkl-cache runs"
echo "dist-check: all passed"

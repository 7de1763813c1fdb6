#!/bin/sh
# Runs a command in which the kernel starts aarch64 ELF programs under
# qemu-aarch64, so that an emulated program can start another (isolation
# mode's rkl-host, tests that re-run their own executable, rkl-cache).
#
# The host is not touched: the command runs in a new user and mount
# namespace (as its root, mapped to the caller) with a binfmt_misc
# instance of its own (Linux 6.7 or later), in which qemu-aarch64 is
# registered with the F flag (the interpreter is opened now, so it need not
# be visible to the programs later). qemu runs without -L: the programs'
# dynamic loader and libraries are the arm64 ones in /lib/aarch64-linux-gnu
# (libc6:arm64); pointing -L at the cross sysroot mixes the cross ld.so with
# that libc and thread creation hangs.
#
# G_SLICE=always-malloc: qemu 7.2 allocates through GLib's slice allocator,
# whose lock a forked child can inherit held by another thread of the
# parent; the child (between fork and exec, as in every Command::spawn of
# rkl-host) then waits on it forever (qemu issue 285, GLib issue 1079).
# Plain malloc is fork-safe. It is inherited by every program started here.
set -eu
export G_SLICE=always-malloc
[ $# -gt 0 ] || { echo "usage: $0 command [args...]" >&2; exit 2; }
qemu=$(command -v qemu-aarch64) || { echo "qemu-aarch64 not found (Debian: qemu-user)" >&2; exit 1; }

exec unshare --user --map-root-user --mount sh -c '
  set -eu
  qemu=$1; shift
  bm=/proc/sys/fs/binfmt_misc
  mount -t binfmt_misc binfmt_misc "$bm" || {
    echo "cannot mount a private binfmt_misc (needs Linux 6.7+ and unprivileged user namespaces)" >&2
    exit 1
  }
  # ELF64, little-endian, ET_EXEC or ET_DYN, EM_AARCH64 (183).
  magic="\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00"
  mask="\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
  printf "%s" ":qemu-aarch64:M::$magic:$mask:$qemu:F" > "$bm/register"
  exec "$@"
' sh "$qemu" "$@"

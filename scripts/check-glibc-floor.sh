#!/bin/sh
# Fails when an ELF file needs a glibc symbol version above the floor.
#
#   scripts/check-glibc-floor.sh [--objdump PROGRAM] FLOOR FILE...
#
# Reads each file's dynamic symbols with objdump -T (PROGRAM for another
# architecture's, e.g. aarch64-linux-gnu-objdump) and names every symbol
# whose GLIBC_x.y[.z] version is newer than FLOOR (e.g. 2.31); prints each
# file's highest version otherwise.
set -eu
objdump=objdump
if [ "${1:-}" = --objdump ]; then objdump=$2; shift 2; fi
[ $# -ge 2 ] || { echo "usage: $0 [--objdump PROGRAM] FLOOR FILE..." >&2; exit 2; }
floor=$1; shift
status=0
for f in "$@"; do
  syms=$("$objdump" -T "$f") || { echo "$f: objdump -T failed" >&2; exit 1; }
  # "... (GLIBC_2.34) pthread_key_create" or "... GLIBC_2.2.5 memcpy"
  result=$(printf '%s\n' "$syms" | awk -v floor="$floor" -v file="$f" '
    function newer(a, b,   x, y, i, n) {
      n = split(a, x, "."); split(b, y, ".")
      for (i = 1; i <= (n > 3 ? n : 3); i++) {
        if ((x[i] + 0) > (y[i] + 0)) return 1
        if ((x[i] + 0) < (y[i] + 0)) return 0
      }
      return 0
    }
    match($0, /GLIBC_[0-9][0-9.]*/) {
      v = substr($0, RSTART + 6, RLENGTH - 6)
      sym = $NF
      if (newer(v, floor)) { printf "%s: %s needs GLIBC_%s, above the floor %s\n", file, sym, v, floor; bad = 1 }
      if (max == "" || newer(v, max)) max = v
    }
    END { if (!bad) printf "%s: highest glibc version needed %s (floor %s)\n", file, (max == "" ? "none" : max), floor; exit bad }
  ') || status=1
  printf '%s\n' "$result"
done
exit $status

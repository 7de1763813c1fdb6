#!/usr/bin/env bash
# Builds the simulator and a C smoke program against it, then runs the program
# for both imitated releases and every waiting mode. Exits non-zero on any
# failure. Usage: bash sim/tests/smoke.sh (from anywhere).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libdir="${CARGO_TARGET_DIR:-$root/target}/debug"

(cd "$root" && cargo build -q -p rkllm-sim)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -std=c11 -Wall -Wextra -Werror -o "$work/smoke" "$here/smoke.c" \
  -L "$libdir" -lrkllmrt -Wl,-rpath,"$libdir"

export RKLLM_SIM_TIME_SCALE=0
for abi in 1.2 1.3; do
  for waiting in carry held repeat; do
    echo "smoke: RKLLM_SIM_ABI=$abi RKLLM_SIM_WAITING=$waiting"
    RKLLM_SIM_ABI=$abi RKLLM_SIM_WAITING=$waiting "$work/smoke" "$abi" "$work"
  done
  echo "smoke: RKLLM_SIM_ABI=$abi double destroy must abort"
  status=0
  # (in a group with stderr redirected, so bash's "Aborted" notice is kept out)
  { RKLLM_SIM_ABI=$abi "$work/smoke" "$abi" "$work" double-destroy; } 2>"$work/stderr" || status=$?
  if [ "$status" -ne 134 ] || ! grep -q "not a live handle" "$work/stderr"; then
    cat "$work/stderr" >&2
    echo "smoke: a double destroy ended with status $status, not SIGABRT (134)" >&2
    exit 1
  fi
done
echo "smoke: all passed"

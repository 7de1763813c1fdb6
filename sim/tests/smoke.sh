#!/usr/bin/env bash
# Builds the simulator and a C smoke program against it, then runs the program
# for both imitated releases and every waiting mode; then the family-1-2-0
# build and smoke.c built for it
# (-DOLD_FAMILY) for 1.2.0, 1.2.1b1 and silent, by RKLLM_SIM_RELEASE and by
# the model file's `release` key. Exits non-zero on any failure.
# Usage: bash sim/tests/smoke.sh (from anywhere).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
libdir="$target/debug"
olddir="$target/sim-smoke-1-2-0/debug"

(cd "$root" && cargo build -q -p rkllm-sim)
(cd "$root" && cargo build -q -p rkllm-sim --features family-1-2-0 --target-dir "$target/sim-smoke-1-2-0")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -std=c11 -Wall -Wextra -Werror -o "$work/smoke" "$here/smoke.c" \
  -L "$libdir" -lrkllmrt -Wl,-rpath,"$libdir" -ldl -lm
cc -std=c11 -Wall -Wextra -Werror -DOLD_FAMILY -o "$work/smoke-old" "$here/smoke.c" \
  -L "$olddir" -lrkllmrt -Wl,-rpath,"$olddir" -ldl -lm

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
# The family-1-2-0 build: RKLLM_SIM_ABI is ignored (always 1.2's param).
old_run() { # EXPECTED-VERSION-LINE-OR-none ENV-RELEASE ARGS...
  local want=$1 env=$2
  shift 2
  echo "smoke: family-1-2-0 RKLLM_SIM_RELEASE=$env smoke-old $*"
  RKLLM_SIM_ABI=1.3 RKLLM_SIM_RELEASE=$env "$work/smoke-old" "$@" >"$work/stdout"
  if [ "$want" = none ]; then
    if grep -q "rkllm-runtime version" "$work/stdout"; then
      echo "smoke: the silent release printed a version line" >&2
      exit 1
    fi
  elif ! grep -q "^I rkllm: rkllm-runtime version: $want (simulator)" "$work/stdout" \
    || grep "rkllm-runtime version" "$work/stdout" | grep -vq "version: $want "; then
    cat "$work/stdout" >&2
    echo "smoke: the version line is not $want" >&2
    exit 1
  fi
}
for waiting in carry held repeat; do
  export RKLLM_SIM_WAITING=$waiting
  old_run 1.2.0 1.2.0 1.2.0 "$work"
  old_run 1.2.1b1 1.2.1b1 1.2.1b1 "$work"
  old_run none silent silent "$work"
done
unset RKLLM_SIM_WAITING
# The model file's `release` wins over the environment.
old_run 1.2.0 silent 1.2.0 "$work" release-key
old_run 1.2.1b1 1.2.0 1.2.1b1 "$work" release-key
old_run none 1.2.1b1 silent "$work" release-key
echo "smoke: all passed"

#!/bin/sh
# `make demo`'s last part: `rkl serve` answers one streamed request from curl.
# Usage: demo-serve.sh RKL_BINARY MODEL WORKDIR (RKL_RUNTIME names the simulator).
set -eu
rkl=$1 model=$2 work=$3
mkdir -p "$work"
"$rkl" serve "$model" --listen 127.0.0.1:0 --cache-dir "$work/cache" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
until grep -q 'listening on' "$work/serve.log" 2>/dev/null; do
  i=$((i + 1)); [ $i -le 100 ] || { cat "$work/serve.log"; exit 1; }
  kill -0 $pid 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^rkl serve: listening on //p' "$work/serve.log")
id=$(basename "$model"); id=${id%.*}
grep '^rkl serve: model' "$work/serve.log"
body='{"model": "'"$id"'", "stream": true, "messages": [{"role": "system", "content": "You are a demo."}, {"role": "user", "content": "Hello over HTTP!"}]}'
echo "\$ curl -N $url/v1/chat/completions -d '$body'"
curl -sS -N "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" > "$work/reply.txt"
grep '^data: ' "$work/reply.txt" | head -n 2
echo "  ... ($(grep -c '^data: ' "$work/reply.txt") events in all, the last: $(grep '^data: ' "$work/reply.txt" | tail -n 1))"
printf 'reply: '
grep '^data: {' "$work/reply.txt" | sed 's/^data: //' | python3 -c '
import json, sys
print("".join((json.loads(l)["choices"] or [{}])[0].get("delta", {}).get("content") or "" for l in sys.stdin))'
grep -q '^data: \[DONE\]' "$work/reply.txt"

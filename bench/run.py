#!/usr/bin/env python3
"""Runs rkl's benchmarks and writes BENCHMARKS.md and the plots.

Called by `make bench` (full) and `make bench-smoke` (tiny, part of `make
check`), which build the drivers first; see mk/bench.mk. Every measurement is
made by a driver program that prints "BENCH {json}" lines:

  bench/c/raw_rkllm.c   the baseline: plain C on the simulator's rkllm_run
  bench/c/rkl_bench.c   rkl's C API
  bench/go, bench/node, bench/python   the bindings
  benches/generate.rs   allocations counted by a global allocator (cargo bench)
  benches/cache_load.rs the parts of a cache check: hashing in place vs the
                        sealed copy (cargo bench)
  benches/auto_cache.rs automatic prompt caching: TTFT of a first request,
                        hits and no cache, and a hit's lookup cost (cargo bench)

This script only runs them (interleaved, so slow drift of a noisy machine
hits every side alike), summarises the values (median and p10/p90 or
min/max) and renders Markdown tables and PNG plots (matplotlib).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each mode runs. mk/bench.mk runs benches/cache_load.rs with the same
# cache_sizes_mib (BENCH_CACHE_MIB, BENCH_SMOKE_CACHE_MIB). The full mode fits in about 2 minutes of run time on
# a 2-core machine; the smoke mode only checks that every path still works.
MODES = {
    "full": dict(blocks=5, token_rounds=20, binding_rounds=6, roundtrip=2000, openclose=200,
                 openclose_procs=5, abort_rounds=25, abort_decodes=[0, 30, 60], contention_threads=[1, 4, 16],
                 contention_gens=48, contention_repeats=3, cache_lengths=[100, 250, 330, 500, 1000, 2000, 4000],
                 cache_rounds=5, cache_sizes_mib=[8, 33, 256], load_rounds=10, check_scale=0.02,
                 iso_rounds=10),
    "smoke": dict(blocks=1, token_rounds=2, binding_rounds=1, roundtrip=20, openclose=5,
                  openclose_procs=1, abort_rounds=2, abort_decodes=[0, 30], contention_threads=[1, 4],
                  contention_gens=4, contention_repeats=1, cache_lengths=[100, 300],
                  cache_rounds=1, cache_sizes_mib=[1], load_rounds=1, check_scale=None,
                  iso_rounds=1),
}

# The simulator's timing model for the prompt-cache figures: prefill cost
# from the real RK3588 figure (1775 ms for ~330 tokens of Qwen3-0.6B, i.e.
# 5.4 ms per token), decode 40 ms per token, 112 KiB of KV per token.
PREFILL_US = 5400
DECODE_US = 40000
KV_BYTES = 114688
CONTENTION_TOKENS = 10
CONTENTION_DECODE_US = 1000


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- running

class Runner:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.env = dict(os.environ)
        self.env.update(RKL_RUNTIME=args.sim, RKLLM_SIM_ABI="1.3", RKL_LIBRARY=args.lib)
        self.env.pop("RKL_ISOLATED", None)
        self.env.pop("LD_PRELOAD", None)

    def run(self, cmd, env=None, cwd=None, timeout=300):
        e = dict(self.env)
        e.update(env or {})
        proc = subprocess.run([str(c) for c in cmd], env=e, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed with exit code {proc.returncode}")
        out = []
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH "):
                out.append(json.loads(line[6:]))
            elif line.startswith("isolation mode not available"):
                out.append({"case": "iso_message", "text": line, "values": []})
        return out

    def c(self, prog, *argv, env=None):
        return self.run([Path(self.args.bin) / prog, *argv], env=env)


def model_file(work, name, reply, time_scale=0, prefill_us=0, decode_us=0, extra=""):
    path = work / f"{name}.sim"
    path.write_text(f"RKLLM-SIM 1\nname = {name}\ntime_scale = {time_scale}\n"
                    f"prefill_us_per_token = {prefill_us}\ndecode_us_per_token = {decode_us}\n"
                    f"{extra}reply = {reply}\n")
    return str(path)


# ----------------------------------------------------------------- statistics

def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values):
    return statistics.median(values) if values else float("nan")


def fmt(x, digits=3):
    if x != x:  # NaN
        return "–"
    if float(x).is_integer() and abs(x) < 1e12:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits - 1}f}" if abs(x) >= 1 else f"{x:.{digits}f}"


def spread(values, unit=""):
    """'median (p10–p90)' for many values, 'median (min–max)' for few."""
    if not values:
        return "–"
    u = f" {unit}" if unit else ""
    if len(values) == 1:
        return f"{fmt(values[0])}{u}"
    if len(values) >= 10:
        return f"{fmt(med(values))}{u} ({fmt(pct(values, 10))}–{fmt(pct(values, 90))})"
    return f"{fmt(med(values))}{u} [{fmt(min(values))}–{fmt(max(values))}]"


# ----------------------------------------------------------------- the benchmarks

def bench_per_token(r, cfg, res):
    """Section 1 and 2: zero-cost tokens through every path, interleaved."""
    work = r.work
    reply = "token " * 1333  # about 4000 tokens of 1-3 characters
    m = model_file(work, "tokens", reply)
    paths = {
        "raw": lambda: r.c("raw_rkllm", "tokens", m, cfg["token_rounds"]),
        "rkl": lambda: r.c("rkl_bench", "tokens", m, cfg["token_rounds"]),
        "stream": lambda: r.c("rkl_bench", "stream", m, cfg["token_rounds"]),
    }
    if r.args.go_bin:
        paths["go"] = lambda: r.run([r.args.go_bin, m, cfg["binding_rounds"]])
    if r.args.python:
        paths["py"] = lambda: r.run([r.args.python, ROOT / "bench/python/bench.py", m, cfg["binding_rounds"]],
                                    env={"PYTHONPATH": str(ROOT / "bindings/python/src")})
    if r.args.node:
        # The package as installed from its npm tarball (mk/bindings.mk).
        node_env = {"NODE_PATH": r.args.node_path} if r.args.node_path else None
        paths["node"] = lambda: r.run([r.args.node, ROOT / "bench/node/bench.js", m, cfg["binding_rounds"]],
                                      env=node_env)
    tokens = {}
    blocks = []  # per block: case -> median
    for b in range(cfg["blocks"]):
        log(f"per-token cost, block {b + 1}/{cfg['blocks']}: {', '.join(paths)}")
        block = {}
        for name, fn in paths.items():
            for item in fn():
                res.setdefault(item["case"], []).extend(item["values"])
                block[item["case"]] = med(item["values"])
                tokens[item["case"]] = item.get("tokens")
        blocks.append(block)
    res["_blocks"] = blocks
    res["_tokens"] = tokens
    log("allocations per token (LD_PRELOAD counter)")
    pre = {"LD_PRELOAD": r.args.malloc_count}
    for prog, cmd in (("raw_rkllm", "tokens"), ("rkl_bench", "tokens"), ("rkl_bench", "stream")):
        for item in r.c(prog, cmd, m, 1, env=pre):
            if item["case"].endswith("_allocs"):
                res[item["case"]] = item["values"]
    if r.args.rust:
        for line in Path(r.args.rust).read_text().splitlines():
            if line.startswith("BENCH "):
                item = json.loads(line[6:])
                res[item["case"]] = item["values"]


def bench_calls(r, cfg, res):
    """Section 3: open/close, 1-token round trip, abort latency."""
    work = r.work
    short = model_file(work, "short", "Hi there")
    log("open/close and 1-token round trip")
    for _ in range(cfg["openclose_procs"]):
        for prog in ("raw_rkllm", "rkl_bench"):
            for item in r.c(prog, "openclose", short, cfg["openclose"]):
                res.setdefault(item["case"], []).extend(item["values"])
    for prog in ("raw_rkllm", "rkl_bench"):
        for item in r.c(prog, "roundtrip", short, cfg["roundtrip"]):
            res[item["case"]] = item["values"]
    for decode_ms in cfg["abort_decodes"]:
        log(f"abort latency, decode {decode_ms} ms per token")
        if decode_ms == 0:
            m = model_file(work, "abort0", "token " * 1333)
            max_delay_us = 0  # abort at a random token 1..1000 instead (see bench/c/common.h)
        else:
            m = model_file(work, f"abort{decode_ms}", "token " * 100, time_scale=1, decode_us=decode_ms * 1000)
            max_delay_us = decode_ms * 1000
        for prog in ("raw_rkllm", "rkl_bench"):
            for item in r.c(prog, "abort", m, cfg["abort_rounds"], max_delay_us):
                res[f"{item['case']}@{decode_ms}"] = item["values"]


def bench_contention(r, cfg, res):
    """Section 4: N threads generating on one or two models of one runtime."""
    work = r.work
    reply = "x" * (CONTENTION_TOKENS * 2)  # 1+2+3+1+2+3+... characters: 10 tokens
    timed = model_file(work, "contention", reply[:19], time_scale=1, decode_us=CONTENTION_DECODE_US)
    free = model_file(work, "contention0", reply[:19])
    out = []
    for label, m in (("timed", timed), ("zero", free)):
        for models in (1, 2):
            for threads in cfg["contention_threads"]:
                gens = max(1, cfg["contention_gens"] // threads)
                log(f"contention ({label}): {threads} threads, {models} model(s), {gens} generations each")
                for rep in range(cfg["contention_repeats"]):
                    for item in r.c("rkl_bench", "contention", m, threads, models, gens):
                        item["label"] = label
                        out.append(item)
    res["_contention"] = out


def bench_cache(r, cfg, res):
    """Section 5: TTFT without/with a prompt cache, and cache validation."""
    work = r.work
    cache_dir = work / "caches"
    cache_dir.mkdir(exist_ok=True)
    m = model_file(work, "cache", "Sure.", prefill_us=PREFILL_US, decode_us=DECODE_US)
    log(f"prompt cache TTFT for {cfg['cache_lengths']} tokens (time_scale 0, virtual times)")
    res["_ttft"] = r.c("rkl_bench", "cache-ttft", m, cache_dir, cfg["cache_rounds"], *cfg["cache_lengths"])
    if cfg["check_scale"]:
        s = cfg["check_scale"]
        log(f"checking the scaled-back model at time_scale {s}")
        ms = model_file(work, "cache-scaled", "Sure.", time_scale=s, prefill_us=PREFILL_US, decode_us=DECODE_US)
        res["_ttft_check"] = r.c("rkl_bench", "cache-ttft", ms, cache_dir, 3, 330)
        res["_ttft_check_scale"] = s
    loads = []
    for mib in cfg["cache_sizes_mib"]:
        log(f"cache validation, {mib} MiB payload")
        kv = mib * 1024 * 1024 // 330
        ml = model_file(work, f"cache{mib}", "Sure.", prefill_us=PREFILL_US, decode_us=DECODE_US,
                        extra=f"kv_bytes_per_token = {kv}\n")
        items = r.c("rkl_bench", "cache-load", ml, cache_dir, cfg["load_rounds"], 330)
        loads.append({"mib": mib, "items": {i["case"]: i for i in items}})
    # The parts of the check, from benches/cache_load.rs (run by make with
    # the same sizes): hashing in place (before sealed copies) and the copy.
    if r.args.rust_cache:
        for line in Path(r.args.rust_cache).read_text().splitlines():
            if line.startswith("BENCH "):
                item = json.loads(line[6:])
                load = next((l for l in loads if l["mib"] == item["mib"]), None)
                if load is None:
                    load = {"mib": item["mib"], "items": {}}
                    loads.append(load)
                load["items"][item["case"]] = item
        loads.sort(key=lambda l: l["mib"])
    res["_loads"] = loads


def bench_isolation(r, cfg, res):
    """Section 6: isolation mode, when this rkl has it."""
    work = r.work
    m = model_file(work, "iso", "token " * 1333)
    short = model_file(work, "iso-short", "Hi there")
    fault = model_file(work, "iso-fault", "token " * 10, extra="fault = segv@token:2\n")
    log("isolation mode")
    env = {}
    if r.args.host and Path(r.args.host).exists():
        env["RKL_HOST"] = r.args.host
    try:
        items = r.c("rkl_bench", "isolation", m, short, fault, cfg["iso_rounds"], env=env)
    except SystemExit as e:
        res["_iso"] = {"error": str(e)}
        return
    iso = {}
    for i in items:  # the token cases come twice (interleaved): merge them
        if i["case"] in iso:
            iso[i["case"]]["values"] += i["values"]
        else:
            iso[i["case"]] = i
    res["_iso"] = iso


def bench_auto_cache(r, cfg, res):
    """Section 7: automatic prompt caching, from benches/auto_cache.rs (run by
    make before this script, with its own sizes: see mk/bench.mk)."""
    if not r.args.rust_auto or not Path(r.args.rust_auto).exists():
        return
    auto = {}
    for line in Path(r.args.rust_auto).read_text().splitlines():
        if line.startswith("BENCH "):
            item = json.loads(line[6:])
            auto[item["case"]] = item
    res["_auto"] = auto


def bench_named(path):
    """`BENCH {"name": ..., "value": ...}` lines of a Rust bench, by name."""
    if not path or not Path(path).exists():
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("BENCH "):
            item = json.loads(line[6:])
            out[item["name"]] = item
    return out


def bench_image_and_serve(r, cfg, res):
    """Sections 8 and 9, from benches/image_input.rs and cli/benches/serve.rs
    (run by make before this script)."""
    res["_image"] = bench_named(r.args.rust_image)
    res["_serve"] = bench_named(r.args.rust_serve)


# ----------------------------------------------------------------- machine

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = ""
    commit = sh(f"git -C {ROOT} rev-parse --short HEAD")
    if sh(f"git -C {ROOT} status --porcelain --untracked-files=no -- src sim include"):
        commit += " (with uncommitted changes in src/sim/include)"
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "memory": mem,
        "load": load,
        "rustc": sh("rustc --version"),
        "cc": sh("cc --version | head -n 1"),
        "go": sh("go version"),
        "node": sh("node --version"),
        "python": platform.python_version(),
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------- report

def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


PATH_LABELS = [
    ("raw_tokens", "plain C on `rkllm_run` (baseline)"),
    ("rkl_tokens", "`rkl_generate`, C callback"),
    ("stream_tokens", "`rkl_stream_next`, C"),
    ("rust_generate_tokens", "Rust `Model::generate`"),
    ("go_generate_tokens", "Go `Model.Generate`"),
    ("go_stream_tokens", "Go `Stream.Next`"),
    ("py_generate_tokens", "Python `Model.generate(on_text)`"),
    ("py_stream_tokens", "Python `for text in stream`"),
    ("node_generate_tokens", "Node `model.generate({onText})`"),
    ("node_stream_tokens", "Node `for await (… of stream)`"),
]


def summarize(res, mode):
    """Every figure the tables and the README summary use."""
    s = {}
    raw = res.get("raw_tokens", [])
    raw_med = med(raw)
    s["per_token"] = []
    for case, label in PATH_LABELS:
        v = res.get(case)
        if not v:
            continue
        diffs = [b[case] - b["raw_tokens"] for b in res.get("_blocks", []) if case in b and "raw_tokens" in b]
        s["per_token"].append(dict(case=case, label=label, values=v, med=med(v), p10=pct(v, 10), p90=pct(v, 90),
                                   diff=med(v) - raw_med,
                                   diff_lo=min(diffs) if diffs else None, diff_hi=max(diffs) if diffs else None,
                                   ratio=med(v) / raw_med if raw_med else float("nan"),
                                   paired=bool(diffs)))
    return s


def render(res, mach, mode, plots_rel, cmdline):
    s = summarize(res, mode)
    L = []
    w = L.append
    w("# rkl benchmarks\n")
    if mode == "smoke":
        w("> **Smoke run** (`make bench-smoke`): tiny sizes and debug builds, only to prove that every "
          "benchmark still runs. The figures mean nothing; see `make bench`.\n")
    w("Generated by `make bench` (`bench/run.py`) from one run on the machine below; do not edit by hand. "
      "Everything runs against the simulator (`sim/`), a look-alike `librkllmrt.so` with the real symbols "
      "and the 1.3 struct layouts (`RKLLM_SIM_ABI=1.3`), so the figures measure rkl and the simulator's own "
      "software cost, never an NPU. rkl's cost is always shown next to a baseline measured in the same run, "
      "as a difference and a ratio, so the results hold on a noisy machine.\n")
    w("Spread: `median (p10–p90)` over all samples when there are 10 or more, else `median [min–max]`. "
      "All runs alternate between the baseline and rkl in blocks, so drift of the machine hits both. "
      "The machine may be shared with other builds and tests (see the load average below): absolute "
      "figures move with its load, differences and ratios much less.\n")
    w("## Machine\n")
    w(table(["", ""], [
        ["CPU", f"{mach['cpu']} ({mach['nproc']} logical CPUs)"], ["memory", mach["memory"]],
        ["kernel", mach["kernel"]],
        ["load average (1, 5, 15 min) before / after", f"{mach.get('load_before', '?')} / {mach['load']}"], ["compilers", f"{mach['rustc']}; {mach['cc']}"],
        ["bindings", f"{mach['go']}; node {mach['node']}; Python {mach['python']}"],
        ["rkl commit", mach["commit"]], ["date", mach["date"]], ["command", f"`{cmdline}`"]]))
    w("")
    summary_at = len(L)

    # ------------------------------------------------ 1 + 2
    w("## 1–2. Per-token overhead, pull stream and bindings\n")
    tok = res.get("_tokens", {}).get("raw_tokens") or "≈4000"
    w(f"One generation of {tok} zero-cost tokens (simulator with `time_scale = 0`, prefill and decode 0 µs: "
      "the tokens come as fast as the simulator can make them, 1–3 ASCII characters each), prompt `bench`. "
      "The baseline is `bench/c/raw_rkllm.c`: a plain C program that declares the 1.3 structs itself and "
      "calls the simulator's `rkllm_run` with a callback that counts the bytes (`strlen`). rkl's callback "
      "does the same with the length it is given. Time per token = wall time of the whole call / tokens, so a "
      "call's fixed cost is spread over the tokens (it is measured on its own in section 3). "
      "`+ns/token` is the difference of the medians, with the range of the same difference taken block by "
      "block in brackets; the ratio divides the medians. Go, Python and Node use the bindings in `bindings/` unchanged (Node as installed from its `npm pack` tarball).\n")
    rows = []
    for p in s["per_token"]:
        d = "–" if p["case"] == "raw_tokens" else (
            f"{p['diff']:+,.0f}" + (f" [{p['diff_lo']:+,.0f}…{p['diff_hi']:+,.0f}]" if p["paired"] and
                                     p["diff_lo"] != p["diff_hi"] else ""))
        rows.append([p["label"], spread(p["values"]), d, "1" if p["case"] == "raw_tokens" else f"{p['ratio']:.2f}×"])
    w(table(["path", "ns/token", "+ns/token vs baseline", "ratio"], rows))
    w("")
    if any(p["case"] == "rust_generate_tokens" for p in s["per_token"]):
        w("The Rust row comes from `benches/generate.rs` (`cargo bench`), a separate process run before the "
          "blocks: its difference is to the median baseline, not paired.\n")
    w("**Allocations per token in steady state** (the target is 0). Steady state = (allocations of a "
      "4000-token generation − those of a 1000-token one) / 3000, so per-call allocations cancel.\n")
    arows = []
    ra = res.get("raw_allocs")
    if ra:
        arows.append(["plain C on `rkllm_run`", "LD_PRELOAD malloc counter, whole process",
                      fmt(med(ra)), "the simulator's own (a result struct and a text per callback)"])
    for case, label in (("rkl_allocs", "`rkl_generate`, C callback"), ("stream_allocs", "`rkl_stream_next`, C")):
        v = res.get(case)
        if v:
            extra = f"rkl's share: {fmt(med(v) - med(ra))}" if ra else ""
            arows.append([label, "LD_PRELOAD malloc counter, whole process", fmt(med(v)), extra])
    for case in sorted(k for k in res if k.startswith("rust_allocs:")):
        call = res.get(case.replace("rust_allocs:", "rust_allocs_call:"), [])
        arows.append([f"{case.split(':', 1)[1]}", "counting global allocator, rkl only",
                      fmt(med(res[case])), f"plus {fmt(med(call))} per call (1-token generation)" if call else ""])
    if arows:
        w(table(["path", "counted by", "allocations/token", "notes"], arows))
        w("")
    w(f"![per-token cost]({plots_rel}/per_token.png)\n")

    # ------------------------------------------------ 3
    w("## 3. Call overhead\n")
    w("Open/close and the 1-token round trip use a model with a 3-token reply and zero-cost timing. "
      "\"First open\" is the first `rkl_open` of a process: it also loads the runtime and identifies its "
      "release. Abort latency is the time from the `rkl_abort` call to `rkl_generate` returning. With a "
      "decode time the abort comes from another thread, a random delay (below one decode time) after the "
      "first token; with zero-cost tokens a whole generation takes less than a thread wake-up on a busy "
      "machine, so the token callback itself calls `rkl_abort` (allowed by the API) at a random callback "
      "1..1000 of about 4000; the baseline is `rkllm_abort` → `rkllm_run` "
      "returning. With decode time > 0 the simulator sleeps `time_scale = 1` real time and checks its abort "
      "flag every ≤ 5 ms while sleeping (the real runtime only between tokens), which sets the floor of "
      "both columns.\n")
    rows = []

    def row(label, raw_key, rkl_key, unit="µs", scale=1.0):
        a = [x * scale for x in res.get(raw_key, [])]
        b = [x * scale for x in res.get(rkl_key, [])]
        if not b:
            return
        d = f"{med(b) - med(a):+,.1f} {unit}" if a else "–"
        rows.append([label, spread(a, unit) if a else "–", spread(b, unit), d])

    row("open + close", "raw_openclose", "rkl_openclose")
    row("first open + close in a process", "raw_open_first", "rkl_open_first")
    row("generate, 1 token, round trip", "raw_roundtrip", "rkl_roundtrip")
    for decode_ms in MODES[mode]["abort_decodes"]:
        unit, scale = ("µs", 1.0) if decode_ms == 0 else ("ms", 0.001)
        row(f"abort latency, decode {decode_ms} ms/token", f"raw_abort@{decode_ms}", f"rkl_abort@{decode_ms}",
            unit, scale)
    for decode_ms in MODES[mode]["abort_decodes"]:
        a, b = res.get(f"raw_abort_after@{decode_ms}", []), res.get(f"rkl_abort_after@{decode_ms}", [])
        if b:
            rows.append([f"text callbacks after the abort call, decode {decode_ms} ms/token",
                         spread(a) if a else "–", spread(b), f"{med(b) - med(a):+,.0f}" if a else "–"])
    w(table(["measure", "plain C on the runtime", "rkl", "rkl − plain"], rows))
    w("")
    after0 = res.get("rkl_abort_after@0", [])
    if after0 and max(after0) > 0:
        w("With zero-cost tokens the simulator produces tokens faster than rkl hands them to the callback "
          f"(section 1), so tokens queue up between rkl's runtime thread and the caller. `rkl_abort` stops the "
          "runtime at once, but `rkl_generate` still delivers the text already queued before it returns: "
          f"a median of {fmt(med(after0))} callbacks (up to {fmt(max(after0))}) came after the abort call, "
          "and that backlog is what the latency at decode 0 measures. With real decode times (tens of ms "
          "per token) there is no backlog and rkl adds nothing measurable to the runtime's own abort "
          "latency.\n")
    elif after0:
        w("No text reached the callback after the abort call, also with zero-cost tokens: text the runtime "
          "queued before the abort is dropped, not delivered. With real decode times (tens of ms per token) "
          "rkl adds nothing measurable to the runtime's own abort latency.\n")
    w(f"![abort latency]({plots_rel}/abort.png)\n")

    # ------------------------------------------------ 4
    w("## 4. Serialisation under contention\n")
    w(f"N threads each run generations of {CONTENTION_TOKENS} tokens on one model, or alternately on two "
      "models of the same runtime (rkl runs every call on one runtime one at a time, in order). "
      f"\"Timed\": decode {CONTENTION_DECODE_US / 1000:g} ms per token at `time_scale = 1`, so one generation "
      f"holds the runtime ≥ {CONTENTION_TOKENS * CONTENTION_DECODE_US / 1000:g} ms and the ideal throughput is "
      f"{1e6 / (CONTENTION_TOKENS * CONTENTION_DECODE_US):.0f} generations/s; \"zero-cost\": no sleeping, "
      "which shows the dispatching cost itself. Queue wait is `rkl_stats.queue_ms`, the time a request "
      "waited behind earlier calls; p50/p99 over all requests of one run. Each cell: median [min–max] over "
      f"{MODES[mode]['contention_repeats']} runs.\n")
    crow = []
    groups = {}
    for item in res.get("_contention", []):
        groups.setdefault((item["label"], item["models"], item["threads"]), []).append(item)
    for (label, models, threads), items in sorted(groups.items(), key=lambda kv: (kv[0][0] != "timed", kv[0][1], kv[0][2])):
        thr = [i["gens"] / (i["wall_ms"] / 1000) for i in items]
        tps = [i["tokens"] / (i["wall_ms"] / 1000) for i in items]
        p50 = [pct(i["values"], 50) for i in items]
        p99 = [pct(i["values"], 99) for i in items]
        crow.append(["timed" if label == "timed" else "zero-cost", models, threads, items[0]["gens"],
                     spread(thr), spread(tps), spread(p50), spread(p99)])
    w(table(["timing", "models", "threads", "generations", "generations/s", "tokens/s", "queue p50 (ms)",
             "queue p99 (ms)"], crow))
    w(f"\n![contention]({plots_rel}/contention.png)\n")

    # ------------------------------------------------ 5
    w("## 5. Prompt cache\n")
    w(f"The simulator's timing model is set from the real figures: prefill {PREFILL_US / 1000:g} ms per token "
      f"(1775 ms for ~330 tokens of Qwen3-0.6B on RK3588), decode {DECODE_US / 1000:g} ms per token, "
      f"{KV_BYTES // 1024} KiB of KV cache per token. Sleeping those times for real would take minutes, so "
      "the runs use `time_scale = 0` and **scale back**: the simulator still reports the virtual prefill "
      "and decode times it would have slept (`rkl_stats.prefill_ms`, `decode_ms`), and the real TTFT "
      "measured at `time_scale = 0` is what the software (rkl + simulator) adds on top. So\n\n"
      "    TTFT = virtual prefill + virtual first decode + real TTFT at time_scale 0\n\n"
      "Each request is the cached prompt plus ` Summary?` and generates 1 token. Without a cache the "
      "whole prompt is prefilled; with the cache loaded rkl checks the prompt's start against the cached "
      "prompt's hash and sends only the continuation. The cache files are real (the simulator writes "
      f"{KV_BYTES // 1024} KiB per token), so \"first load\" is a real `rkl_cache_load`: manifest checks plus "
      "reading the whole payload, from the page cache (the file was just written), into a sealed private "
      "copy while hashing it (xxh3-128); \"first request\" = first load + TTFT with the cache.\n")
    trow = []
    for item in res.get("_ttft", []):
        cold = item["cold_prefill_ms"] + item["cold_decode_ms"] + med(item["values"])
        warm = item["warm_prefill_ms"] + item["warm_decode_ms"] + med(item["warm_real"])
        item["_cold"], item["_warm"] = cold, warm
        trow.append([item["cold_prefill_tokens"], f"{cold:,.0f}", f"{warm:,.1f}", f"{cold / warm:.1f}×",
                     f"{item['payload_bytes'] / 1e6:,.0f}", f"{item['first_load_ms']:,.1f}",
                     f"{item['first_load_ms'] + warm:,.1f}",
                     f"{med(item['values']) * 1000:,.0f} / {med(item['warm_real']) * 1000:,.0f}"])
    w(table(["prompt tokens", "TTFT without cache (ms)", "TTFT with cache (ms)", "speed-up", "cache (MB)",
             "first load (ms)", "first request after load (ms)", "software part of TTFT without / with (µs)"],
            trow))
    w("")
    chk = res.get("_ttft_check")
    if chk:
        sc = res["_ttft_check_scale"]
        item = chk[0]
        real = med(item["values"])
        model = sc * (item["cold_prefill_ms"] + item["cold_decode_ms"])
        realw = med(item["warm_real"])
        modelw = sc * (item["warm_prefill_ms"] + item["warm_decode_ms"])
        w(f"Check of the scaling at `time_scale = {sc}` ({item['cold_prefill_tokens']} prompt tokens): measured "
          f"real TTFT {real:.1f} ms without and {realw:.2f} ms with the cache, against {model:.1f} ms and "
          f"{modelw:.2f} ms of scaled virtual time ({real / model:.2f}× and {realw / modelw:.2f}×; the "
          "remainder is the simulator's sleep granularity and the software part).\n")
    w(f"![TTFT]({plots_rel}/cache_ttft.png)\n")
    warm_ttft = med([i["_warm"] for i in res.get("_ttft", []) if "_warm" in i])
    sizes = ", ".join(f"{l['mib']}" for l in res.get("_loads", []))
    w(f"**Validation cost.** Payloads of {sizes} MiB (a 330-token prompt with the KV size per token set "
      "to give that payload). rkl checks a payload by reading it once into a sealed memory file "
      "(memfd, then `F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`), hashing each block "
      "between reading and writing it; the runtime reads that copy, so it reads exactly the checked bytes "
      "whatever happens to the file. \"First load\": the payload's modification time was just changed, so "
      "rkl copies and hashes it all, as on the first load in a process (this includes freeing the copy of "
      "the previous file state, which the new one replaces); \"repeated load\": the same file again, whose "
      "copy rkl still holds (same device, inode, size, mtime, ctime): neither read nor hashed. Check time "
      "= first − repeated; share of the cached TTFT = check time / (check time + the TTFT with a cache "
      f"from the table above, {fmt(warm_ttft)} ms): what the first request after a load pays for the check. "
      "The parts come from `benches/cache_load.rs` in the same run: \"hash in place\" is how rkl checked "
      "a payload before sealed copies (read and hash only; the runtime then read the file, which could "
      "have changed meanwhile), \"sealed copy\" the copy with its hash and seals, and \"free\" what "
      "dropping such a copy costs.\n")
    lrow = []
    for load in res.get("_loads", []):
        it = load["items"]
        first, again = it.get("cache_load_first"), it.get("cache_load_again")
        inplace, copy, free = it.get("cache_hash_in_place"), it.get("cache_sealed_copy"), it.get("cache_sealed_free")
        size = (first or inplace or copy or {}).get("payload_bytes", load["mib"] << 20)
        check_ms = med(first["values"]) - med(again["values"]) if first and again else float("nan")
        gbs = size / (check_ms / 1000) / 1e9 if check_ms > 0 else float("nan")
        share = check_ms / (check_ms + warm_ttft) if warm_ttft == warm_ttft else float("nan")
        if check_ms == check_ms:
            load["_hash_ms"], load["_gbs"], load["_share"] = check_ms, gbs, share
        if inplace:
            load["_inplace_ms"] = med(inplace["values"])
        cost = (f"+{fmt(med(copy['values']) - med(inplace['values']))} ms "
                f"({med(copy['values']) / med(inplace['values']):.1f}×)") if copy and inplace else "–"
        opt = lambda item: spread(item["values"], "ms") if item else "–"
        lrow.append([f"{load['mib']} MiB ({size / 1e6:,.1f} MB)", opt(first), opt(again),
                     f"{fmt(check_ms)} ms ({gbs:.2f} GB/s)" if check_ms == check_ms else "–",
                     f"{share * 100:.0f} %" if share == share else "–", opt(inplace), opt(copy), cost, opt(free)])
    w(table(["payload", "first load", "repeated load", "check time", "share of cached TTFT", "hash in place",
             "sealed copy", "copy vs hash in place", "free a copy"], lrow))
    w(f"\n![cache load]({plots_rel}/cache_load.png)\n")

    # ------------------------------------------------ 6
    w("## 6. Isolation mode\n")
    iso = res.get("_iso", {})
    if not iso:
        w("Not run.\n")
    elif "error" in iso:
        w(f"Isolation mode is present but the benchmark failed: {iso['error']}\n")
    elif "iso_unavailable" in iso:
        w("**isolation mode not available yet**: this rkl has no `RKL_OPEN_ISOLATED`, or opening with it "
          "started no worker process, so there is nothing to measure.\n")
    else:
        w("`RKL_OPEN_ISOLATED`: the runtime runs in a worker process (`rkl-host`) and every call and token "
          "crosses a socket. Both columns come from one process, measured alternately, with the models of "
          "sections 1 and 3. Restart after a crash: a model with `fault = segv@token:2` dies of SIGSEGV at "
          "its third token (`rkl_generate` returns `RKL_RUNTIME_CRASHED`); the time is that of the next "
          "request (1 token), on which rkl starts a new worker and reopens the model.\n")
        rows = []

        def iso_row(label, a, b, unit):
            av = iso.get(a, {}).get("values", []) if a else []
            bv = iso.get(b, {}).get("values", [])
            if bv:
                rows.append([label, spread(av, unit) if av else "–", spread(bv, unit),
                             f"{med(bv) - med(av):+,.1f} {unit}" if av else "–"])

        iso_row("per token", "inproc_tokens", "iso_tokens", "ns")
        iso_row("generate, 1 token, round trip", "inproc_roundtrip", "iso_roundtrip", "µs")
        iso_row("open + close", "inproc_openclose", "iso_openclose", "µs")
        iso_row("first open + close in the process", "inproc_open_first", "iso_open_first", "µs")
        iso_row("request after a crash (restart + 1 token)", "iso_roundtrip", "iso_restart", "µs")
        w(table(["measure", "in-process", "isolated", "difference"], rows))
        w("")

    # ------------------------------------------------ 7
    render_auto_cache(res.get("_auto", {}), w)
    render_image(res.get("_image", {}), w)
    render_serve(res.get("_serve", {}), w)
    L[summary_at:summary_at] = ["## Summary\n", "The headline figures of this run (details and spread below).\n",
                                summary_table(res, s), ""]
    return "\n".join(L) + "\n", s


AUTO_TARGET_MS = 1.0


def render_image(image, w):
    """Section 8: what passing a 576 x 1536 image embedding costs."""
    w("## 8. Passing an image embedding\n")
    if not image:
        w("Not run.\n")
        return
    v = lambda name: image.get(f"image_{name}_ms", {}).get("value")
    w("One 576-token x 1536-dim image (Qwen2-VL-2B's encoder output for 448 x 448, 3.5 MB of f32) in a "
      "multimodal request, from `benches/image_input.rs`, on the simulator at zero time cost (it reads and "
      "hashes every float, as a runtime reads them). Medians in ms.\n")
    rows = [[label, f"{v(name):,.3f} ms"] for name, label in (
        ("copy", "the C API's copy of the caller's array (the Rust API shares its `Arc<[f32]>`)"),
        ("check", "the shape and finiteness check"),
        ("in_process_image_cost", "whole request, in-process: with the image minus text alone"),
        ("in_process_c_request_with_image", "whole request through `rkl_generate` (copy included)"),
        ("in_process_request_with_image", "the same through the Rust API"),
        ("isolated_image_cost", "whole request, isolation mode: with the image minus text alone"),
    ) if v(name) is not None]
    w(table(["measure", "median"], rows))
    w("")


def render_serve(serve, w):
    """Section 9: rkl serve against the library alone."""
    w("## 9. rkl serve\n")
    if not serve:
        w("Not run.\n")
        return
    v = lambda name: serve.get(name, {}).get("value")
    w("`rkl serve` (OpenAI API, isolation mode) against the library alone in isolation mode, from "
      "`cli/benches/serve.rs`, on the simulator at zero cost; then TTFT through the server with automatic "
      "system-prompt caching (a 330-token system prompt).\n")
    rows = []
    for label, lib, srv, unit in (("per streamed token", "lib_per_token_us", "serve_per_token_us", "µs"),
                                  ("1-token request round trip", "lib_request_us", "serve_request_us", "µs")):
        if v(lib) is not None and v(srv) is not None:
            rows.append([label, f"{v(lib):,.2f} {unit}", f"{v(srv):,.2f} {unit}", f"{v(srv) - v(lib):+,.2f} {unit}"])
    w(table(["measure", "library", "rkl serve", "server's cost"], rows))
    w("")
    rows = [[label, f"{v(name):,.1f} ms"] for name, label in (
        ("serve_ttft_first_ms", "first request (cache saved)"),
        ("serve_ttft_second_ms", "second request (cache hit)"),
        ("serve_ttft_uncached_ms", "no system message (never cached)")) if v(name) is not None]
    w(table(["TTFT through rkl serve", "ms"], rows))
    w("")


def render_auto_cache(auto, w):
    """Section 7: the four TTFTs of automatic caching and a hit's lookup cost."""
    w("## 7. Automatic prompt caching\n")
    none = auto.get("auto_ttft_none")
    if not none:
        w("Not run.\n")
        return
    scale = none["time_scale"]
    w(f"`OpenConfig::auto_cache` (`cache_dir` in C) and a `cache_prefix` per request, from "
      f"`benches/auto_cache.rs`. Each request is a {none['prefix_tokens']}-token system prompt (the cache "
      f"prefix, {none['prefix_bytes']:,} bytes) plus ` Summary?`, and generates 1 token. The simulator "
      f"sleeps for real, times `time_scale = {scale:g}`, the timing model of section 5: prefill "
      f"{none['prefill_us'] / 1000:g} ms and decode {none['decode_us'] / 1000:g} ms per token, "
      f"{none['kv_bytes_per_token'] / 1024:g} KiB of KV per token (a cache of "
      f"{none['cache_bytes'] / 1e6:,.1f} MB). TTFT is rkl's own `Stats::ttft_ms` (`rkl_stats.ttft_ms`), "
      "which includes the cache work. \"First\": the first request with the prefix on an empty directory "
      "(the cache is saved, one prefill of the prefix, then loaded; the save's prefill is not in the "
      "tokens column). \"From disk\": the first request of a freshly opened model on the same directory; "
      "the process's sealed copy of the payload was replaced beforehand (by inspecting another cache), so "
      "the load reads and hashes the whole payload as another process or a restart would. \"By hand\": "
      "the same request on a model without automatic caching whose cache was loaded with "
      "`Model::cache_load`.\n")
    base = med(none["values"])
    rows = []
    for case, label, use in (
            ("auto_ttft_first", "first request with the prefix (saves the cache)", "`Saved`"),
            ("auto_ttft_hit_loaded", "later request, cache already loaded", "`Hit`"),
            ("auto_ttft_hit_disk", "fresh model on the same directory (cache from disk)", "`Hit`"),
            ("auto_ttft_none", "no caching (whole prompt prefilled)", "`None`"),
            ("auto_ttft_manual", "cache loaded by hand (`cache_load`), no automatic caching", "–")):
        item = auto.get(case)
        if not item:
            continue
        v = item["values"]
        ratio = base / med(v)
        vs = "–" if case == "auto_ttft_none" else (f"{ratio:.1f}× faster" if ratio >= 1 else
                                                   f"{1 / ratio:.2f}× slower")
        rows.append([label, use, item["prefill_tokens"], spread(v, "ms"), vs])
    w(table(["request", "`Stats::cache`", "tokens prefilled", "TTFT", "vs no caching"], rows))
    w("")
    lookup, real = auto.get("auto_lookup"), auto.get("auto_lookup_real")
    if not lookup:
        return
    w(f"**Lookup cost of a hit** (the target is < {AUTO_TARGET_MS:g} ms besides the runtime's own load): "
      "the client-side TTFT (from the `generate` call to the first chunk) of a hit with the cache already "
      "loaded minus that of the same continuation on the cache loaded by hand, the two models alternating, "
      "as the median of the paired differences. It is what automatic caching adds: naming the prefix's "
      "cache (a hash of the model's fingerprint, runtime, chat template, prefix and settings), marking it "
      "used (its manifest's modification time) and the lock that orders the choice. On a zero-cost "
      "simulator (`time_scale = 0`) the runtime's own time is next to nothing, so its sleeping jitter does "
      "not blur the difference; the pairs of the timed rounds above are a check.\n")
    lrows = []
    for item, label in ((lookup, "zero-cost simulator"), (real, f"timed rounds above (`time_scale = {scale:g}`)")):
        if not item:
            continue
        v = item["values"]
        verdict = "met" if med(v) < AUTO_TARGET_MS else "**missed**"
        lrows.append([label, len(v), spread([x * 1000 for x in v], "µs"), f"< {AUTO_TARGET_MS:g} ms: {verdict}"])
    w(table(["measured on", "pairs", "hit − by hand", "target"], lrows))
    w("")


def summary_table(res, s):
    """The table for the README: rkl next to its baseline, from this run."""
    rows = []
    per = {p["case"]: p for p in s["per_token"]}

    def tok(case, label):
        p = per.get(case)
        if p:
            rows.append([label, f"{p['med']:,.0f} ns vs {per['raw_tokens']['med']:,.0f} ns",
                         f"{p['diff']:+,.0f} ns/token ({p['ratio']:.1f}×)"])

    if "raw_tokens" in per:
        tok("rkl_tokens", "per token, `rkl_generate` (C callback)")
        tok("stream_tokens", "per token, `rkl_stream_next`")
        for case, label in (("go_generate_tokens", "Go"), ("py_generate_tokens", "Python"),
                            ("node_generate_tokens", "Node")):
            tok(case, f"per token, {label} binding (generate)")
    rust = [v for k, v in res.items() if k == "rust_allocs:C rkl_generate"]
    if rust:
        rows.append(["allocations per token in steady state (target 0)", "0 in the plain C program",
                     f"{fmt(med(rust[0]))} by rkl"])

    def call(label, a, b, unit="µs", scale=1.0):
        av, bv = res.get(a, []), res.get(b, [])
        if av and bv:
            rows.append([label, f"{fmt(med(bv) * scale)} {unit} vs {fmt(med(av) * scale)} {unit}",
                         f"{(med(bv) - med(av)) * scale:+,.1f} {unit}"])

    call("generate round trip, 1 token", "raw_roundtrip", "rkl_roundtrip")
    call("open + close", "raw_openclose", "rkl_openclose")
    for d in (30, 60):
        call(f"abort latency, decode {d} ms/token", f"raw_abort@{d}", f"rkl_abort@{d}", "ms", 0.001)
    timed = [i for i in res.get("_contention", []) if i["label"] == "timed" and i["models"] == 1]
    if timed:
        by = {}
        for i in timed:
            by.setdefault(i["threads"], []).append(i)
        lo, hi = min(by), max(by)
        thr = {t: med([i["gens"] / (i["wall_ms"] / 1000) for i in v]) for t, v in by.items()}
        p99 = med([pct(i["values"], 99) for i in by[hi]])
        rows.append([f"contention: {hi} threads vs 1 on one model ({CONTENTION_TOKENS} × "
                     f"{CONTENTION_DECODE_US / 1000:g} ms generations)",
                     f"{thr[hi]:.1f} vs {thr[lo]:.1f} generations/s",
                     f"queue wait p99 {fmt(p99)} ms"])
    tt = [i for i in res.get("_ttft", []) if "_cold" in i]
    picks = ([min(tt, key=lambda i: abs(i["cold_prefill_tokens"] - 330))] if tt else []) + tt[-1:]
    for item in [p for k, p in enumerate(picks) if p not in picks[:k]]:
        rows.append([f"TTFT, {item['cold_prefill_tokens']}-token prompt, without vs with cache",
                     f"{item['_cold']:,.0f} ms vs {item['_warm']:,.1f} ms",
                     f"{item['_cold'] / item['_warm']:.1f}× faster"])
    for load in res.get("_loads", []):
        if "_gbs" in load:
            before = f"; hashing in place {fmt(load['_inplace_ms'])} ms" if "_inplace_ms" in load else ""
            rows.append([f"cache check (sealed copy), first load of {load['mib']} MiB",
                         f"{fmt(load['_hash_ms'])} ms ({load['_gbs']:.1f} GB/s{before})",
                         f"{load['_share'] * 100:.0f} % of the first cached request"])
    auto = res.get("_auto", {})
    if "auto_ttft_hit_loaded" in auto and "auto_ttft_none" in auto:
        hit, none = med(auto["auto_ttft_hit_loaded"]["values"]), med(auto["auto_ttft_none"]["values"])
        rows.append([f"automatic caching, TTFT of a hit vs no cache ({auto['auto_ttft_none']['prefix_tokens']}-token "
                     "system prompt)", f"{fmt(hit)} ms vs {fmt(none)} ms", f"{none / hit:.1f}× faster"])
    if "auto_lookup" in auto:
        hit = auto.get("auto_lookup_hit_client", {}).get("values", [])
        hand = auto.get("auto_lookup_manual_client", {}).get("values", [])
        vs = (f"hit {fmt(med(hit) * 1000)} µs vs {fmt(med(hand) * 1000)} µs by hand (zero-cost TTFT)"
              if hit and hand else "–")
        rows.append([f"automatic caching, lookup cost of a hit (target < {AUTO_TARGET_MS:g} ms)", vs,
                     f"{med(auto['auto_lookup']['values']) * 1000:+,.1f} µs"])
    iso = res.get("_iso", {})
    if "iso_unavailable" in iso:
        rows.append(["isolation mode", "not available yet", "–"])
    elif "iso_tokens" in iso and "inproc_tokens" in iso:
        a, b = med(iso["inproc_tokens"]["values"]), med(iso["iso_tokens"]["values"])
        rows.append(["isolation mode, per token", f"{fmt(b)} ns vs {fmt(a)} ns in-process", f"{b - a:+,.0f} ns"])
        for key, label in (("roundtrip", "isolation mode, 1-token round trip"),
                           ("openclose", "isolation mode, open + close")):
            if f"iso_{key}" in iso and f"inproc_{key}" in iso:
                a, b = med(iso[f"inproc_{key}"]["values"]), med(iso[f"iso_{key}"]["values"])
                rows.append([label, f"{fmt(b)} µs vs {fmt(a)} µs in-process", f"{b - a:+,.1f} µs"])
        if "iso_restart" in iso:
            rows.append(["isolation mode, request after a crash (restart)",
                         f"{fmt(med(iso['iso_restart']['values']) / 1000)} ms", "–"])
    return table(["measure", "rkl vs baseline", "rkl's cost"], rows)


# ----------------------------------------------------------------- plots

def plots(res, s, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    # per-token cost
    rows = s["per_token"]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
        y = list(range(len(rows)))[::-1]
        meds = [p["med"] for p in rows]
        err = [[p["med"] - p["p10"] for p in rows], [p["p90"] - p["med"] for p in rows]]
        colors = ["#777777" if p["case"] == "raw_tokens" else "#1f77b4" for p in rows]
        ax.barh(y, meds, xerr=err, color=colors, capsize=3)
        ax.set_yticks(y, [p["label"].replace("`", "") for p in rows])
        ax.set_xscale("log")
        ax.set_xlabel("ns per token (log scale; median, p10–p90)")
        ax.set_title("Per-token cost, zero-cost simulator tokens")
        for yi, p in zip(y, rows):
            ax.text(p["med"], yi, f"  {p['med']:,.0f}", va="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / "per_token.png", dpi=110)
        plt.close(fig)
    # abort latency
    keys = sorted({k.split("@")[1] for k in res if k.startswith("rkl_abort@")}, key=int)
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
        axes = axes if len(keys) > 1 else [axes]
        for ax, k in zip(axes, keys):
            scale = 1.0 if k == "0" else 0.001
            data = [[v * scale for v in res.get(f"raw_abort@{k}", [])], [v * scale for v in res.get(f"rkl_abort@{k}", [])]]
            ax.boxplot(data)
            ax.set_xticks([1, 2], ["plain C", "rkl"])
            ax.set_title(f"decode {k} ms/token")
            ax.set_ylabel("µs" if k == "0" else "ms")
        fig.suptitle("Abort latency: abort call → generate returns")
        fig.tight_layout()
        fig.savefig(outdir / "abort.png", dpi=110)
        plt.close(fig)
    # contention
    items = [i for i in res.get("_contention", []) if i["label"] == "timed"]
    if items:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        for models, style in ((1, "o-"), (2, "s--")):
            sel = {}
            for i in items:
                if i["models"] == models:
                    sel.setdefault(i["threads"], []).append(i)
            th = sorted(sel)
            a1.plot(th, [med([i["gens"] / (i["wall_ms"] / 1000) for i in sel[t]]) for t in th], style,
                    label=f"{models} model(s)")
            a2.plot(th, [med([pct(i["values"], 50) for i in sel[t]]) for t in th], style, label=f"p50, {models} model(s)")
            a2.plot(th, [med([pct(i["values"], 99) for i in sel[t]]) for t in th], style, alpha=0.5,
                    label=f"p99, {models} model(s)")
        a1.axhline(1e6 / (CONTENTION_TOKENS * CONTENTION_DECODE_US), color="grey", lw=0.8, ls=":", label="ideal")
        ticks = sorted({i["threads"] for i in items})
        a1.set_xlabel("threads")
        a1.set_ylabel("generations/s")
        a1.set_xscale("log", base=2)
        a1.set_xticks(ticks, [str(t) for t in ticks])
        a1.set_ylim(bottom=0)
        a1.set_title("Throughput")
        a1.legend(fontsize=8)
        a2.set_xlabel("threads")
        a2.set_ylabel("queue wait (ms)")
        a2.set_xscale("log", base=2)
        a2.set_xticks(ticks, [str(t) for t in ticks])
        a2.set_title("Queue wait")
        a2.legend(fontsize=7)
        fig.suptitle(f"{CONTENTION_TOKENS} tokens × {CONTENTION_DECODE_US / 1000:g} ms per generation")
        fig.tight_layout()
        fig.savefig(outdir / "contention.png", dpi=110)
        plt.close(fig)
    # TTFT
    tt = [i for i in res.get("_ttft", []) if "_cold" in i]
    if tt:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        x = [i["cold_prefill_tokens"] for i in tt]
        ax.plot(x, [i["_cold"] for i in tt], "o-", label="without cache")
        ax.plot(x, [i["_warm"] for i in tt], "s-", label="with cache loaded")
        ax.plot(x, [i["_warm"] + i["first_load_ms"] for i in tt], "^:", label="first request after a load")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel("TTFT (ms, simulator timing model)")
        ax.set_title("TTFT without and with a prompt cache")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "cache_ttft.png", dpi=110)
        plt.close(fig)
    # cache load
    loads = [l for l in res.get("_loads", []) if "cache_load_first" in l["items"]]
    if loads:
        fig, ax = plt.subplots(figsize=(6.5, 4.4))
        x = list(range(len(loads)))
        first = [med(l["items"]["cache_load_first"]["values"]) for l in loads]
        again = [med(l["items"]["cache_load_again"]["values"]) for l in loads]
        inplace = [med(l["items"]["cache_hash_in_place"]["values"]) if "cache_hash_in_place" in l["items"]
                   else float("nan") for l in loads]
        ax.bar([i - 0.27 for i in x], inplace, 0.27, label="hash in place (before sealed copies)")
        ax.bar(x, first, 0.27, label="first load (sealed copy + hash)")
        ax.bar([i + 0.27 for i in x], again, 0.27, label="repeated load (copy kept)")
        ax.set_xticks(x, [f"{l['mib']} MiB" for l in loads])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title("Prompt cache validation")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize="small")
        fig.tight_layout()
        fig.savefig(outdir / "cache_load.png", dpi=110)
        plt.close(fig)


# ----------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=MODES, default="full")
    ap.add_argument("--bin", required=True, help="folder with raw_rkllm, rkl_bench, malloc_count.so")
    ap.add_argument("--sim", required=True, help="the simulator librkllmrt.so")
    ap.add_argument("--lib", required=True, help="librkl.so for the bindings")
    ap.add_argument("--work", required=True, help="scratch folder (model files, caches)")
    ap.add_argument("--md", required=True, help="where to write the Markdown report")
    ap.add_argument("--plots", required=True, help="folder for the PNG plots")
    ap.add_argument("--plots-rel", help="the plots' folder as the report links it")
    ap.add_argument("--rust", help="output of benches/generate.rs (BENCH lines)")
    ap.add_argument("--rust-cache", help="output of benches/cache_load.rs (BENCH lines)")
    ap.add_argument("--rust-auto", help="output of benches/auto_cache.rs (BENCH lines)")
    ap.add_argument("--rust-image", help="output of benches/image_input.rs (BENCH lines)")
    ap.add_argument("--rust-serve", help="output of cli/benches/serve.rs (BENCH lines)")
    ap.add_argument("--go-bin", help="the Go driver (bench/go)")
    ap.add_argument("--python", help="python for the Python binding's driver")
    ap.add_argument("--node", help="node for the Node binding's driver")
    ap.add_argument("--node-path", help="NODE_PATH where the installed rkl package is")
    ap.add_argument("--host", help="rkl-host, for isolation mode")
    ap.add_argument("--json", help="also write every raw value here")
    ap.add_argument("--cmdline", default="make bench")
    args = ap.parse_args()
    args.malloc_count = str(Path(args.bin) / "malloc_count.so")
    cfg = MODES[args.mode]
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    r = Runner(args, work)
    try:
        load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load_before = "?"
    res = {}
    t0 = time.monotonic()
    bench_per_token(r, cfg, res)
    bench_calls(r, cfg, res)
    bench_contention(r, cfg, res)
    bench_cache(r, cfg, res)
    bench_isolation(r, cfg, res)
    bench_auto_cache(r, cfg, res)
    bench_image_and_serve(r, cfg, res)
    log(f"measured in {time.monotonic() - t0:.0f} s")
    mach = machine()
    mach["load_before"] = load_before
    plots_rel = args.plots_rel or os.path.relpath(args.plots, Path(args.md).parent)
    md, summary = render(res, mach, args.mode, plots_rel, args.cmdline)
    Path(args.md).write_text(md)
    plots(res, summary, Path(args.plots))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": mach, "results": res}, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)
    print(md)
    log(f"wrote {args.md} and the plots in {args.plots}")


if __name__ == "__main__":
    main()

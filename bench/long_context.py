#!/usr/bin/env python3
"""Long contexts: `realm bench` against llama.cpp's `llama-bench`, back to back.

    bench/long_context.py --model tinyllama-q4km.gguf --llama-bench PATH/llama-bench
                          [--realm build/realm] [--threads 2] [--reps 2]
                          [--cache f16,q8_0] [--tests pp512,pp2048,pp512@1536,tg64,...]
                          [--no-repack]

For each KV cache type (keys and values alike) and each test, one run of
`realm bench` then one of `llama-bench` with the same prompt, generation and
depth (-d), so that a drift of the machine's load hits both. llama-bench runs
with flash attention off and on where the cache allows it (a quantized V
cache needs it on) and its better figure is the one compared; both are
printed. Tests are named as llama-bench names them: pp512, tg64, and @N for
a depth of N tokens already in the cache.

The tg rows also print the memory-bandwidth bound: the weights plus the KV
bytes read per generated token (every layer's keys and values up to the
depth), over the read bandwidth `realm bench-kernels` measures with the same
threads; "of bound" is the measured rate over that bound. The bandwidth of a
shared machine moves by half within minutes, so each tg row measures it
right before and right after realm's run and uses the mean (both readings
printed); the header's reading is the one at the start.

realm bench repacks the Q4_K/Q6_K/Q8_0 matrices at load by default;
--no-repack passes it --no-repack. llama-bench keeps its defaults (it
repacks what its CPU backend repacks by itself).

Prints a Markdown table; --json FILE also writes every figure. Needs only the
standard library.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

DEFAULT_TESTS = "pp512,pp2048,pp512@1536,tg64,tg64@1024,tg64@2048"

# bytes per element of a KV cache type
KV_BYTES = {"f16": 2.0, "q8_0": 34.0 / 32.0}


def parse_test(name):
    m = re.fullmatch(r"(pp|tg)(\d+)(?:@(\d+))?", name)
    if not m:
        sys.exit(f"long_context.py: bad test {name!r}: expected ppN, tgN, ppN@DEPTH or tgN@DEPTH")
    return m.group(1), int(m.group(2)), int(m.group(3) or 0)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"long_context.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def model_shape(realm, model):
    info = json.loads(run([realm, "info", model, "--json"]))
    meta = {m["key"]: m["value"] for m in info["metadata"]}
    arch = meta["general.architecture"]
    n_embd = meta[f"{arch}.embedding_length"]
    n_head = meta[f"{arch}.attention.head_count"]
    n_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    return {"n_layer": meta[f"{arch}.block_count"], "n_kv_head": n_kv,
            "head_dim": n_embd // n_head}


def read_bandwidth(realm, threads):
    doc = json.loads(run([realm, "bench-kernels", "-t", str(threads), "--types", "q4_k",
                          "--json"]))
    for b in doc["read_bandwidth"]:  # [{"threads": N, "gbs": G}], one per thread count
        if b["threads"] == threads:
            return b["gbs"] * 1e9
    sys.exit(f"long_context.py: realm bench-kernels measured no bandwidth at {threads} threads")


def realm_run(a, kind, n, depth, cache):
    cmd = [a.realm, "bench", "-m", a.model, "-t", str(a.threads), "-r", str(a.reps), "--json",
           "-p", str(n if kind == "pp" else 0), "-n", str(n if kind == "tg" else 0),
           "-d", str(depth), "--cache-type-k", cache, "--cache-type-v", cache]
    if a.no_repack:
        cmd.append("--no-repack")
    doc = json.loads(run(cmd))
    r = [x for x in doc["results"] if x["test"] == kind and x["depth"] == depth]
    return {"tok_s": r[0]["tokens_per_s"], "stdev": r[0]["stdev"],
            "weight_bytes": doc["weight_bytes"]}


def llama_run(a, kind, n, depth, cache):
    fa = "1" if cache != "f16" else "0,1"
    cmd = [a.llama_bench, "-m", a.model, "-t", str(a.threads), "-r", str(a.reps), "-o", "json",
           "-p", str(n if kind == "pp" else 0), "-n", str(n if kind == "tg" else 0),
           "-d", str(depth), "-ctk", cache, "-ctv", cache, "-fa", fa]
    out = {}
    for rec in json.loads(run(cmd)):
        if (kind == "pp") != (rec["n_prompt"] > 0):
            continue
        out[f"fa{int(bool(rec['flash_attn']))}"] = {"tok_s": rec["avg_ts"],
                                                    "stdev": rec["stddev_ts"]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--realm", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "realm"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cache", default="f16,q8_0")
    ap.add_argument("--tests", default=DEFAULT_TESTS)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--no-repack", action="store_true")
    a = ap.parse_args()

    tests = [parse_test(t) for t in a.tests.split(",")]
    caches = a.cache.split(",")
    for c in caches:
        if c not in KV_BYTES:
            sys.exit(f"long_context.py: cache type {c!r}: f16 or q8_0")
    shape = model_shape(a.realm, a.model)
    bw = read_bandwidth(a.realm, a.threads)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()[0]

    rows = []
    for cache in caches:
        for kind, n, depth in tests:
            bw_before = read_bandwidth(a.realm, a.threads) if kind == "tg" else None
            r = realm_run(a, kind, n, depth, cache)
            bw_after = read_bandwidth(a.realm, a.threads) if kind == "tg" else None
            ll = llama_run(a, kind, n, depth, cache)
            best = max(ll.values(), key=lambda x: x["tok_s"]) if ll else None
            row = {"cache": cache, "test": f"{kind}{n}" + (f" @ d{depth}" if depth else ""),
                   "realm": r, "llama": ll,
                   "ratio": r["tok_s"] / best["tok_s"] if best else None,
                   "load": os.getloadavg()[0]}
            if kind == "tg":
                # KV read per token: every layer's keys and values of the whole context
                ctx = depth + n / 2  # the mean context over the n generated tokens
                kv = (shape["n_layer"] * 2 * shape["n_kv_head"] * shape["head_dim"] *
                      KV_BYTES[cache] * ctx)
                row["read_bandwidth"] = [bw_before, bw_after]
                row["bound_tok_s"] = (bw_before + bw_after) / 2 / (r["weight_bytes"] + kv)
                row["of_bound"] = r["tok_s"] / row["bound_tok_s"]
            rows.append(row)
            print(f"# {cache} {row['test']}: realm {r['tok_s']:.1f}, llama.cpp " +
                  ", ".join(f"{k} {v['tok_s']:.1f}" for k, v in ll.items()) +
                  f" (load {row['load']:.2f})", file=sys.stderr, flush=True)

    print(f"{a.model}, {a.threads} threads, {a.reps} repetitions; started {started}, "
          f"load average {load0:.2f} at the start; read bandwidth {bw / 1e9:.1f} GB/s\n")
    print("| KV | test | realm tok/s | llama.cpp fa0 | llama.cpp fa1 | realm / best llama.cpp "
          "| read GB/s before, after | bandwidth bound | of bound | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        def cell(k):
            v = row["llama"].get(k)
            return f"{v['tok_s']:.1f} ± {v['stdev']:.1f}" if v else "—"
        r = row["realm"]
        bound = f"{row['bound_tok_s']:.1f}" if "bound_tok_s" in row else ""
        of = f"{row['of_bound'] * 100:.0f}%" if "of_bound" in row else ""
        rb = ", ".join(f"{b / 1e9:.1f}" for b in row["read_bandwidth"]) if "read_bandwidth" in row \
            else ""
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "—"
        print(f"| {row['cache']} | {row['test']} | {r['tok_s']:.1f} ± {r['stdev']:.1f} | "
              f"{cell('fa0')} | {cell('fa1')} | {ratio} | {rb} | {bound} | {of} | {row['load']:.2f} |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"model": a.model, "threads": a.threads, "reps": a.reps,
                       "started": started, "read_bandwidth": bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

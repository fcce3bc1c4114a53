# realm bench on stories260K: every section runs and reports what it says
# (figures are not checked: timing belongs to benchmarks, not tests), the
# JSON form parses, and bad arguments fail with a message.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"

run "$REALM_BIN" bench -m "$M" -p 32 -n 8 -r 2 -t 2 --batched 1,2 --npp 16 --ntg 8 \
  --parallel 1,3 --prefix 64
expect_rc "all sections" 0
expect_contains "pp" "$OUT" "| pp32 |"
expect_contains "tg" "$OUT" "| tg8 |"
expect_contains "batched" "$OUT" "| parallel | prompt tokens/s | aggregate generation tokens/s |"
expect_contains "serving header" "$OUT" "| parallel | gen tokens/s | decode tokens/s | TTFT p50 ms |"
expect_contains "serving 3" "$OUT" "| 3 | "
expect_contains "prefix" "$OUT" "| 64 tokens cached |"

# --repack (the default) and --no-repack: the Q4_K model's matrices repacked at load or not
# (packed_bytes; where the CPU has no packed kernel, 0 both ways)
for opt in --repack --no-repack; do
  run "$REALM_BIN" bench -m "$TD/quant/tiny-q4_k_m.gguf" -p 16 -n 4 -r 1 --verify 2 --npp 8 $opt --json
  expect_rc "$opt" 0
  checks=$((checks + 1))
  printf '%s' "$OUT" | OPT=$opt python3 -c '
import json, os, sys
d = json.load(sys.stdin)
assert 0 <= d["packed_bytes"] <= d["weight_bytes"], d
if os.environ["OPT"] == "--no-repack":
    assert d["packed_bytes"] == 0, d
assert [x["test"] for x in d["results"]] == ["pp", "tg", "verify"], d["results"]
' || fail "bench $opt --json: unexpected document: $(printf '%s' "$OUT" | head -c 400)"
done

run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 --parallel 2,4 --npp 8 --ntg 4 --prefix 32 --json
expect_rc "json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["results"]
par = [x for x in r if x["test"] == "parallel"]
assert [x["parallel"] for x in par] == [2, 4], par
for x in par:
    assert x["tokens_per_s"] > 0 and x["ttft_ms_p50"] > 0 and x["itl_ms_p99"] >= x["itl_ms_p50"], x
pc = [x for x in r if x["test"] == "prefix_cache"]
assert len(pc) == 1 and pc[0]["cached_tokens"] == 32, pc
' || fail "bench --json: unexpected document: $(printf '%s' "$OUT" | head -c 400)"

# -d: pp and tg after a context already in the cache, a row per depth
run "$REALM_BIN" bench -m "$M" -p 16 -n 4 -d 0,100 -r 2 -t 2
expect_rc "depth" 0
expect_contains "pp at d0" "$OUT" "| pp16 | "
expect_contains "tg at d0" "$OUT" "| tg4 | "
expect_contains "pp at d100" "$OUT" "| pp16 @ d100 | "
expect_contains "tg at d100" "$OUT" "| tg4 @ d100 | "
run "$REALM_BIN" bench -m "$M" -p 8 -n 2 --n-depth 40,0 -r 1 --json
expect_rc "depth json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"]
got = [(x["test"], x["tokens"], x["depth"]) for x in r]
assert got == [("pp", 8, 40), ("tg", 2, 40), ("pp", 8, 0), ("tg", 2, 0)], got
assert all(x["tokens_per_s"] > 0 for x in r), r
' || fail "bench -d --json: unexpected document: $(printf '%s' "$OUT" | head -c 400)"
CTX=$("$REALM_BIN" info "$M" | awk '/\.context_length / && !v {v = $NF} END {print v}')
[ -n "$CTX" ] || fail "realm info shows no context_length"
run "$REALM_BIN" bench -m "$M" -p 8 -n 8 -d "$CTX" -r 1; expect_rc "depth = context" 0
expect_contains "depth = context" "$OUT" "| tg8 @ d$CTX | "
run "$REALM_BIN" bench -m "$M" -p 8 -n 8 -d 0,$((CTX + 1)) -r 1; expect_rc "depth over context" 1
expect_contains "depth over context" "$OUT" "-d $((CTX + 1)): deeper than the model's context length ($CTX tokens)"
run "$REALM_BIN" bench -m "$M" -d 0,x; expect_rc "depth x" 1

run "$REALM_BIN" bench -m "$M" --parallel 0; expect_rc "parallel 0" 1
run "$REALM_BIN" bench -m "$M" --parallel 1,2,x; expect_rc "parallel x" 1
run "$REALM_BIN" bench -m "$M" --parallel 1,2,3,4,5,6,7,8,9; expect_rc "too many levels" 1
expect_contains "too many levels" "$OUT" "at most 8 values"
run "$REALM_BIN" bench -m "$M" --batched 17; expect_rc "batched 17" 1
run "$REALM_BIN" bench -m "$M" --parallel 2 --ntg 1; expect_rc "ntg 1" 1
expect_contains "ntg 1" "$OUT" "--ntg >= 2"
run "$REALM_BIN" bench -m "$M" --prefix; expect_rc "prefix without value" 1
run "$REALM_BIN" bench -m "$M" --prefix 100000 -p 0 -n 0; expect_rc "prefix out of range" 1
run "$REALM_BIN" bench -m "$TMP/none.gguf"; expect_rc "no model" 1
# KV cache types: Q8_0 keys and values on the tiny model (pp, tg, a depth, the
# engine's serving test), named in the header and the JSON; refused where the
# head size (stories260K's 8) or the type does not allow it
Q="$TD/quant/tiny-q8_0.gguf"
run "$REALM_BIN" bench -m "$Q" -p 16 -n 4 -d 0,40 -r 1 -t 2 --cache-type-k q8_0 --cache-type-v q8_0 \
  --parallel 2 --npp 8 --ntg 4
expect_rc "q8_0 cache" 0
expect_contains "q8_0 cache header" "$OUT" "KV cache q8_0/q8_0"
expect_contains "q8_0 cache at d40" "$OUT" "| tg4 @ d40 | "
expect_contains "q8_0 cache serving" "$OUT" "| 2 | "
run "$REALM_BIN" bench -m "$Q" -p 8 -n 2 -r 1 --cache-type-v q8_0 --json
expect_rc "q8_0 values json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["type_k"] == "f16" and d["type_v"] == "q8_0", d
assert [x["test"] for x in d["results"]] == ["pp", "tg"], d
' || fail "bench --cache-type-v --json: unexpected document: $(printf '%s' "$OUT" | head -c 400)"
run "$REALM_BIN" bench -m "$M" -p 8 -n 2 --cache-type-k q8_0; expect_rc "q8_0 on head size 8" 1
expect_contains "q8_0 on head size 8" "$OUT" "multiple of 32, and this model's is 8"
run "$REALM_BIN" bench -m "$M" --cache-type-k q4_0; expect_rc "q4_0 cache" 1
expect_contains "q4_0 cache" "$OUT" "--cache-type-k must be one of f16, q8_0, not 'q4_0'"
run "$REALM_BIN" bench -m "$M" --cache-type-v; expect_rc "cache type missing" 1
finish

# realm quantize: mixtures, pure, requantize rules, safety of the output file.
. "$(dirname "$0")/lib.sh"
SRC="$TD/quant/tiny-f32.gguf"

types_of() { # FILE -> "name type" lines
  "$REALM_BIN" info --json "$1" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]: print(t["name"], t["type"])'
}
meta_of() { # FILE KEY
  "$REALM_BIN" info --json "$1" | python3 -c '
import json, sys
for m in json.load(sys.stdin)["metadata"]:
    if m["key"] == sys.argv[1]: print(m["value"])' "$2"
}

# q4_k_m mixture on a 2-layer model: output Q6_K; attn_v/ffn_down of the last
# layer Q6_K (use_more_bits), the first Q4_K; norms stay F32.
run "$REALM_BIN" quantize -t 2 "$SRC" "$TMP/q4km.gguf" q4_k_m; expect_rc q4_k_m 0
expect_contains progress "$OUT" "blk.0.attn_q.weight"
T=$(types_of "$TMP/q4km.gguf")
expect_contains mix "$T" "output.weight Q6_K"
expect_contains mix "$T" "token_embd.weight Q4_K"
expect_contains mix "$T" "blk.0.attn_v.weight Q4_K"
expect_contains mix "$T" "blk.1.attn_v.weight Q6_K"
expect_contains mix "$T" "blk.0.ffn_down.weight Q4_K"
expect_contains mix "$T" "blk.1.ffn_down.weight Q6_K"
expect_contains mix "$T" "blk.0.attn_q.weight Q4_K"
expect_contains mix "$T" "blk.0.attn_norm.weight F32"
checks=$((checks + 1)); [ "$(meta_of "$TMP/q4km.gguf" general.file_type)" = 15 ] || fail "file_type of q4_k_m"
checks=$((checks + 1)); grep -q '\.tmp\.' <<< "$(ls "$TMP")" && fail "temporary file left behind"

# --pure gives the same tensor types and sizes as llama.cpp's --pure file.
for ty in q4_0 q8_0 q6_k iq4_xs; do
  ref="$TD/quant/tiny-$ty.gguf"
  run "$REALM_BIN" quantize -q --pure "$SRC" "$TMP/pure-$ty.gguf" "$ty"; expect_rc "pure $ty" 0
  checks=$((checks + 1))
  [ "$(types_of "$TMP/pure-$ty.gguf" | sort)" = "$(types_of "$ref" | sort)" ] || fail "--pure $ty: tensor types differ from llama.cpp's"
  checks=$((checks + 1))
  [ "$(stat -c %s "$TMP/pure-$ty.gguf")" -le "$(( $(stat -c %s "$ref") + 4096 ))" ] || fail "--pure $ty: file larger than llama.cpp's"
done

# Every scheme produces a readable file.
for ty in f16 bf16 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q5_k_s q5_k_m iq4_nl; do
  run "$REALM_BIN" quantize -q "$SRC" "$TMP/all-$ty.gguf" "$ty"; expect_rc "scheme $ty" 0
  run "$REALM_BIN" info "$TMP/all-$ty.gguf"; expect_rc "info $ty" 0
done

# Requantizing needs --allow-requantize; f32 dequantizes anything.
run "$REALM_BIN" quantize -q "$TD/quant/tiny-q4_0.gguf" "$TMP/rq.gguf" q8_0; expect_rc requant 1
expect_contains requant "$OUT" "--allow-requantize"
checks=$((checks + 1)); [ ! -e "$TMP/rq.gguf" ] || fail "refused requantize left an output file"
run "$REALM_BIN" quantize -q --allow-requantize "$TD/quant/tiny-q4_0.gguf" "$TMP/rq.gguf" q8_0; expect_rc "requant allowed" 0
run "$REALM_BIN" quantize -q "$TD/quant/tiny-q4_0.gguf" "$TMP/deq.gguf" f32; expect_rc dequant 0
T=$(types_of "$TMP/deq.gguf"); checks=$((checks + 1))
grep -qv ' F32$' <<< "$T" && fail "f32 output has non-F32 tensors"

# Never overwrite the input, by the same or another path.
cp "$SRC" "$TMP/in.gguf"; ln -s "$TMP/in.gguf" "$TMP/link.gguf"
run "$REALM_BIN" quantize "$TMP/in.gguf" "$TMP/in.gguf" q8_0; expect_rc "same path" 1
expect_contains "same path" "$OUT" "refusing to overwrite the input"
run "$REALM_BIN" quantize "$TMP/in.gguf" "$TMP/link.gguf" q8_0; expect_rc "via symlink" 1
checks=$((checks + 1)); cmp -s "$SRC" "$TMP/in.gguf" || fail "input was modified"

# Bad arguments and inputs.
run "$REALM_BIN" quantize "$SRC" "$TMP/x.gguf" q9_9; expect_rc "bad type" 1; expect_contains "bad type" "$OUT" "q4_k_m"
run "$REALM_BIN" quantize "$SRC" "$TMP/x.gguf"; expect_rc "missing type" 1
head -c 5000 "$SRC" > "$TMP/trunc.gguf"
run "$REALM_BIN" quantize "$TMP/trunc.gguf" "$TMP/x.gguf" q8_0; expect_rc "truncated input" 1
checks=$((checks + 1)); [ ! -e "$TMP/x.gguf" ] || fail "failed run left an output file"
mkdir "$TMP/ro"; chmod 555 "$TMP/ro"
if [ "$(id -u)" != 0 ]; then
  run "$REALM_BIN" quantize "$SRC" "$TMP/ro/x.gguf" q8_0; expect_rc "read-only dir" 1
fi
run "$REALM_BIN" quantize -q "$SRC" /dev/full/x.gguf q8_0; expect_fail "unwritable path"

# Interrupted runs leave either a complete file or nothing at all.
interrupted=0
for delay in 0.01 0.03 0.06 0.1 0.2; do
  rm -f "$TMP/int.gguf"
  set +e
  # --preserve-status: the run's own status (timeout alone says 124 when its
  # signal came after the output was renamed into place and the run ended well)
  timeout --preserve-status -s INT "$delay" "$REALM_BIN" quantize -q -t 1 "$SRC" "$TMP/int.gguf" q3_k_m 2>/dev/null
  rc=$?
  set -e
  checks=$((checks + 1))
  if [ "$rc" = 0 ]; then
    "$REALM_BIN" info "$TMP/int.gguf" > /dev/null || fail "completed run wrote a bad file"
  else
    interrupted=$((interrupted + 1))
    [ ! -e "$TMP/int.gguf" ] || fail "interrupted run (after $delay s) left $TMP/int.gguf"
  fi
  checks=$((checks + 1))
  grep -q 'int.gguf.tmp' <<< "$(ls "$TMP")" && fail "interrupted run left a temporary file"
done
checks=$((checks + 1)); [ "$interrupted" -gt 0 ] || fail "no run was interrupted: the interruption path went untested"
finish

# realm run and realm bench with speculative decoding (stories260K): --lookup
# and --draft (drafts quantized from it with realm quantize) print the greedy
# text of the plain run, and llama.cpp's (testdata/reference), with LoRA too;
# seeded sampling with --lookup equals the plain run; the acceptance goes to
# stderr; bench --lookup / --draft / --verify in text and JSON; a draft of
# another vocabulary and bad arguments fail clearly.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"
R8="${REALM_SOURCE_DIR:?}/tests/data/lora/stories260K-lora-r8.gguf"
"$REALM_BIN" quantize "$M" "$TMP/q4.gguf" q4_0 >/dev/null 2>&1
"$REALM_BIN" quantize "$M" "$TMP/q8.gguf" q8_0 >/dev/null 2>&1

gen() { "$REALM_BIN" run "$M" -p "Once upon a time" -n 64 -t 2 "$@" 2>/dev/null; }
base=$(gen --temp 0)
checks=$((checks + 1))
{ gen --temp 0; echo; } | cmp -s - "$TD/reference/stories260K.completion.stdout.txt" || fail "plain run: not llama.cpp's text"
for args in "--lookup" "--lookup --draft-max 2" "--draft $TMP/q4.gguf" "--draft $TMP/q8.gguf --draft-max 16 --draft-p-min 0" \
  "-md $TMP/q4.gguf --draft-min 3"; do
  # shellcheck disable=SC2086
  checks=$((checks + 1)); [ "$(gen --temp 0 $args)" = "$base" ] || fail "greedy with $args differs"
done
checks=$((checks + 1)); [ "$(gen --seed 5 --temp 0.9 --lookup)" = "$(gen --seed 5 --temp 0.9)" ] || fail "seeded --lookup differs"
checks=$((checks + 1)); [ "$(gen --temp 0 --lora "$R8" --lookup)" = "$(gen --temp 0 --lora "$R8")" ] || fail "--lookup with --lora differs"
run "$REALM_BIN" run "$M" -p "Once upon a time" -n 32 --temp 0 --draft "$TMP/q8.gguf" --draft-p-min 0
expect_rc "run --draft" 0
expect_contains "run --draft" "$OUT" "speculative (draft model, K up to 8):"
expect_contains "run --draft" "$OUT" "accepted (100.0%)"

# bench
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 1 --lookup --spec-streams 1,2 --ntg 16
expect_rc "bench --lookup" 0
expect_contains "bench --lookup" "$OUT" "speculative decoding (lookup, K up to 8)"
expect_contains "bench --lookup" "$OUT" "| 2 |"
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 1 --draft "$TMP/q4.gguf" --draft-max 4 --ntg 16 --verify 2,4 --json
expect_rc "bench --draft --json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["results"]
v = [x for x in r if x["test"] == "verify"]
s = [x for x in r if x["test"] == "speculative"]
assert [x["k"] for x in v] == [2, 4] and all(x["ms"] > 0 for x in v), v
assert len(s) == 1 and s[0]["mode"] == "draft" and s[0]["draft_max"] == 4, s
assert s[0]["drafted"] >= s[0]["accepted"] > 0 and 0 < s[0]["acceptance"] <= 1, s
' || fail "bench --json: $OUT"

run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 1 --draft "$TMP/q4.gguf" --draft-max 4 --ntg 24 --spec-streams 2 --spec-temp 0.8 --json
expect_rc "bench --draft --spec-temp --json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
s = json.load(sys.stdin)["results"]
assert len(s) == 1 and s[0]["streams"] == 2 and abs(s[0]["temperature"] - 0.8) < 1e-6, s
assert s[0]["drafted"] >= s[0]["accepted"] > 0, s
' || fail "bench --spec-temp --json: $OUT"
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 1 --lookup --ntg 16 --spec-temp 0.8
expect_contains "bench --spec-temp" "$OUT" "sampled (temperature 0.8)"
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 1 --lookup --spec-temp -1
expect_fail "bench --spec-temp -1"

# errors
run "$REALM_BIN" run "$M" -p "x" --draft "$TMP/q4.gguf" --lookup
expect_fail "--draft and --lookup"
expect_contains "--draft and --lookup" "$OUT" "one way of drafting at a time"
# the chat takes --lookup: the same replies (greedy)
chat() { printf 'Hello\nWhat did the dog do next?\n/bye\n' | timeout 60 "$REALM_BIN" run "$M" -n 40 -t 1 --temp 0 "$@" 2>/dev/null; }
plain_chat=$(chat)
checks=$((checks + 1)); [ -n "$plain_chat" ] && [ "$(chat --lookup --draft-max 4)" = "$plain_chat" ] || fail "chat --lookup differs"
run bash -c "printf 'Hello\\n/bye\\n' | timeout 60 '$REALM_BIN' run '$M' -n 40 -t 1 --temp 0 --lookup --verbose"
expect_rc "chat --lookup --verbose" 0
expect_contains "chat --lookup --verbose" "$OUT" "drafted tokens accepted"
run "$REALM_BIN" run "$M" --draft "$TMP/q4.gguf"
expect_fail "--draft without -p"
expect_contains "--draft without -p" "$OUT" "the chat takes --lookup"
run "$REALM_BIN" run "$M" -p "x" --lookup --draft-max 0
expect_fail "--draft-max 0"
run "$REALM_BIN" run "$M" -p "x" --lookup --draft-max 4 --draft-min 5
expect_fail "--draft-min above --draft-max"
run "$REALM_BIN" run "$M" -p "x" --draft "$TMP/missing.gguf"
expect_fail "a missing draft"
"${REALM_MAKE_TEST_MODEL:?}" "$TD/vocab/ggml-vocab-llama-spm.gguf" "$TMP/other.gguf" 32 1 2 1 64 256 >/dev/null
run "$REALM_BIN" run "$M" -p "x" -n 4 --draft "$TMP/other.gguf"
expect_fail "a draft of another vocabulary"
expect_contains "a draft of another vocabulary" "$OUT" "the draft model's vocabulary has 32000 tokens, the model's 512"
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 --draft "$TMP/other.gguf"
expect_fail "bench with a draft of another vocabulary"
expect_contains "bench, another vocabulary" "$OUT" "vocabulary"
finish

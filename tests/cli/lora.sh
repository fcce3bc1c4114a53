# realm run and realm bench with LoRA adapters (stories260K and the adapters
# of tests/data/lora): greedy text equal to llama.cpp's (llama-completion
# --lora-scaled, tests/data/lora/reference), --lora changes the text,
# FILE:SCALE, --lora-scaled FILE:SCALE and --lora-scaled FILE SCALE agree,
# scale 0 is the base model, adapters add up in any order, comma lists, the
# chat takes them too; bench runs with --lora and --lora-per-stream (JSON
# parses); bad adapters and arguments fail clearly.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"
L="${REALM_SOURCE_DIR:?}/tests/data/lora"
R8="$L/stories260K-lora-r8.gguf"
QV="$L/stories260K-lora-qv-r4.gguf"

gen() { "$REALM_BIN" run "$M" -p "Once upon a time" -n 40 --temp 0 -t 2 "$@" 2>/dev/null; }
base=$(gen)
r8=$(gen --lora "$R8")
checks=$((checks + 1)); [ -n "$r8" ] && [ "$r8" != "$base" ] || fail "--lora changes nothing: $r8"
half=$(gen --lora "$R8:0.5")
checks=$((checks + 1)); [ "$half" != "$r8" ] && [ "$half" != "$base" ] || fail "FILE:0.5: $half"
checks=$((checks + 1)); [ "$(gen --lora-scaled "$R8" 0.5)" = "$half" ] || fail "--lora-scaled FILE 0.5 differs from FILE:0.5"
checks=$((checks + 1)); [ "$(gen --lora "$R8:0")" = "$base" ] || fail "scale 0 is not the base model"
both=$(gen --lora "$R8:0.5" --lora "$QV")
checks=$((checks + 1)); [ "$both" != "$half" ] || fail "a second adapter changes nothing"
checks=$((checks + 1)); [ "$(gen --lora "$QV" --lora-scaled "$R8" 0.5)" = "$both" ] || fail "the adapters' order matters"
checks=$((checks + 1)); [ "$(gen --lora-scaled "$QV:1,$R8:0.5")" = "$both" ] || fail "--lora-scaled A:1,B:0.5"
checks=$((checks + 1)); [ "$(gen --lora "$R8:0.5,$QV")" = "$both" ] || fail "--lora A:0.5,B"

# llama.cpp's greedy text with the same adapters (tests/data/lora/README.md)
ref() { # FILE PROMPT LORA-SCALED: realm run's output and one more newline is FILE
  checks=$((checks + 1))
  { (cd "$L" && "$REALM_BIN" run "$M" -p "$2" -n 64 --temp 0 -t 2 --lora-scaled "$3" 2>/dev/null); echo; } |
    cmp -s - "$L/reference/$1" || fail "$1: not llama.cpp's text: $(cd "$L" && "$REALM_BIN" run "$M" -p "$2" -n 64 --temp 0 --lora-scaled "$3" 2>/dev/null)"
}
ref r8-s1.0-once.stdout.txt "Once upon a time" stories260K-lora-r8.gguf:1.0
ref r8-s0.5-park.stdout.txt "Lily and Tom went to the park" stories260K-lora-r8.gguf:0.5
ref qv-s1.0-dog.stdout.txt "The little dog" stories260K-lora-qv-r4.gguf:1.0
ref r8-s0.5-qv-s0.5-sam.stdout.txt "Sam had a big red" stories260K-lora-r8.gguf:0.5,stories260K-lora-qv-r4.gguf:0.5

run "$REALM_BIN" run "$M" -p "Once upon a time" -n 4 --temp 0 --lora "$R8"
expect_rc "run --lora" 0
expect_contains "run --lora describes it" "$OUT" "LoRA: $R8 x1 (rank 8,"

# the chat (no -p) with the adapter answers like the engine does with it
chat() { printf 'Tell me a story\n' | "$REALM_BIN" run "$M" -n 24 --temp 0 --seed 1 -t 2 "$@" 2>/dev/null; }
c0=$(chat); c1=$(chat --lora "$R8")
checks=$((checks + 1)); [ -n "$c1" ] && [ "$c1" != "$c0" ] || fail "chat --lora changes nothing: $c1"
checks=$((checks + 1)); [ "$(chat --lora "$R8")" = "$c1" ] || fail "chat --lora is not reproducible"

# refusals
run "$REALM_BIN" run "$M" -p hi --lora "$M"; expect_rc "a model as adapter" 1
expect_contains "a model as adapter" "$OUT" "not a LoRA adapter: general.type is missing"
run "$REALM_BIN" run "$TD/quant/tiny-f32.gguf" -p hi --lora "$R8"; expect_rc "another base" 1
expect_contains "another base" "$OUT" "do not fit 'blk.0.attn_q.weight' [256, 256] of the base model"
run "$REALM_BIN" run "$M" -p hi --lora "$TMP/none.gguf"; expect_rc "missing file" 1
expect_contains "missing file" "$OUT" "$TMP/none.gguf"
head -c 20000 "$R8" > "$TMP/cut.gguf"
run "$REALM_BIN" run "$M" -p hi --lora "$TMP/cut.gguf"; expect_rc "truncated" 1
expect_contains "truncated" "$OUT" "$TMP/cut.gguf: "
run "$REALM_BIN" run "$M" -p hi --lora-scaled "$R8"; expect_rc "--lora-scaled one value" 1
expect_contains "--lora-scaled one value" "$OUT" "needs two values: FILE SCALE"
run "$REALM_BIN" run "$M" -p hi --lora-scaled "$R8" x; expect_rc "--lora-scaled x" 1
expect_contains "--lora-scaled x" "$OUT" "the scale 'x' is not a number"
run "$REALM_BIN" run "$M" -p hi --lora; expect_rc "--lora no value" 1
run "$REALM_BIN" run "$M" -p hi --lora-scaled "$R8:0.5,$QV"; expect_rc "--lora-scaled list without a scale" 1
expect_contains "--lora-scaled list without a scale" "$OUT" "'$QV' is not FILE:SCALE"

# bench
run "$REALM_BIN" bench -m "$M" -p 16 -n 4 -r 1 -t 2 --lora "$R8:0.5" --batched 2 --npp 8 --ntg 4
expect_rc "bench --lora" 0
expect_contains "bench --lora" "$OUT" "LoRA on every sequence: $R8 x0.5 (rank 8,"
expect_contains "bench --lora tg" "$OUT" "| tg4 |"
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 -t 2 --batched 3 --parallel 3 --npp 8 --ntg 4 \
  --lora-per-stream "$R8,none,$QV:2"
expect_rc "bench --lora-per-stream" 0
expect_contains "bench --lora-per-stream" "$OUT" "LoRA per stream, in turn: $R8 x1 (rank 8,"
expect_contains "bench --lora-per-stream none" "$OUT" ", none, $QV x2 (rank 4,"
expect_contains "bench --lora-per-stream parallel" "$OUT" "| 3 | "
run "$REALM_BIN" bench -m "$M" -p 0 -n 0 -r 1 --parallel 2,4 --npp 8 --ntg 4 --lora-per-stream "$R8,$QV" --json
expect_rc "bench --lora-per-stream --json" 0
checks=$((checks + 1))
printf '%s' "$OUT" | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"]
assert [x["parallel"] for x in r if x["test"] == "parallel"] == [2, 4], r
assert all(x["tokens_per_s"] > 0 for x in r), r
' || fail "bench --lora-per-stream --json: $(printf '%s' "$OUT" | head -c 400)"
run "$REALM_BIN" bench -m "$M" --lora "$R8" --lora-per-stream "$QV"; expect_rc "both" 1
expect_contains "both" "$OUT" "--lora and --lora-per-stream: use one or the other"
run "$REALM_BIN" bench -m "$M" -p 8 -n 0 -r 1 --lora "$M"; expect_rc "bench bad adapter" 1
expect_contains "bench bad adapter" "$OUT" "not a LoRA adapter"
finish

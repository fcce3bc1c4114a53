# realm run: llama.cpp's exact greedy output on stories260K, seeded sampling,
# and bad arguments.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"

"$REALM_BIN" run -m "$M" -p "Once upon a time" -n 64 --temp 0 > "$TMP/out.txt" 2> "$TMP/err.txt"
checks=$((checks + 1))
# llama-completion ends with one more newline than realm run
{ cat "$TMP/out.txt"; echo; } | cmp -s - "$TD/reference/stories260K.completion.stdout.txt" ||
  fail "greedy output differs from llama.cpp's: $(cat "$TMP/out.txt")"
expect_contains timing "$(cat "$TMP/err.txt")" "generation 63 tokens"
expect_contains timing "$(cat "$TMP/err.txt")" "prompt 5 tokens"

# Same seed, same text; the sampler is not greedy at temperature 1.
a=$("$REALM_BIN" run -m "$M" -p "Tom had a dog" -n 40 --temp 1 --seed 7 2>/dev/null)
b=$("$REALM_BIN" run -m "$M" -p "Tom had a dog" -n 40 --temp 1 --seed 7 2>/dev/null)
g=$("$REALM_BIN" run -m "$M" -p "Tom had a dog" -n 40 --temp 0 2>/dev/null)
checks=$((checks + 1)); [ "$a" = "$b" ] || fail "same seed gave different text"
different=0
for s in 1 2 3; do
  c=$("$REALM_BIN" run -m "$M" -p "Tom had a dog" -n 40 --temp 1 --seed $s 2>/dev/null)
  [ "$c" != "$g" ] && different=$((different + 1))
done
checks=$((checks + 1)); [ "$different" -gt 0 ] || fail "temperature 1 always gave the greedy text"

run "$REALM_BIN" run -m "$M" -p "Hello" -n 0; expect_rc "n 0" 0
# --repack (the default): the Q4_K, Q5_K, Q6_K, Q8_0 and Q4_0 models' matrices repacked at load
# give the same greedy text over 8 tokens as --no-repack; accepted where nothing packs (Q4_1). Their logits agree within float rounding
# (test_model), not bitwise, so a longer greedy run can part at a near-tie (Q8_0's did at its
# 23rd token).
for q in q4_k_m q5_k_m q6_k q8_0 q4_0 q4_1; do
  a=$("$REALM_BIN" run -m "$TD/quant/tiny-$q.gguf" -p "Once upon" -n 8 --temp 0 --no-repack 2>/dev/null)
  b=$("$REALM_BIN" run -m "$TD/quant/tiny-$q.gguf" -p "Once upon" -n 8 --temp 0 2>/dev/null)
  checks=$((checks + 1)); [ -n "$a" ] && [ "$a" = "$b" ] || fail "tiny-$q: repacking changed the greedy text"
done
# the chat (through a registry) and a draft model take it too
run "$REALM_BIN" run -m "$TD/quant/tiny-q4_k_m.gguf" --repack -t 1 < /dev/null; expect_rc "chat --repack" 0
run "$REALM_BIN" run -m "$TD/quant/tiny-q4_k_m.gguf" -p "Once upon" -n 8 --temp 0 --repack --draft "$TD/quant/tiny-q4_k_m.gguf"
expect_rc "--repack --draft" 0

run "$REALM_BIN" run -p "Hello"; expect_rc "no model" 1; expect_contains "no model" "$OUT" "missing -m"
run "$REALM_BIN" run -m "$M" -t 1 < /dev/null; expect_rc "no prompt: a chat, ended by EOF" 0
run "$REALM_BIN" run -m "$TMP/none.gguf" -p x; expect_rc "bad model" 1; expect_contains "bad model" "$OUT" "none.gguf"
run "$REALM_BIN" run -m "$M" -p "Once upon a time there was a dog" -c 4; expect_rc "prompt too long" 1
expect_contains "prompt too long" "$OUT" "context only 4"
run "$REALM_BIN" run -m "$M" -p x --temp -1; expect_rc "bad temp" 1
run "$REALM_BIN" run -m "$M" -p x -n; expect_rc "missing value" 1
run "$REALM_BIN" run -m "$TD/vocab/ggml-vocab-llama-spm.gguf" -p x; expect_rc "vocab only" 1
expect_contains "vocab only" "$OUT" "missing"
run "$REALM_BIN" run -m "$M" -p x -c 100000 --mem-budget 10M; expect_rc "over budget" 1
expect_contains "over budget" "$OUT" "more than the memory budget of 10.00 MiB"
run "$REALM_BIN" run -m "$M" -p x -n 4 --mem-budget 10M; expect_rc "within budget" 0
expect_contains "memory line" "$OUT" "memory: weights"
# --cache-type-k / --cache-type-v: a Q8_0 cache on the tiny model (head size 64),
# refused on stories260K (head size 8) and for other types
Q="$TD/quant/tiny-q8_0.gguf"
run "$REALM_BIN" run -m "$Q" -p "Once upon a time" -n 8 --temp 0 --cache-type-k q8_0 --cache-type-v q8_0
expect_rc "q8_0 cache" 0
expect_contains "q8_0 cache: memory line" "$OUT" "(keys q8_0, values q8_0) for 13 tokens"
run "$REALM_BIN" run -m "$Q" -p "Once upon a time" -n 8 --temp 0 --cache-type-v Q8_0
expect_rc "q8_0 values" 0
expect_contains "q8_0 values: memory line" "$OUT" "(keys f16, values q8_0)"
run "$REALM_BIN" run -m "$M" -p x --cache-type-k q8_0; expect_rc "q8_0 on head size 8" 1
expect_contains "q8_0 on head size 8" "$OUT" "multiple of 32, and this model's is 8: use f16"
run "$REALM_BIN" run -m "$M" -p x --cache-type-v q4_0; expect_rc "q4_0 cache" 1
expect_contains "q4_0 cache" "$OUT" "--cache-type-v must be one of f16, q8_0, not 'q4_0'"
run "$REALM_BIN" run -m "$M" -p x --cache-type-k; expect_rc "cache type missing" 1
expect_contains "cache type missing" "$OUT" "option --cache-type-k needs a value"
run "$REALM_BIN" run -m "$Q" -n 4 --cache-type-k q8_0 --cache-type-v q8_0 < /dev/null
expect_rc "chat with a q8_0 cache" 0
run "$REALM_BIN" run -m "$M" -n 4 --cache-type-k q8_0 < /dev/null; expect_rc "chat, head size 8" 1
expect_contains "chat, head size 8" "$OUT" "multiple of 32"
finish

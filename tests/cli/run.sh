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
finish

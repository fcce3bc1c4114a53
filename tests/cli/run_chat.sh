# realm run without -p: the chat on a pseudo-terminal (run_chat.py), the same
# chat scripted through a pipe (later turns come from the prefix cache), and
# models named instead of paths.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
M="$TD/models/stories260K.gguf"

checks=$((checks + 1))
timeout 90 python3 "$HERE/run_chat.py" "$REALM_BIN" "$M" || fail "the chat on a terminal (run_chat.py)"

# Not a terminal: no prompts, one message a line; from turn 2 on the
# conversation so far is taken from the prefix cache.
set +e
printf 'Hello\nWhat did the dog do next?\n"""Tell me\nmore."""\n/bye\n' |
  timeout 60 "$REALM_BIN" run "$M" --verbose -n 40 -t 1 > "$TMP/out.txt" 2> "$TMP/err.txt"
RC=$?
set -e
OUT=$(cat "$TMP/out.txt"); ERR=$(cat "$TMP/err.txt")
expect_rc "piped chat" 0
checks=$((checks + 1))
case "$OUT" in *">>>"*) fail "prompts printed when stdin is not a terminal" ;; esac
for turn in 2 3; do
  line=$(printf '%s\n' "$ERR" | grep "^turn $turn: " || true)
  cached=$(printf '%s\n' "$line" | sed -n 's/.*prompt [0-9]* tokens, \([0-9]*\) cached.*/\1/p')
  checks=$((checks + 1))
  [ -n "$cached" ] && [ "$cached" -gt 0 ] ||
    fail "turn $turn took nothing from the prefix cache: '$line'"
done
checks=$((checks + 1))
[ "$(printf '%s\n' "$ERR" | grep -c '^turn ')" = 3 ] || fail "expected 3 turns: $ERR"

# End of input without /bye ends the chat too; commands work in a pipe.
run sh -c "printf '/set parameter top_k 5\n/set system Be brief.\n/show\n' | '$REALM_BIN' run '$M' -t 1"
expect_rc "commands in a pipe" 0
expect_contains "set top_k" "$OUT" "Set parameter 'top_k' to '5'"
expect_contains "show system" "$OUT" "system           Be brief."
run sh -c "printf '/set parameter top_k x\n/set parameter nope 1\n/frobnicate\n' | '$REALM_BIN' run '$M' -t 1"
expect_rc "bad commands" 0
expect_contains "bad value" "$OUT" "Invalid value 'x' for top_k"
expect_contains "bad parameter" "$OUT" "Unknown parameter 'nope'"
expect_contains "bad command" "$OUT" "Unknown command '/frobnicate'"

# A chat over the memory budget fails clearly; sizes take units.
run sh -c "'$REALM_BIN' run '$M' --mem-budget 100K < /dev/null"
expect_rc "chat over budget" 1
expect_contains "chat over budget" "$OUT" "memory budget"
run "$REALM_BIN" run "$M" --mem-budget 6Q -p x
expect_rc "bad size" 1
expect_contains "bad size" "$OUT" "--mem-budget"

# Names: a pulled model in the models directory, for -p and the chat.
D="$TMP/models"
mkdir -p "$D"
cp "$M" "$D/tiny.gguf"
want=$("$REALM_BIN" run -m "$M" -p "Once upon a time" -n 16 --temp 0 2>/dev/null)
got=$("$REALM_BIN" run tiny --models-dir "$D" -p "Once upon a time" -n 16 --temp 0 2>/dev/null)
checks=$((checks + 1)); [ "$got" = "$want" ] || fail "run NAME -p differs from the path: $got"
got=$(REALM_MODELS_DIR="$D" "$REALM_BIN" run -m tiny -p "Once upon a time" -n 16 --temp 0 2>/dev/null)
checks=$((checks + 1)); [ "$got" = "$want" ] || fail "run -m NAME with REALM_MODELS_DIR: $got"
run sh -c "printf 'Hi\n' | '$REALM_BIN' run tiny --models-dir '$D' -n 4 -t 1 --verbose"
expect_rc "chat by name" 0
expect_contains "chat by name" "$OUT" "turn 1: prompt"
run "$REALM_BIN" run nosuch --models-dir "$D" -p x
expect_rc "unknown name" 1
expect_contains "unknown name" "$OUT" "no model 'nosuch'"
run sh -c "'$REALM_BIN' run nosuch --models-dir '$D' < /dev/null"
expect_rc "unknown name, chat" 1
expect_contains "unknown name, chat" "$OUT" "nosuch"
run "$REALM_BIN" run "$M" tiny -p x
expect_rc "two models" 1
expect_contains "two models" "$OUT" "unexpected argument 'tiny'"
run sh -c "'$REALM_BIN' run '$M' --mlock < /dev/null"
expect_rc "mlock in chat" 1
expect_contains "mlock in chat" "$OUT" "--mlock works with -p only"
finish

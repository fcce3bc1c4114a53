# RoPE options of realm run, bench and serve on the long-context models of
# tests/rope_models.h (written by make_rope_models): the RoPE in effect as
# realm run reports it, with the model's metadata and with llama.cpp's
# overrides, and bad values refused naming the option. (The logits these
# give are tested against llama.cpp by test_rope.)
. "$(dirname "$0")/lib.sh"
: "${REALM_MAKE_ROPE_MODELS:?}"
"$REALM_MAKE_ROPE_MODELS" "$TD" "$TMP" 16
Y="$TMP/rope-yarn.gguf"
L="$TMP/rope-linear.gguf"

rope_line() { run "$REALM_BIN" run "$@" -p "Once upon a time" -n 4 --temp 0; }
rope_line "$Y"; expect_rc "yarn model" 0
expect_contains "yarn model" "$OUT" \
  "rope: yarn x4 (YaRN over an original context of 4096, extrapolation mix 1), base 10000, trained context 16384"
rope_line "$L"; expect_rc "linear model" 0
expect_contains "linear model" "$OUT" "rope: linear x2, base 10000, trained context 8192"$'\n'
rope_line "$TMP/rope-llama3.gguf"; expect_rc "llama3 model" 0
expect_contains "llama3 model" "$OUT" "rope: linear, rope_freqs factors, base 500000, trained context 16384"
rope_line "$Y" --rope-scaling none
expect_contains "none" "$OUT" "rope: none, base 10000, trained context 16384 (overridden)"
rope_line "$Y" --rope-scaling linear --rope-scale 8
expect_contains "linear x8" "$OUT" "rope: linear x8, base 10000, trained context 16384 (overridden)"
rope_line "$Y" --rope-freq-scale 0.5 --rope-freq-base 20000
expect_contains "freq scale and base" "$OUT" "rope: yarn x2 (YaRN over an original context of 4096, extrapolation mix 1), base 20000"
rope_line "$Y" --yarn-orig-ctx 2048 --yarn-ext-factor 0.5 --yarn-beta-fast 16 --yarn-beta-slow 2
expect_contains "yarn knobs" "$OUT" "(YaRN over an original context of 2048, extrapolation mix 0.5)"
rope_line "$L" --rope-scaling yarn
expect_contains "linear to yarn" "$OUT" "rope: yarn x2 (YaRN over an original context of 8192, extrapolation mix 1)"
rope_line "$Y" --yarn-ext-factor 0
expect_contains "mix 0" "$OUT" "rope: yarn x4, base 10000"
run "$REALM_BIN" run "$TD/models/stories260K.gguf" -p "Once" -n 2 --temp 0
expect_rc "plain model" 0
checks=$((checks + 1)); case "$OUT" in *"rope:"*) fail "plain model: a rope line: $OUT" ;; esac
# the chat loads through a registry, with the same overrides
run "$REALM_BIN" run "$Y" --rope-scaling none --yarn-orig-ctx 1000 < /dev/null
expect_rc "chat with overrides" 0

# bad values, on the command line and (serve) in the environment
run "$REALM_BIN" run "$Y" -p x --rope-scaling longrope; expect_rc "longrope" 1
expect_contains "longrope" "$OUT" "realm run: --rope-scaling must be one of none, linear, yarn, not 'longrope'"
run "$REALM_BIN" run "$Y" -p x --rope-freq-base 0; expect_rc "base 0" 1
expect_contains "base 0" "$OUT" "--rope-freq-base must be a number between 1 and"
run "$REALM_BIN" run "$Y" -p x --rope-freq-base 1; expect_rc "base 1" 1
expect_contains "base 1" "$OUT" "freq_base = 1: must be above 1"
run "$REALM_BIN" run "$Y" -p x --rope-scale 2 --rope-freq-scale 0.5; expect_rc "both scales" 1
expect_contains "both scales" "$OUT" "both set the frequency scale: give one"
run "$REALM_BIN" run "$Y" -p x --yarn-orig-ctx 0; expect_rc "orig ctx 0" 1
expect_contains "orig ctx 0" "$OUT" "--yarn-orig-ctx must be an integer between 1 and"
run "$REALM_BIN" run "$Y" -p x --yarn-beta-fast; expect_rc "no value" 1
expect_contains "no value" "$OUT" "option --yarn-beta-fast needs a value"
run "$REALM_BIN" run "$Y" --rope-scaling foo < /dev/null; expect_rc "chat, bad scaling" 1

run "$REALM_BIN" bench -m "$Y" -p 16 -n 4 -r 1 -t 2 --rope-scaling linear --rope-freq-base 20000 \
  --yarn-orig-ctx 2048
expect_rc "bench" 0
expect_contains "bench pp" "$OUT" "| pp16 |"
run "$REALM_BIN" bench -m "$Y" --yarn-ext-factor 101; expect_rc "bench ext factor" 1
expect_contains "bench ext factor" "$OUT" "realm bench: --yarn-ext-factor must be a number between 0 and 100"
run "$REALM_BIN" bench -m "$Y" --rope-scale 2 --rope-freq-scale 0.5; expect_rc "bench both" 1

run "$REALM_BIN" serve --rope-scaling foo; expect_rc "serve scaling" 1
expect_contains "serve scaling" "$OUT" "realm serve: --rope-scaling must be one of none, linear, yarn"
run env REALM_ROPE_FREQ_BASE=abc "$REALM_BIN" serve; expect_rc "serve env" 1
expect_contains "serve env" "$OUT" "REALM_ROPE_FREQ_BASE must be a number"
run "$REALM_BIN" serve --port 0 --rope-scale 2 --rope-freq-scale 0.5; expect_rc "serve both" 1
expect_contains "serve both" "$OUT" "give one"
run "$REALM_BIN" help serve
expect_contains "serve help" "$OUT" "--yarn-orig-ctx N"
expect_contains "serve help" "$OUT" "[env REALM_ROPE_SCALING]"
finish

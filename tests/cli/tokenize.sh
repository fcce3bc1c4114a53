# realm tokenize: llama.cpp's reference output, modes, stdin, special tokens,
# bad inputs.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"
V="$TD/vocab"
S="Once upon a time, there was a little girl named Lily."

# The exact output of llama-tokenize on the same model and sentence.
run "$REALM_BIN" tokenize -m "$M" "$S"; expect_rc table 0
checks=$((checks + 1))
[ "$OUT" = "$(cat "$TD/reference/stories260K.tokenize.stdout.txt")" ] ||
  { fail "table output differs from llama-tokenize"; printf '%s\n' "$OUT" | head -20 >&2; }

run "$REALM_BIN" tokenize -m "$M" --ids "$S"; expect_rc ids 0
expect_contains ids "$OUT" "[1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]"
run "$REALM_BIN" tokenize -m "$M" --ids --no-special "$S"; expect_rc no-special 0
expect_contains no-special "$OUT" "[403, 407, 261,"
run "$REALM_BIN" tokenize -m "$M" --count "$S"; expect_rc count 0; expect_contains count "$OUT" "16"
run "$REALM_BIN" tokenize -m "$M" --pieces "$S"; expect_rc pieces 0
expect_contains pieces "$OUT" '["<s>", " Once", " upon", " a", " time", ","'

# Standard input when there is no TEXT (all of it, newline included).
set +e; OUT=$(printf '%s' "$S" | "$REALM_BIN" tokenize -m "$M" --count 2>&1); RC=$?; set -e
expect_rc stdin 0; expect_contains stdin "$OUT" "16"
set +e; OUT=$(printf 'Hello\n' | "$REALM_BIN" tokenize -m "$V/ggml-vocab-gpt-2.gguf" --ids 2>&1); RC=$?; set -e
expect_rc stdin-nl 0; expect_contains stdin-nl "$OUT" "[15496, 198]"

# Byte-level BPE and WordPiece vocabularies; the test strings' ids.
run "$REALM_BIN" tokenize -m "$V/ggml-vocab-gpt-2.gguf" --ids " Hello, world!"; expect_rc gpt2 0
expect_contains gpt2 "$OUT" "[18435, 11, 995, 0]"
run "$REALM_BIN" tokenize -m "$V/ggml-vocab-bert-bge.gguf" --ids "Hello world"; expect_rc bert 0
expect_contains bert "$OUT" "[101, 7592, 2088, 102]"

# Control tokens are text unless --parse-special.
run "$REALM_BIN" tokenize -m "$V/ggml-vocab-phi-3.gguf" --ids --no-special "<|end|>"; expect_rc inject 0
checks=$((checks + 1)); case "$OUT" in *32007*) fail "<|end|> parsed without --parse-special" ;; esac
run "$REALM_BIN" tokenize -m "$V/ggml-vocab-phi-3.gguf" --ids --no-special --parse-special "<|end|>"
expect_rc parse 0; expect_contains parse "$OUT" "[32007]"
run "$REALM_BIN" tokenize -m "$V/ggml-vocab-gpt-2.gguf" --pieces --no-special "a<|endoftext|>"
expect_rc pieces-text 0; expect_contains pieces-text "$OUT" '["a", "<", "|", "end", "of", "text", "|", ">"]'

# Bad inputs: clear errors, never a crash.
run "$REALM_BIN" tokenize "$S"; expect_rc no-model 1; expect_contains no-model "$OUT" "missing -m"
run "$REALM_BIN" tokenize -m "$TMP/none.gguf" "x"; expect_rc missing 1; expect_contains missing "$OUT" "none.gguf"
run "$REALM_BIN" tokenize -m "$M" --bogus "x"; expect_rc badopt 1; expect_contains badopt "$OUT" "unknown option"
run "$REALM_BIN" tokenize -m "$M" "a" "b"; expect_rc extra 1; expect_contains extra "$OUT" "unexpected argument"
run "$REALM_BIN" tokenize -m; expect_rc novalue 1
# A GGUF without a vocabulary.
python3 - "$TMP/novocab.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack('<Q', len(b)) + b
kv = s('general.architecture') + struct.pack('<I', 8) + s('llama')
open(sys.argv[1], 'wb').write(b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + kv)
PY
run "$REALM_BIN" tokenize -m "$TMP/novocab.gguf" "x"; expect_rc novocab 1
expect_contains novocab "$OUT" "tokenizer.ggml.model"
run "$REALM_BIN" help tokenize; expect_rc help 0; expect_contains help "$OUT" "usage: realm tokenize"
finish

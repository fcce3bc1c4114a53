# realm chat-template: rendering with a real vocabulary's template, overrides,
# and clear errors for bad input.
. "$(dirname "$0")/lib.sh"
PHI3="$TD/vocab/ggml-vocab-phi-3.gguf"        # carries Phi-3's chat template
SPM="$TD/vocab/ggml-vocab-llama-spm.gguf"     # has no chat template
for f in "$PHI3" "$SPM"; do [ -r "$f" ] || { echo "missing test data $f" >&2; exit 1; }; done

# expect_output WHAT EXPECTED CMD... < stdin: the command succeeds and prints
# exactly EXPECTED (a printf format: \n is a newline), byte for byte.
expect_output() {
  local what=$1 want=$2; shift 2
  checks=$((checks + 1))
  printf "$want" > "$TMP/want"
  set +e; "$@" > "$TMP/got" 2> "$TMP/err"; local rc=$?; set -e
  if [ "$rc" != 0 ]; then
    fail "$what: exit $rc"; cat "$TMP/err" >&2
  elif ! cmp -s "$TMP/want" "$TMP/got"; then
    fail "$what: output differs"; echo "  want: $(od -c "$TMP/want" | head -5)" >&2
    echo "  got:  $(od -c "$TMP/got" | head -5)" >&2
  fi
}

CONV='[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
       {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]'

expect_output phi3 '<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n' \
  "$REALM_BIN" chat-template -m "$PHI3" <<< "$CONV"
# The object form; without a generation prompt Phi-3 ends with the model's EOS.
expect_output phi3-object '<|user|>\nHi<|end|>\n<|endoftext|>' \
  "$REALM_BIN" chat-template -m "$PHI3" \
  <<< '{"model": "ignored", "messages": [{"role": "user", "content": "Hi", "name": "x"}], "add_generation_prompt": false}'
expect_output detect 'phi3\n' "$REALM_BIN" chat-template -m "$PHI3" --detect
# An override wins over the model's template; the model's own BOS/EOS texts are
# still used (Phi-3's EOS is <|endoftext|>).
expect_output override '[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! <|endoftext|><s>[INST] Bye [/INST]' \
  "$REALM_BIN" chat-template -m "$PHI3" --template llama-2 <<< "$CONV"
expect_output spm-override '[INST] Hi [/INST]' \
  "$REALM_BIN" chat-template -m "$SPM" -t llama2 <<< '[{"role": "user", "content": "Hi"}]'
# No model: the named template with its usual BOS/EOS texts.
expect_output chatml '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n' \
  "$REALM_BIN" chat-template -t chatml <<< "$CONV"
expect_output llama3-empty '<|start_header_id|>assistant<|end_header_id|>\n\n' \
  "$REALM_BIN" chat-template -t llama3 <<< '{"messages": []}'
expect_output unicode '<start_of_turn>user\nHé ☃<end_of_turn>\n<start_of_turn>model\n' \
  "$REALM_BIN" chat-template -t gemma <<< '[{"role": "user", "content": "\u00a0H\u00e9 \u2603\n"}]'

run "$REALM_BIN" chat-template --list; expect_rc list 0
expect_contains list "$OUT" "llama2, mistral-legacy, mistral-v1"
expect_contains list "$OUT" "command-r, vicuna, alpaca"
run "$REALM_BIN" help chat-template; expect_rc help 0
expect_contains help "$OUT" "usage: realm chat-template -m MODEL.gguf"

# Errors: a clear message, exit status 1, nothing on stdout.
expect_error() { # WHAT PHRASE CMD... (stdin from the caller)
  local what=$1 phrase=$2; shift 2
  set +e; "$@" > "$TMP/got" 2> "$TMP/err"; RC=$?; set -e
  OUT=$(cat "$TMP/err")
  expect_rc "$what" 1
  expect_contains "$what" "$OUT" "realm chat-template: "
  expect_contains "$what" "$OUT" "$phrase"
  checks=$((checks + 1)); [ ! -s "$TMP/got" ] || fail "$what: wrote to stdout"
}
expect_error no-template "no tokenizer.chat_template" "$REALM_BIN" chat-template -m "$SPM" <<< '[]'
expect_error no-template-hint "override with --template NAME" "$REALM_BIN" chat-template -m "$SPM" <<< '[]'
expect_error no-template-names "one of: llama2, " "$REALM_BIN" chat-template -m "$SPM" <<< '[]'
expect_error bad-name "unknown chat template 'llama9'; known templates: llama2, " \
  "$REALM_BIN" chat-template -m "$PHI3" -t llama9 <<< '[]'
expect_error no-args "need -m MODEL.gguf or --template NAME" "$REALM_BIN" chat-template < /dev/null
expect_error no-value "option --template needs a value" "$REALM_BIN" chat-template --template
expect_error bad-option "unknown option '--bogus'" "$REALM_BIN" chat-template --bogus
expect_error missing-model "does-not-exist.gguf" \
  "$REALM_BIN" chat-template -m "$TMP/does-not-exist.gguf" <<< '[]'
expect_error bad-json "stdin:2:1 (byte" "$REALM_BIN" chat-template -t chatml <<< $'[{"role": "user",\n}]'
expect_error empty-input "invalid JSON" "$REALM_BIN" chat-template -t chatml < /dev/null
expect_error not-a-list "must be a JSON array of messages" "$REALM_BIN" chat-template -t chatml <<< '"hi"'
expect_error no-messages 'missing "messages"' "$REALM_BIN" chat-template -t chatml <<< '{"prompt": "x"}'
expect_error messages-type '"messages" must be an array' "$REALM_BIN" chat-template -t chatml <<< '{"messages": {}}'
expect_error gen-type '"add_generation_prompt" must be true or false' \
  "$REALM_BIN" chat-template -t chatml <<< '{"messages": [], "add_generation_prompt": "yes"}'
expect_error msg-type "messages[1]: expected an object" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": "user", "content": "x"}, "hello"]'
expect_error role-missing "messages[0].role: missing" "$REALM_BIN" chat-template -t chatml <<< '[{"content": "x"}]'
expect_error role-type "messages[0].role: must be a string" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": 1, "content": "x"}]'
expect_error role-unknown "messages[0].role: unknown chat role 'tool'" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": "tool", "content": "x"}]'
expect_error content-missing "messages[0].content: missing" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": "user"}]'
expect_error content-null "messages[0].content: must be a string" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": "assistant", "content": null}]'
expect_error content-parts "content parts are not supported" \
  "$REALM_BIN" chat-template -t chatml <<< '[{"role": "user", "content": [{"type": "text", "text": "x"}]}]'
expect_error late-system "takes a system message only as the first message" \
  "$REALM_BIN" chat-template -t gemma <<< '[{"role": "user", "content": "U"}, {"role": "system", "content": "S"}]'
finish

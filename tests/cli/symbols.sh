# The shared library exports the public API (realm_*, declared in
# include/realm/) and nothing else: no internal realm__* symbol, no helper.
. "$(dirname "$0")/lib.sh"

LIB="$(dirname "$REALM_BIN")/librealm.so"
checks=$((checks + 1)); [ -r "$LIB" ] || fail "no $LIB"
SYMS=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
N_INTERNAL=$(printf '%s\n' "$SYMS" | grep -c '^realm__' || true)
checks=$((checks + 1)); [ "$N_INTERNAL" = 0 ] || fail "$N_INTERNAL internal realm__ symbols exported: $(printf '%s\n' "$SYMS" | grep '^realm__' | head -5 | tr '\n' ' ')"
OTHER=$(printf '%s\n' "$SYMS" | grep -v '^realm_' | grep -v '^_' || true)
checks=$((checks + 1)); [ -z "$OTHER" ] || fail "symbols outside the API exported: $(printf '%s\n' "$OTHER" | head -5 | tr '\n' ' ')"
for s in realm_model_load realm_engine_new realm_tokenize realm_chat_prompt_tokenize \
         realm_sandbox_add_model realm_log_set_handler realm_strerror; do
  expect_contains "export $s" "$SYMS" "$s"
done
finish

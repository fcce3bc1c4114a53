# Helpers for the CLI tests (sourced). REALM_BIN, REALM_TESTDATA come from CTest.
set -euo pipefail
: "${REALM_BIN:?}" "${REALM_TESTDATA:?}"
TD="$REALM_TESTDATA"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# expect_contains WHAT HAYSTACK NEEDLE
expect_contains() {
  checks=$((checks + 1))
  case "$2" in *"$3"*) ;; *) fail "$1: output does not contain '$3'"; printf '%s\n' "$2" | head -20 >&2 ;; esac
}
# run_rc VAR CMD...: run, capture combined output in OUT and status in RC
run() { set +e; OUT=$("$@" 2>&1); RC=$?; set -e; }
expect_rc() { checks=$((checks + 1)); [ "$RC" = "$2" ] || { fail "$1: exit $RC, expected $2"; printf '%s\n' "$OUT" | head -20 >&2; }; }
expect_fail() { checks=$((checks + 1)); [ "$RC" != 0 ] || fail "$1: succeeded, expected failure"; }
for f in "$TD/models/stories260K.gguf" "$TD/quant/tiny-f32.gguf"; do
  [ -r "$f" ] || { echo "missing test data $f" >&2; exit 1; }
done
finish() {
  echo "$(basename "$0"): $checks checks, $failures failed"
  [ "$failures" = 0 ]
}

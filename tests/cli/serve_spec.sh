# realm serve with speculative decoding over real sockets: tests/cli/serve_spec_test.py
# (Python standard library).
set -euo pipefail
: "${REALM_BIN:?}" "${REALM_TESTDATA:?}" "${REALM_MAKE_TEST_MODEL:?}"
exec timeout 600 python3 "$(dirname "$0")/serve_spec_test.py"

# realm serve over real sockets: tests/cli/serve_test.py (Python standard library).
set -euo pipefail
: "${REALM_BIN:?}" "${REALM_TESTDATA:?}"
exec timeout 600 python3 "$(dirname "$0")/serve_test.py"

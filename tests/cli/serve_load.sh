# realm serve with 1,000 idle keep-alive connections and 64 streams at once
# (tests/cli/serve_load.py, standard library, 127.0.0.1 only, bounded).
set -euo pipefail
: "${REALM_BIN:?}" "${REALM_TESTDATA:?}"
exec timeout 300 python3 "$(dirname "$0")/serve_load.py"

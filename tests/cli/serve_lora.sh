# realm serve with LoRA adapters over real sockets: tests/cli/serve_lora_test.py
# (Python standard library).
set -euo pipefail
: "${REALM_BIN:?}" "${REALM_TESTDATA:?}" "${REALM_SOURCE_DIR:?}"
exec timeout 600 python3 "$(dirname "$0")/serve_lora_test.py"

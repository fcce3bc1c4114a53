# realm --version / --help / help COMMAND / bad commands.
. "$(dirname "$0")/lib.sh"

run "$REALM_BIN" --version; expect_rc version 0; expect_contains version "$OUT" "realm 0."
run "$REALM_BIN" --help; expect_rc help 0; HELP=$OUT
for c in info quantize bench-kernels; do
  expect_contains help "$HELP" "$c"
  run "$REALM_BIN" help "$c"; expect_rc "help $c" 0; expect_contains "help $c" "$OUT" "usage: realm $c"
  run "$REALM_BIN" "$c" --help; expect_rc "$c --help" 0; expect_contains "$c --help" "$OUT" "usage: realm $c"
done
run "$REALM_BIN" frobnicate; expect_rc "unknown command" 2; expect_contains unknown "$OUT" "no command 'frobnicate'"
run "$REALM_BIN" help frobnicate; expect_rc "help unknown" 2
run "$REALM_BIN"; expect_rc "no args" 2; expect_contains "no args" "$OUT" "usage: realm COMMAND"
finish

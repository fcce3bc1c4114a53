# realm tenant | key | usage on a temporary data directory: tenants and
# limits, modules (a good one stored by hash, bad ones refused with nothing
# changed), keys (printed once, never stored), usage, and the errors.
. "$(dirname "$0")/lib.sh"
D="$TMP/data"
export REALM_MODULE_CACHE="$TMP/cache"
R() { "$REALM_BIN" "$@" --data-dir "$D"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# ---- tenants ------------------------------------------------------------------
run R tenant list; expect_rc list-empty 0
expect_contains list-empty "$OUT" "no tenants"
checks=$((checks + 1)); [ "$(stat -c %a "$D")" = 700 ] || fail "data dir mode $(stat -c %a "$D")"
checks=$((checks + 1)); [ "$(stat -c %a "$D/realm.db")" = 600 ] || fail "db mode"
run R tenant add acme; expect_rc add 0
expect_contains add "$OUT" "tenant 'acme' added (id 1)"
run R tenant add acme; expect_rc add-dup 1
expect_contains add-dup "$OUT" "realm tenant: a tenant 'acme' exists"
run R tenant add ".hidden"; expect_rc add-bad 1
expect_contains add-bad "$OUT" "bad tenant name '.hidden'"
run R tenant add "a/b"; expect_rc add-slash 1
run R tenant add beta; expect_rc add-beta 0

run R tenant set acme --rpm 60 --tpm 50000 --max-concurrent 4 --max-tokens 256 --quota 1000000 \
  --models tiny,llama3:8b --weight 2.5 --max-pages 512 --deadline-ms 3000
expect_rc set 0
expect_contains set "$OUT" "tenant 'acme' updated"
run R tenant show acme; expect_rc show 0
expect_contains show "$OUT" "rpm             60"
expect_contains show "$OUT" "max concurrent  4"
expect_contains show "$OUT" "quota           1000000 tokens a month (UTC)"
expect_contains show "$OUT" "models          tiny,llama3:8b"
expect_contains show "$OUT" "weight          2.5"
expect_contains show "$OUT" "deadline        3000 ms"
expect_contains show "$OUT" "module          default"
expect_contains show "$OUT" "this month      0 requests"
J=$(R tenant show acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["rpm"], d["tpm"], d["max_concurrent"], d["max_tokens"], d["quota"], d["weight"], d["max_pages"], d["deadline_ms"], d["models"], d["module_sha256"])')" = \
  "(60, 50000, 4, 256, 1000000, 2.5, 512, 3000, ['tiny', 'llama3:8b'], None)" ] || fail "show --json: $J"
run R tenant set acme --models all --rpm 0; expect_rc set-all 0
J=$(R tenant show acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["models"], d["rpm"], d["tpm"])')" = "(None, 0, 50000)" ] || fail "set all: $J"
# the key-value quota: a size, printed with what the module's data uses
run R tenant show acme; expect_contains show-kv0 "$OUT" "kv quota        the server's default; 0 B used in 0 keys"
run R tenant set acme --kv-quota 2M; expect_rc set-kv 0
run R tenant show acme; expect_contains show-kv "$OUT" "kv quota        2.00 MiB; 0 B used in 0 keys"
J=$(R tenant show acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["kv_quota"], d["kv_used"])')" = \
  "(2097152, {'bytes': 0, 'keys': 0})" ] || fail "kv_quota --json: $J"
run R tenant set acme --kv-quota lots; expect_rc set-kv-bad 2
expect_contains set-kv-bad "$OUT" "--kv-quota"
run R tenant set acme --kv-quota 2T; expect_rc set-kv-big 2

run R tenant list; expect_rc list 0
expect_contains list "$OUT" "NAME"
expect_contains list "$OUT" "acme"
expect_contains list "$OUT" "beta"
J=$(R tenant list --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '[t["name"] for t in d]')" = "['acme', 'beta']" ] || fail "list --json: $J"

# Bad values: usage errors (2) for what the command line can tell, the
# store's refusal (1) naming the field for the rest; nothing changes.
run R tenant set acme --rpm -1; expect_rc set-neg 2
expect_contains set-neg "$OUT" "--rpm"
run R tenant set acme --weight 0; expect_rc set-weight 2
expect_contains set-weight "$OUT" "--weight"
run R tenant set acme --weight abc; expect_rc set-weight2 2
run R tenant set acme --max-pages 70000; expect_rc set-pages 2
run R tenant set acme --models "a b"; expect_rc set-models 1
expect_contains set-models "$OUT" "models: bad model name 'a b'"
run R tenant set acme --models "a,,b"; expect_rc set-models2 1
expect_contains set-models2 "$OUT" "models"
run R tenant set acme --bogus 1; expect_rc set-unknown 2
expect_contains set-unknown "$OUT" "unknown option --bogus"
run R tenant set acme; expect_rc set-nothing 2
run R tenant set nobody --rpm 1; expect_rc set-nobody 1
expect_contains set-nobody "$OUT" "realm tenant: no tenant 'nobody'"
run R tenant show nobody; expect_rc show-nobody 1
run R tenant; expect_rc no-sub 2
run R tenant frob; expect_rc bad-sub 2
run R tenant set acme --rpm; expect_rc set-novalue 2
J=$(R tenant show acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["rpm"], d["weight"], d["models"])')" = "(0, 2.5, None)" ] || fail "changed by a refused set: $J"

# ---- modules ------------------------------------------------------------------
cat > "$TMP/good.wat" <<'WAT'
(module
  (import "realm" "respond" (func $respond (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "ok")
  (func (export "handle") (result i32)
    (drop (call $respond (i32.const 200) (i32.const 0) (i32.const 2)))
    (i32.const 0)))
WAT
cat > "$TMP/wasi.wat" <<'WAT'
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (i32.const 0)))
WAT
cat > "$TMP/noexport.wat" <<'WAT'
(module (memory (export "memory") 1) (func (export "other") (result i32) (i32.const 0)))
WAT
for m in good wasi noexport; do wat2wasm "$TMP/$m.wat" -o "$TMP/$m.wasm"; done
head -c 20 "$TMP/good.wasm" > "$TMP/trunc.wasm"
SHA=$(sha256sum "$TMP/good.wasm" | cut -d' ' -f1)

run R tenant set acme --module "$TMP/good.wasm"; expect_rc module 0
expect_contains module "$OUT" "module $SHA"
checks=$((checks + 1)); [ -f "$D/modules/$SHA.wasm" ] || fail "module not stored as $SHA.wasm"
checks=$((checks + 1)); cmp -s "$TMP/good.wasm" "$D/modules/$SHA.wasm" || fail "stored module differs"
checks=$((checks + 1)); [ "$(stat -c %a "$D/modules/$SHA.wasm")" = 600 ] || fail "module file mode"
checks=$((checks + 1)); [ "$(stat -c %a "$D/modules")" = 700 ] || fail "modules dir mode"
run R tenant show acme; expect_contains show-module "$OUT" "module          $SHA"
run R tenant set beta --module "$TMP/good.wasm"; expect_rc module-again 0
checks=$((checks + 1)); [ "$(ls "$D/modules" | wc -l)" = 1 ] || fail "modules: $(ls -a "$D/modules")"

run R tenant set acme --module "$TMP/wasi.wasm" --rpm 5; expect_rc module-wasi 1
expect_contains module-wasi "$OUT" "realm tenant: $TMP/wasi.wasm:"
expect_contains module-wasi "$OUT" "wasi_snapshot_preview1.fd_write"
run R tenant set acme --module "$TMP/trunc.wasm"; expect_rc module-trunc 1
expect_contains module-trunc "$OUT" "invalid WebAssembly module"
run R tenant set acme --module "$TMP/noexport.wasm"; expect_rc module-noexport 1
expect_contains module-noexport "$OUT" "handle"
run R tenant set acme --module "$TMP/missing.wasm"; expect_rc module-missing 1
expect_contains module-missing "$OUT" "missing.wasm"
J=$(R tenant show acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["module_sha256"], d["rpm"])')" = "('$SHA', 0)" ] || fail "a refused module changed the tenant: $J"
checks=$((checks + 1)); [ "$(ls "$D/modules" | wc -l)" = 1 ] || fail "a refused module was stored"
run R tenant set beta --module default; expect_rc module-default 0
J=$(R tenant show beta --json)
checks=$((checks + 1)); [ "$(printf '%s' "$J" | json 'd["module_sha256"]')" = None ] || fail "default: $J"

# ---- keys ---------------------------------------------------------------------
run R key list; expect_rc key-list-empty 0
expect_contains key-list-empty "$OUT" "no keys"
set +e; KEY=$(R key create acme 2>"$TMP/err"); RC=$?; set -e
expect_rc key-create 0
checks=$((checks + 1))
grep -qxE 'rk-[0-9A-Za-z]{32}' <<< "$KEY" || fail "key-create: stdout is not one key: $KEY"
expect_contains key-create-note "$(cat "$TMP/err")" "will not be shown again"
PREFIX=${KEY:0:12}
checks=$((checks + 1))
if grep -r -a -q -F "${KEY:12}" "$D"; then fail "the key is in the data directory"; fi
run R key list; expect_rc key-list 0
expect_contains key-list "$OUT" "$PREFIX"
checks=$((checks + 1)); case "$OUT" in *"$KEY"*) fail "key list shows the whole key" ;; esac
J=$(R key list --tenant acme --json)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '[(k["prefix"], k["tenant"], k["revoked"]) for k in d]')" = "[('$PREFIX', 'acme', None)]" ] || fail "key list --json: $J"
run R key list --tenant nobody; expect_rc key-list-nobody 1
run R key create nobody; expect_rc key-create-nobody 1
expect_contains key-create-nobody "$OUT" "no tenant 'nobody'"
run R tenant show acme; expect_contains show-keys "$OUT" "$PREFIX"

run R key revoke "$PREFIX"; expect_rc revoke-prefix 0
expect_contains revoke-prefix "$OUT" "key $PREFIX revoked"
J=$(R key list --json)
checks=$((checks + 1)); [ "$(printf '%s' "$J" | json 'd[0]["revoked"] is not None')" = True ] || fail "not revoked: $J"
KEY2=$(R key create beta 2>/dev/null)
set +e; OUT=$(printf '%s\n' "$KEY2" | R key revoke - 2>&1); RC=$?; set -e
expect_rc revoke-stdin 0
expect_contains revoke-stdin "$OUT" "${KEY2:0:12} revoked"
checks=$((checks + 1)); case "$OUT" in *"$KEY2"*) fail "revoke printed the whole key" ;; esac
run R key revoke "rk-"; expect_rc revoke-bad 1
run R key revoke "rk-000000000"; expect_rc revoke-none 1
expect_contains revoke-none "$OUT" "no key rk-000000000"
# 70 keys: two share their first character, and that prefix is ambiguous.
for i in $(seq 70); do R key create beta 2>/dev/null; done > "$TMP/keys"
C=$(cut -c4 "$TMP/keys" | sort | uniq -d | head -1)
run R key revoke "rk-$C"; expect_rc revoke-ambiguous 1
expect_contains revoke-ambiguous "$OUT" "matches"
expect_contains revoke-ambiguous "$OUT" "give the whole key"
run R key; expect_rc key-no-sub 2

# ---- usage --------------------------------------------------------------------
run R usage; expect_rc usage-empty 0
expect_contains usage-empty "$OUT" "no usage recorded"
J=$(R usage --json --since 7d --tenant acme)
checks=$((checks + 1))
[ "$(printf '%s' "$J" | json '(d["rows"], d["totals"]["requests"], d["totals"]["prompt_tokens"])')" = "([], 0, 0)" ] || fail "usage --json: $J"
run R usage --since 2026-12-01; expect_rc usage-date 0
run R usage --since 2026-12-01T08:30Z; expect_rc usage-datetime 0
run R usage --since yesterday; expect_rc usage-bad-since 2
expect_contains usage-bad-since "$OUT" "--since"
run R usage --tenant nobody; expect_rc usage-nobody 1
run R usage extra; expect_rc usage-extra 2

# ---- rm -----------------------------------------------------------------------
run R tenant rm beta; expect_rc rm 0
expect_contains rm "$OUT" "tenant 'beta' removed; 70 keys stopped working"
run R tenant rm beta; expect_rc rm-again 1
run R tenant add beta; expect_rc re-add 0
expect_contains re-add "$OUT" "(id 3)"

# The default data directory comes from REALM_DATA_DIR.
set +e; OUT=$(REALM_DATA_DIR="$TMP/env-data" "$REALM_BIN" tenant add envt 2>&1); RC=$?; set -e
expect_rc env-dir 0
checks=$((checks + 1)); [ -f "$TMP/env-data/realm.db" ] || fail "REALM_DATA_DIR not used"

# A database of a newer Realm is refused.
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit()" "$D/realm.db"
run R tenant list; expect_rc newer 1
expect_contains newer "$OUT" "made by a newer Realm (schema 99, this build knows 2)"

finish

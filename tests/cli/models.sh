# realm models, show, rm and ps over a models directory made by hand: a pulled
# model with its manifest, a split model, a model named on the command line;
# names that are not names; a stand-in server for ps.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"
D="$TMP/models"
mkdir -p "$D"
cp "$M" "$D/tiny.gguf"
cat > "$D/tiny.json" << 'EOF'
{"name": "tiny", "source": "hf:someone/stories/stories260K.gguf",
 "url": "https://example.invalid/stories260K.gguf",
 "sha256": "0000000000000000000000000000000000000000000000000000000000000000",
 "size": 1185376, "pulled_at": "2025-01-02T03:04:05Z", "file": "tiny.gguf"}
EOF
cp "$M" "$D/duo-00001-of-00002.gguf" # not a real split: two whole copies
cp "$M" "$D/duo-00002-of-00002.gguf"
printf 'not a model\n' > "$D/README.txt"

# ---- realm models -------------------------------------------------------------
run "$REALM_BIN" models --models-dir "$D"
expect_rc "models" 0
expect_contains "header" "$OUT" "NAME"
expect_contains "header" "$OUT" "PARAMS"
line=$(printf '%s\n' "$OUT" | grep '^tiny ' || true)
expect_contains "tiny size" "$line" "1.13 MiB"
expect_contains "tiny params" "$line" "293K"
expect_contains "tiny types" "$line" "F32 100%"
expect_contains "tiny source" "$line" "hf:someone/stories/stories260K.gguf"
line=$(printf '%s\n' "$OUT" | grep '^duo ' || true)
expect_contains "split size" "$line" "2.26 MiB"
expect_contains "split params" "$line" "586K"
checks=$((checks + 1))
[ "$(printf '%s\n' "$OUT" | wc -l)" = 3 ] || fail "models: expected a header and 2 models"

run env REALM_MODELS_DIR="$D" "$REALM_BIN" models -m other="$M"
expect_rc "models env" 0
expect_contains "named model" "$OUT" "other "
expect_contains "named model's path" "$OUT" "/stories260K.gguf"
expect_contains "env dir" "$OUT" "tiny "

"$REALM_BIN" models --models-dir "$D" --json > "$TMP/models.json"
checks=$((checks + 1))
python3 - "$TMP/models.json" "$D" << 'EOF' || fail "models --json"
import json, os, sys
j = json.load(open(sys.argv[1]))
assert j["models_dir"] == sys.argv[2], j["models_dir"]
m = {x["name"]: x for x in j["models"]}
assert sorted(m) == ["duo", "tiny"], sorted(m)
t = m["tiny"]
size = os.path.getsize(sys.argv[2] + "/tiny.gguf")
assert t["parameters"] == 292800 and t["size"] == size and t["parts"] == 1, t
assert t["types"] == [{"type": "F32", "bytes": t["tensor_bytes"]}], t["types"]
assert t["source"] == "hf:someone/stories/stories260K.gguf" and t["pulled"], t
assert t["loaded"] is False and t["pinned"] is False, t
assert m["duo"]["parts"] == 2 and m["duo"]["parameters"] == 2 * 292800, m["duo"]
assert "source" not in m["duo"], m["duo"]
EOF

run "$REALM_BIN" models --models-dir "$TMP/empty"
expect_rc "no models" 0
expect_contains "no models" "$OUT" "no models in $TMP/empty"
run "$REALM_BIN" models --bogus
expect_rc "bad option" 1
expect_contains "bad option" "$OUT" "unknown option '--bogus'"
run "$REALM_BIN" models -m x="$TMP/none.gguf"
expect_rc "missing file" 1
expect_contains "missing file" "$OUT" "none.gguf"

# ---- realm show ---------------------------------------------------------------
run "$REALM_BIN" show tiny --models-dir "$D"
expect_rc "show" 0
expect_contains "show name" "$OUT" "model:    tiny"
expect_contains "show source" "$OUT" "source:   hf:someone/stories/stories260K.gguf"
expect_contains "show pulled" "$OUT" "pulled:   2025-01-02T03:04:05Z"
expect_contains "show info" "$OUT" "tensors (48)"
expect_contains "show info" "$OUT" "292800 parameters"
run "$REALM_BIN" show "$M"
expect_rc "show path" 0
expect_contains "show path" "$OUT" "manifest: none"
"$REALM_BIN" show tiny --models-dir "$D" --json > "$TMP/show.json"
checks=$((checks + 1))
python3 - "$TMP/show.json" << 'EOF' || fail "show --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["name"] == "tiny" and j["n_params"] == 292800, j["name"]
assert j["manifest"]["source"] == "hf:someone/stories/stories260K.gguf", j["manifest"]
assert len(j["tensors"]) == 48
EOF
run "$REALM_BIN" show nosuch --models-dir "$D"
expect_rc "show missing" 1
expect_contains "show missing" "$OUT" "no model 'nosuch'"

# ---- realm rm -----------------------------------------------------------------
printf 'keep\n' > "$TMP/victim.gguf"
run "$REALM_BIN" rm ../victim --models-dir "$D"
expect_rc "rm a path" 1
expect_contains "rm a path" "$OUT" "'../victim' is not a model name"
run "$REALM_BIN" rm "$TMP/victim" --models-dir "$D"
expect_rc "rm an absolute path" 1
run "$REALM_BIN" rm a/b --models-dir "$D"
expect_rc "rm a/b" 1
expect_contains "rm a/b" "$OUT" "not a model name"
checks=$((checks + 1)); [ -f "$TMP/victim.gguf" ] || fail "rm deleted a file outside the models directory"
run "$REALM_BIN" rm README --models-dir "$D"
expect_rc "rm not a model" 1
expect_contains "rm not a model" "$OUT" "no model 'README'"

run "$REALM_BIN" rm tiny --models-dir "$D"
expect_rc "rm" 0
expect_contains "rm" "$OUT" "deleted 'tiny' (2 files"
checks=$((checks + 1))
[ ! -e "$D/tiny.gguf" ] && [ ! -e "$D/tiny.json" ] || fail "rm left tiny's files"
run env REALM_MODELS_DIR="$D" "$REALM_BIN" rm duo
expect_rc "rm split" 0
expect_contains "rm split" "$OUT" "deleted 'duo' (2 files"
checks=$((checks + 1))
[ "$(ls "$D")" = "README.txt" ] || fail "rm left files: $(ls "$D")"
run "$REALM_BIN" rm tiny --models-dir "$D"
expect_rc "rm again" 1
expect_contains "rm again" "$OUT" "no model 'tiny' in $D"
run "$REALM_BIN" rm
expect_rc "rm nothing" 1
expect_contains "rm nothing" "$OUT" "missing NAME"

# ---- realm ps -----------------------------------------------------------------
run "$REALM_BIN" ps --url http://127.0.0.1:9
expect_rc "ps without a server" 1
expect_contains "ps without a server" "$OUT" "no server at http://127.0.0.1:9"

# A stand-in answering GET /api/ps as the server will.
python3 - "$TMP/port" << 'EOF' &
import datetime, http.server, json, sys
soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=4, seconds=30)
body = json.dumps({"models": [
    {"name": "tiny", "size": 3 << 20, "size_vram": 0, "expires_at": soon.isoformat()},
    {"name": "pinned", "size": 1 << 30, "size_vram": 0, "expires_at": "2318-01-01T00:00:00Z"},
]}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/api/ps"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body if ok else b"{}")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.timeout = 30
for _ in range(3):
    s.handle_request()
EOF
server=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$TMP/port")"
run "$REALM_BIN" ps --url "$url/"
expect_rc "ps" 0
expect_contains "ps tiny" "$OUT" "tiny"
expect_contains "ps size" "$OUT" "3.00 MiB"
expect_contains "ps until" "$OUT" "minutes from now"
expect_contains "ps forever" "$OUT" "forever"
run "$REALM_BIN" ps --url "$url" --json
expect_rc "ps --json" 0
expect_contains "ps --json" "$OUT" '"size_vram": 0'
run "$REALM_BIN" ps --url "$url/nothing"
expect_rc "ps 404" 1
expect_contains "ps 404" "$OUT" "answered 404"
wait "$server" || true
finish

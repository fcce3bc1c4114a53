# realm pull against a local stand-in for the Hugging Face hub (hub_server.py):
# hub URL shapes and redirects to a CDN host, the token kept from the CDN,
# quantization picking, split models, resume after a dropped connection and
# from a partial file, checksums, HTML and 404 refused, the manifest, re-pulls,
# model names and the models directory.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
M="$TD/models/stories260K.gguf"
Q4="$TD/quant/tiny-q4_k_m.gguf"
Q8="$TD/quant/tiny-q8_0.gguf"
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- the served repositories -------------------------------------------------
ROOT="$TMP/hub"
mkdir -p "$ROOT"/o/{stories,quants,single,split,drop,stall,norange,badsha,html} "$ROOT/files"
cp "$M" "$ROOT/o/stories/stories260K.gguf"
cp "$M" "$ROOT/o/drop/stories260K.gguf"
cp "$M" "$ROOT/o/stall/stories260K.gguf"
cp "$M" "$ROOT/o/norange/stories260K.gguf"
cp "$M" "$ROOT/o/badsha/stories260K.gguf"
cp "$M" "$ROOT/o/html/page.gguf"
cp "$M" "$ROOT/files/stories260K.gguf"
cp "$Q4" "$ROOT/o/quants/tiny-Q4_K_M.gguf"
cp "$Q8" "$ROOT/o/quants/tiny-Q8_0.gguf"
cp "$Q8" "$ROOT/o/quants/tiny-Q4_K_M_L.gguf"                # must not match Q4_K_M
cp "$Q8" "$ROOT/o/quants/tiny-IQ4_K_M.gguf"                 # nor this
cp "$Q8" "$ROOT/o/quants/tiny-Q4_K_M-00001-of-00002.gguf"   # a single file is preferred
cp "$Q8" "$ROOT/o/quants/tiny-Q4_K_M-00002-of-00002.gguf"
printf 'readme\n' > "$ROOT/o/quants/README.md"
cp "$Q8" "$ROOT/o/single/tiny-Q8_0.gguf"
cp "$TD/quant/tiny-f16.gguf" "$ROOT/o/single/mmproj-tiny-f16.gguf"  # never picked
mkdir -p "$ROOT/o/split/sub"
cp "$Q8" "$ROOT/o/split/sub/tiny-Q8_0-00001-of-00002.gguf"
cp "$Q4" "$ROOT/o/split/sub/tiny-Q8_0-00002-of-00002.gguf"
cat > "$ROOT/modes.json" <<'EOF'
{"o/drop": {"drop_after": 300000}, "o/stall": {"stall_after": 200000},
 "o/norange": {"ignore_range": true},
 "o/badsha": {"bad_etag": true}, "o/html": {"html": true}}
EOF

LOG="$TMP/requests.log"
: > "$LOG"
python3 "$HERE/hub_server.py" "$ROOT" "$LOG" --time-limit 120 > "$TMP/port" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
[ -n "$PORT" ] || { echo "hub_server.py did not start" >&2; exit 1; }

export HF_ENDPOINT="http://127.0.0.1:$PORT" HF_TOKEN="hf_test_token_123" REALM_PULL_TIMEOUT_S=5
unset REALM_MODELS_DIR XDG_CACHE_HOME
D="$TMP/models"
pull() { run "$REALM_BIN" pull --models-dir "$D" "$@"; }
# requests [FROM_LINE]: "METHOD HOST PATH auth=... range=..." for each logged request
requests() {
  tail -n +"${1:-1}" "$LOG" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line); h = e["headers"]
    print(e["method"], e["host"], e["path"], "auth=" + h.get("authorization", "-"),
          "range=" + h.get("range", "-"))'
}
mark() { echo $(($(wc -l < "$LOG") + 1)); }
expect_file() { checks=$((checks + 1)); [ -f "$2" ] || fail "$1: $2 missing"; }
expect_no_file() { checks=$((checks + 1)); [ ! -e "$2" ] || fail "$1: $2 exists"; }
expect_eq() { checks=$((checks + 1)); [ "$2" = "$3" ] || fail "$1: '$2', expected '$3'"; }
# (here-strings, not pipes: under pipefail, grep -q leaving early would make
# the writer's SIGPIPE the pipeline's status)
expect_match() { checks=$((checks + 1)); grep -Eq "$3" <<< "$2" || { fail "$1: no line matches /$3/"; printf '%s\n' "$2" | head -20 >&2; }; }
expect_no_match() { checks=$((checks + 1)); ! grep -Eq "$3" <<< "$2" || { fail "$1: a line matches /$3/"; printf '%s\n' "$2" | head -20 >&2; }; }
H="127\\.0\\.0\\.1:$PORT"
C="localhost:$PORT"

# ---- hf:OWNER/REPO/FILE.gguf: redirect to the CDN, token for the hub only ----
m=$(mark)
pull hf:o/stories/stories260K.gguf; expect_rc file 0
expect_contains file "$OUT" "pulled stories260K"
expect_file file "$D/stories260K.gguf"
expect_no_file file "$D/stories260K.gguf.partial"
expect_eq "file sha256" "$(sha "$D/stories260K.gguf")" "$(sha "$M")"
R=$(requests "$m")
expect_match "token to the hub" "$R" "^GET $H /o/stories/resolve/main/stories260K.gguf auth=Bearer hf_test_token_123 "
expect_match "CDN reached" "$R" "^GET $C /cdn/o/stories/stories260K.gguf "
expect_no_match "no token to the CDN" "$R" "^[A-Z]+ $C .*auth=Bearer"
expect_eq "dir mode" "$(stat -c %a "$D")" 700
expect_eq "file mode" "$(stat -c %a "$D/stories260K.gguf")" 600

checks=$((checks + 1))
python3 - "$D/stories260K.json" "$(sha "$M")" "$(stat -c %s "$M")" "$C" <<'PY' || fail "manifest fields"
import json, re, sys
j = json.load(open(sys.argv[1]))
assert j["name"] == "stories260K", j
assert j["source"] == "hf:o/stories/stories260K.gguf", j
assert j["url"] == "http://%s/cdn/o/stories/stories260K.gguf" % sys.argv[4], j["url"]
assert j["sha256"] == sys.argv[2], j
assert j["size"] == int(sys.argv[3]), j
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", j["pulled_at"]), j["pulled_at"]
PY

# Pulling again: already present, the file is not requested again.
m=$(mark)
pull hf:o/stories/stories260K.gguf; expect_rc again 0
expect_contains again "$OUT" "already present"
R=$(requests "$m")
expect_no_match "again: no download" "$R" "^GET .*(resolve|cdn)"
m=$(mark)
pull hf:o/stories/stories260K.gguf --sha256 "$(sha "$M")"; expect_rc again-sha 0
expect_contains again-sha "$OUT" "already present"
expect_eq "again-sha: no request" "$(requests "$m")" ""

# ---- a plain http:// URL, --name, --sha256 -------------------------------------
m=$(mark)
pull "http://127.0.0.1:$PORT/files/stories260K.gguf" --name plain --sha256 "$(sha "$M" | tr a-f A-F)"
expect_rc url 0
expect_file url "$D/plain.gguf"
expect_eq "url sha256" "$(sha "$D/plain.gguf")" "$(sha "$M")"
expect_contains url "$OUT" "verified against --sha256"
checks=$((checks + 1))
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["name"]=="plain" and j["url"]==sys.argv[2], j' \
  "$D/plain.json" "http://127.0.0.1:$PORT/files/stories260K.gguf" || fail "url manifest"
# the same URL again: same source, hash unknown before downloading -> present
pull "http://127.0.0.1:$PORT/files/stories260K.gguf" --name plain; expect_rc url-again 0
expect_contains url-again "$OUT" "already present"

# ---- hf:OWNER/REPO:QUANT -------------------------------------------------------
m=$(mark)
pull hf:o/quants:Q4_K_M; expect_rc quant 0
expect_contains quant "$OUT" "picked tiny-Q4_K_M.gguf"
expect_file quant "$D/tiny-Q4_K_M.gguf"
expect_eq "quant sha256" "$(sha "$D/tiny-Q4_K_M.gguf")" "$(sha "$Q4")"
expect_contains quant "$OUT" "verified against the hub's file listing"
R=$(requests "$m")
expect_match "quant: file list" "$R" "^GET $H /api/models/o/quants/tree/main.* auth=Bearer hf_test_token_123"
expect_no_match "quant: only the picked file" "$R" "(Q8_0|_L|IQ4|-of-)"
pull hf:o/quants:q8_0 --name lower; expect_rc quant-case 0
expect_eq "quant-case sha256" "$(sha "$D/lower.gguf")" "$(sha "$Q8")"
pull hf:o/quants --name default-quant; expect_rc quant-default 0
expect_eq "quant-default sha256" "$(sha "$D/default-quant.gguf")" "$(sha "$Q4")"
pull hf:o/quants:Q5_K_M; expect_rc quant-missing 1
expect_contains quant-missing "$OUT" "carries the quantization 'Q5_K_M'"
expect_contains quant-missing "$OUT" "tiny-Q8_0.gguf"
pull hf:o/single --name only; expect_rc only-model 0   # no Q4_K_M: the only model, not mmproj
expect_eq "only-model sha256" "$(sha "$D/only.gguf")" "$(sha "$Q8")"
pull hf:o/nosuchrepo:Q4_K_M; expect_rc no-repo 1
expect_contains no-repo "$OUT" "repository o/nosuchrepo not found"
# pulling the same quant again: the listing's hash equals the manifest's
m=$(mark)
pull hf:o/quants:Q4_K_M; expect_rc quant-again 0
expect_contains quant-again "$OUT" "already present"
expect_no_match "quant-again: no download" "$(requests "$m")" "^GET .*(resolve|cdn)"
# same name, other contents: refused, then replaced with --force
pull hf:o/quants:Q8_0 --name tiny-Q4_K_M; expect_rc differs 1
expect_contains differs "$OUT" "different contents"
expect_eq "differs: untouched" "$(sha "$D/tiny-Q4_K_M.gguf")" "$(sha "$Q4")"
pull hf:o/quants:Q8_0 --name tiny-Q4_K_M --force; expect_rc force 0
expect_eq "force sha256" "$(sha "$D/tiny-Q4_K_M.gguf")" "$(sha "$Q8")"

# ---- a split model: every part, one manifest -----------------------------------
pull hf:o/split:Q8_0; expect_rc split 0
expect_eq "split part 1" "$(sha "$D/tiny-Q8_0-00001-of-00002.gguf")" "$(sha "$Q8")"
expect_eq "split part 2" "$(sha "$D/tiny-Q8_0-00002-of-00002.gguf")" "$(sha "$Q4")"
checks=$((checks + 1))
python3 - "$D/tiny-Q8_0.json" "$(sha "$Q8")" "$(sha "$Q4")" <<'PY' || fail "split manifest"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["name"] == "tiny-Q8_0" and j["file"] == "tiny-Q8_0-00001-of-00002.gguf", j
assert [p["file"] for p in j["parts"]] == ["tiny-Q8_0-00001-of-00002.gguf", "tiny-Q8_0-00002-of-00002.gguf"], j
assert [p["sha256"] for p in j["parts"]] == sys.argv[2:4], j
assert j["size"] == sum(p["size"] for p in j["parts"]), j
PY
pull hf:o/split/sub/tiny-Q8_0-00002-of-00002.gguf --name split2; expect_rc split-file 0
expect_file split-file "$D/split2-00001-of-00002.gguf"
expect_file split-file "$D/split2-00002-of-00002.gguf"

# ---- resuming ------------------------------------------------------------------
# The connection drops after 300000 bytes: resumed with a Range request.
m=$(mark)
pull hf:o/drop/stories260K.gguf --name dropped; expect_rc drop 0
expect_contains drop "$OUT" "resuming (retry 1 of 3)"
expect_eq "drop sha256" "$(sha "$D/dropped.gguf")" "$(sha "$M")"
R=$(requests "$m")
expect_match "drop: first CDN request whole" "$R" "^GET $C /cdn/o/drop/stories260K.gguf auth=- range=-$"
expect_match "drop: resumed with Range" "$R" "^GET $C /cdn/o/drop/stories260K.gguf auth=- range=bytes=300000-$"
# The server stops sending: the stall timeout ends the transfer, which resumes.
m=$(mark)
run env REALM_PULL_TIMEOUT_S=1 "$REALM_BIN" pull --models-dir "$D" hf:o/stall/stories260K.gguf --name stalled
expect_rc stall 0
expect_contains stall "$OUT" "resuming (retry 1 of 3)"
expect_match "stall: resumed with Range" "$(requests "$m")" "^GET $C /cdn/o/stall/stories260K.gguf auth=- range=bytes=200000-$"
expect_eq "stall sha256" "$(sha "$D/stalled.gguf")" "$(sha "$M")"
# An earlier partial download is continued...
head -c 500000 "$M" > "$D/resumed.gguf.partial"
m=$(mark)
pull hf:o/stories/stories260K.gguf --name resumed; expect_rc partial 0
expect_contains partial "$OUT" "resuming the partial download"
expect_match "partial: Range" "$(requests "$m")" "^GET $C /cdn/o/stories/stories260K.gguf auth=- range=bytes=500000-$"
expect_eq "partial sha256" "$(sha "$D/resumed.gguf")" "$(sha "$M")"
expect_no_file partial "$D/resumed.gguf.partial"
# ... complete already (416 for a Range at its end) ...
cp "$M" "$D/whole.gguf.partial"
pull hf:o/stories/stories260K.gguf --name whole; expect_rc whole 0
expect_eq "whole sha256" "$(sha "$D/whole.gguf")" "$(sha "$M")"
# ... started over when the server ignores Range ...
head -c 400000 "$M" > "$D/norange.gguf.partial"
m=$(mark)
pull hf:o/norange/stories260K.gguf --name norange; expect_rc norange 0
expect_contains norange "$OUT" "ignored the range request"
expect_match "norange: Range sent" "$(requests "$m")" "range=bytes=400000-$"
expect_eq "norange sha256" "$(sha "$D/norange.gguf")" "$(sha "$M")"
# ... and started over when it is of another file (the hash tells).
head -c 400000 "$Q8" > "$D/stale.gguf.partial"
pull hf:o/stories/stories260K.gguf --name stale; expect_rc stale 0
expect_contains stale "$OUT" "downloading it again from the start"
expect_eq "stale sha256" "$(sha "$D/stale.gguf")" "$(sha "$M")"

# ---- refusals: nothing installed, nothing left behind ---------------------------
WRONG=0000000000000000000000000000000000000000000000000000000000000000
pull hf:o/stories/stories260K.gguf --name wrong --sha256 "$WRONG"; expect_rc wrong-sha 1
expect_contains wrong-sha "$OUT" "SHA-256 mismatch: expected $WRONG (from --sha256), got $(sha "$M")"
expect_no_file wrong-sha "$D/wrong.gguf"
expect_no_file wrong-sha "$D/wrong.gguf.partial"
expect_no_file wrong-sha "$D/wrong.json"
pull hf:o/badsha/stories260K.gguf --name badsha; expect_rc bad-etag 1
expect_contains bad-etag "$OUT" "SHA-256 mismatch"
expect_contains bad-etag "$OUT" "the hub's LFS hash"
expect_no_file bad-etag "$D/badsha.gguf.partial"
expect_no_file bad-etag "$D/badsha.gguf"
pull hf:o/html/page.gguf; expect_rc html 1
expect_contains html "$OUT" "not a GGUF file (it starts with '<!DOCTYPE')"
expect_no_file html "$D/page.gguf"
expect_no_file html "$D/page.gguf.partial"
expect_no_file html "$D/page.json"
pull hf:o/stories/missing.gguf; expect_rc 404 1
expect_contains 404 "$OUT" "not found (HTTP 404): Entry not found"
expect_no_file 404 "$D/missing.gguf.partial"
pull "http://127.0.0.1:$PORT/files/nothing.gguf"; expect_rc url-404 1
expect_contains url-404 "$OUT" "HTTP 404"
head -c 100000 "$M" > "$ROOT/files/truncated.gguf"      # "GGUF" but no tensor data
pull "http://127.0.0.1:$PORT/files/truncated.gguf"; expect_rc truncated 1
expect_contains truncated "$OUT" "not a valid GGUF file"
expect_no_file truncated "$D/truncated.gguf"
expect_no_file truncated "$D/truncated.gguf.partial"

# ---- names ------------------------------------------------------------------------
m=$(mark)
for bad in ../evil .hidden "a b" "x/y" "" "$(printf 'n%.0s' $(seq 129))"; do
  pull hf:o/stories/stories260K.gguf --name "$bad"; expect_rc "name '$bad'" 1
  expect_contains "name '$bad'" "$OUT" "invalid model name"
done
expect_eq "bad names: no request" "$(requests "$m")" ""
pull hf:o/stories/stories260K.gguf --name "$(printf 'n%.0s' $(seq 128))"; expect_rc name-128 0
expect_no_file "no escape" "$TMP/evil.gguf"

# ---- options, sources, the models directory ----------------------------------------
run "$REALM_BIN" pull; expect_rc no-source 1; expect_contains no-source "$OUT" "missing SOURCE"
run "$REALM_BIN" pull hf:o/stories/stories260K.gguf --bogus; expect_rc bad-opt 1
expect_contains bad-opt "$OUT" "unknown option"
pull ftp://example.com/x.gguf; expect_rc bad-source 1; expect_contains bad-source "$OUT" "not a source"
pull hf:o; expect_rc bad-hf 1; expect_contains bad-hf "$OUT" "no repository"
pull hf:o/stories/stories260K.gguf --sha256 abc; expect_rc bad-sha 1
expect_contains bad-sha "$OUT" "64 hexadecimal digits"
run "$REALM_BIN" help pull; expect_rc help 0; expect_contains help "$OUT" "hf:OWNER/REPO:QUANT"
run env XDG_CACHE_HOME="$TMP/xdg" "$REALM_BIN" pull hf:o/stories/stories260K.gguf
expect_rc xdg 0; expect_file xdg "$TMP/xdg/realm/models/stories260K.gguf"
run env REALM_MODELS_DIR="$TMP/env-dir" XDG_CACHE_HOME="$TMP/xdg" "$REALM_BIN" pull hf:o/single
expect_rc env-dir 0; expect_file env-dir "$TMP/env-dir/tiny-Q8_0.gguf"
run env HOME="$TMP/home" "$REALM_BIN" pull hf:o/single
expect_rc home 0; expect_file home "$TMP/home/.cache/realm/models/tiny-Q8_0.gguf"
# nothing listening: a clear error, quickly
run env HF_ENDPOINT="http://127.0.0.1:1" "$REALM_BIN" pull --models-dir "$D" hf:o/stories/x.gguf
expect_rc refused 1; expect_contains refused "$OUT" "http://127.0.0.1:1/o/stories/resolve/main/x.gguf:"
finish

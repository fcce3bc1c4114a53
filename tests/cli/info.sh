# realm info on real files, --json, and bad inputs.
. "$(dirname "$0")/lib.sh"
M="$TD/models/stories260K.gguf"

run "$REALM_BIN" info "$M"; expect_rc info 0
expect_contains info "$OUT" "GGUF v3"
expect_contains info "$OUT" "tensors (48)"
expect_contains info "$OUT" "general.architecture"
expect_contains info "$OUT" '"llama"'
expect_contains info "$OUT" "[string; 512]"
expect_contains info "$OUT" ", ...]"          # long array abbreviated
expect_contains info "$OUT" "blk.4.ffn_down.weight"
expect_contains info "$OUT" "[172, 64]"
expect_contains info "$OUT" "F32 x48"

run "$REALM_BIN" info --full "$M"; expect_rc full 0
checks=$((checks + 1))
[ "$(printf '%s\n' "$OUT" | grep -c '<0xFF>')" -ge 1 ] || fail "--full does not show the whole token array"

run "$REALM_BIN" info --json "$M"; expect_rc json 0
printf '%s' "$OUT" > "$TMP/info.json"
checks=$((checks + 1))
python3 - "$TMP/info.json" <<'PY' || fail "--json content"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["version"] == 3, j["version"]
assert len(j["tensors"]) == 48
t = {x["name"]: x for x in j["tensors"]}
assert t["token_embd.weight"]["shape"] == [64, 512] and t["token_embd.weight"]["type"] == "F32"
m = {x["key"]: x for x in j["metadata"]}
assert m["general.architecture"]["value"] == "llama"
tok = m["tokenizer.ggml.tokens"]
assert tok["n"] == 512 and tok["truncated"] and tok["value"][:3] == ["<unk>", "<s>", "</s>"]
assert m["tokenizer.ggml.bos_token_id"]["value"] == 1
assert sum(x["bytes"] for x in j["tensors"]) == j["tensor_bytes"]
PY

run "$REALM_BIN" info "$TD/quant/tiny-q4_k_m.gguf"; expect_rc q4k 0; expect_contains q4k "$OUT" "Q4_K"

# A model split as gguf-split does (split.no u16, split.count u16,
# split.tensors.count i32; one F32 tensor per part): which part, and the parts.
python3 - "$TMP" <<'PY'
import struct, sys
def gstr(b): return struct.pack('<Q', len(b)) + b
def part(path, no, meta):
    kv = meta + [(b'split.no', 2, struct.pack('<H', no)), (b'split.count', 2, struct.pack('<H', 2)),
                 (b'split.tensors.count', 5, struct.pack('<i', 2))]
    out = b'GGUF' + struct.pack('<IQQ', 3, 1, len(kv))
    out += b''.join(gstr(k) + struct.pack('<I', t) + v for k, t, v in kv)
    out += gstr(b'w%d' % no) + struct.pack('<IQIQ', 1, 8, 0, 0)  # [8], F32, offset 0
    out += bytes(-len(out) % 32) + struct.pack('<8f', *range(8))
    open(path, 'wb').write(out)
part(sys.argv[1] + '/m-00001-of-00002.gguf', 0, [(b'general.architecture', 8, gstr(b'llama'))])
part(sys.argv[1] + '/m-00002-of-00002.gguf', 1, [])
PY
run "$REALM_BIN" info "$TMP/m-00001-of-00002.gguf"; expect_rc split 0
expect_contains split "$OUT" "split:    part 1 of 2 of a split model, 2 tensors in all"
run "$REALM_BIN" info --full "$TMP/m-00002-of-00002.gguf"; expect_rc split_full 0
expect_contains split_full "$OUT" "part 2 of 2"
expect_contains split_full "$OUT" "part 1: $TMP/m-00001-of-00002.gguf ("
expect_contains split_full "$OUT" "part 2: $TMP/m-00002-of-00002.gguf ("
run "$REALM_BIN" info --json "$TMP/m-00002-of-00002.gguf"; expect_rc split_json 0
expect_contains split_json "$OUT" '"count": 2'
rm "$TMP/m-00002-of-00002.gguf"
run "$REALM_BIN" info --full "$TMP/m-00001-of-00002.gguf"; expect_rc split_missing 0
expect_contains split_missing "$OUT" "part 2: $TMP/m-00002-of-00002.gguf (cannot open"

# Bad inputs: a clear error, never a crash.
head -c 1000 "$M" > "$TMP/trunc.gguf"
run "$REALM_BIN" info "$TMP/trunc.gguf"; expect_rc truncated 1
expect_contains truncated "$OUT" "realm info: $TMP/trunc.gguf:"
expect_contains truncated "$OUT" "offset"
printf 'NOPE' > "$TMP/magic.gguf"; head -c 100 /dev/zero >> "$TMP/magic.gguf"
run "$REALM_BIN" info "$TMP/magic.gguf"; expect_rc magic 1; expect_contains magic "$OUT" "magic"
: > "$TMP/empty.gguf"
run "$REALM_BIN" info "$TMP/empty.gguf"; expect_rc empty 1
run "$REALM_BIN" info "$TMP/does-not-exist.gguf"; expect_rc missing 1
expect_contains missing "$OUT" "does-not-exist.gguf"
run "$REALM_BIN" info; expect_rc noarg 1
run "$REALM_BIN" info --bogus "$M"; expect_rc badopt 1; expect_contains badopt "$OUT" "unknown option"
run "$REALM_BIN" info "$TMP"; expect_rc directory 1
finish

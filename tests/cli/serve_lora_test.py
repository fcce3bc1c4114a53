#!/usr/bin/env python3
"""realm serve with LoRA adapters, end to end over 127.0.0.1 (standard library only).

Started by tests/cli/serve_lora.sh with REALM_BIN, REALM_TESTDATA and
REALM_SOURCE_DIR. The adapters are tests/data/lora's (made with the shared
make_synthetic_lora.py, see its README) on stories260K; llama.cpp's greedy text
with them is tests/data/lora/reference. Checks: adapters in /v1/models with
their parent, GET /lora-adapters; a request by adapter name, by "adapter" and by
llama-server's "lora" gives llama.cpp's (and realm run's) text and not the
base's; two adapters at once; bad ids and scales refused naming the param; the
tenant rule (an adapter needs its own name allowed); the admin API's load and
unload (unload while a stream runs: the stream finishes, new requests 404, the
memory freed after); bad files and paths refused; realm serve's --lora flags.
Every wait is bounded; every server is killed at the end. Prints one line per
failed check and "N passed, N failed"; exits 1 on any failure.
"""
import http.client
import json
import os
import shutil
import tempfile
import threading
import time

import serve_util
from serve_util import check, cli, wait_for

TD = os.environ["REALM_TESTDATA"]
SRC = os.environ["REALM_SOURCE_DIR"]
MODEL = os.path.join(TD, "models", "stories260K.gguf")
OTHER = os.path.join(TD, "quant", "tiny-f32.gguf")  # another architecture's shapes
LORA = os.path.join(SRC, "tests", "data", "lora")
R8 = os.path.join(LORA, "stories260K-lora-r8.gguf")
QV = os.path.join(LORA, "stories260K-lora-qv-r4.gguf")
TMP = tempfile.mkdtemp(prefix="realm-serve-lora-")
DATA = os.path.join(TMP, "data")
LDIR = os.path.join(TMP, "loras")
ADMIN_KEY = "admin-key-for-the-lora-test"


def reference(name):
    """llama.cpp's output (prompt and 64 tokens) without its last newlines."""
    with open(os.path.join(LORA, "reference", name)) as f:
        return f.read().rstrip("\n")


def Server(*extra):
    return serve_util.Server("-m", "tiny=" + MODEL, "--data-dir", DATA, "--models-dir",
                             os.path.join(TMP, "models"), "--module-cache",
                             os.path.join(TMP, "cache"), "-t", "1", "--parallel", "4", *extra)


def admin(s, what, body, key=ADMIN_KEY):
    return s.req("POST", "/v1/%s_lora_adapter" % what, body,
                 {"Authorization": "Bearer " + key} if key else {})


def metric_lines(s, name):
    _, text = s.req("GET", "/metrics", raw=True)
    return [l for l in text.decode().splitlines() if l.startswith(name + "{")]


def complete(s, prompt, headers=None, **kw):
    b = {"model": "tiny", "prompt": prompt, "max_tokens": 64, "temperature": 0}
    b.update(kw)
    return s.req("POST", "/v1/completions", b, headers)


def text_of(s, prompt, headers=None, **kw):
    r, b = complete(s, prompt, headers, **kw)
    if not check(r.status == 200, "completion %s: 200 (%s %s)" % (kw, r.status, b)):
        return None
    return b["choices"][0]["text"]


def test_cli_flags():
    """realm serve refuses bad --lora settings before listening."""
    def serve(*extra):
        return cli("serve", "--port", "0", "--data-dir", DATA, "--models-dir",
                   os.path.join(TMP, "models"), "-t", "1", *extra)
    rc, out, err = serve("-m", "a=" + MODEL, "-m", "b=" + MODEL, "--lora", "r8=" + R8)
    check(rc == 1 and "fits several models ('a', 'b')" in err and "--lora-base r8=MODEL" in err,
          "two bases fit: an error asking for --lora-base (%s)" % err)
    rc, out, err = serve("-m", "tiny=" + MODEL, "-m", "other=" + OTHER, "--lora", "r8=" + R8,
                         "--lora-base", "r8=other")
    check(rc == 1 and "--lora r8=" in err and "of the base model" in err,
          "the wrong base named: the reader's error (%s)" % err)
    rc, out, err = serve("-m", "tiny=" + MODEL, "--lora-base", "x=tiny")
    check(rc == 1 and "--lora-base x=tiny: no --lora of that name" in err,
          "--lora-base without its --lora (%s)" % err)
    rc, out, err = serve("-m", "tiny=" + MODEL, "-m", "other=" + OTHER, "--lora", R8,
                         "--lora-base", "stories260K-lora-r8=other")
    check(rc == 1 and "LoRA adapter 'stories260K-lora-r8' (base 'other')" in err,
          "--lora-base names a bare FILE's adapter by its file name (%s)" % err)
    rc, out, err = serve("-m", "tiny=" + MODEL, "--lora", "m=" + MODEL)
    check(rc == 1 and "not a LoRA adapter" in err, "a model as an adapter (%s)" % err)
    rc, out, err = cli("serve", "--help")
    check(rc == 0 and "--lora NAME=FILE" in out and "--lora-base NAME=MODEL" in out
          and "--lora-dir DIR" in out and "REALM_LORA_DIR" in out, "serve --help lists the flags")


def test_listing(s):
    r, b = s.req("GET", "/v1/models")
    by_id = {m["id"]: m for m in b["data"]} if r.status == 200 else {}
    check(set(by_id) == {"tiny", "other", "r8", "qv"}, "models and adapters listed: %s" % by_id)
    check(by_id.get("r8", {}).get("parent") == "tiny" and by_id["r8"].get("root") == "r8"
          and by_id["r8"].get("object") == "model", "an adapter's parent is its base: %s" % by_id)
    check(by_id.get("tiny", {}).get("parent", 0) is None, "a base model's parent is null")
    r, b = s.req("GET", "/v1/models/qv")
    check(r.status == 200 and b["parent"] == "tiny", "GET /v1/models/ADAPTER: %s" % b)
    r, b = s.req("GET", "/lora-adapters")
    check(r.status == 200 and [(a["id"], a["name"], a["base"]) for a in b] ==
          [(0, "r8", "tiny"), (1, "qv", "tiny")] and b[0]["rank"] == 8 and "/" not in b[0]["path"],
          "GET /lora-adapters numbers them from 0, no directories shown: %s" % b)


def test_generation(s):
    base = text_of(s, "Once upon a time")
    r8 = text_of(s, "Once upon a time", model="r8")
    check(r8 is not None and base is not None and r8 != base, "the adapter changes the text")
    ref = reference("r8-s1.0-once.stdout.txt")
    check(r8 is not None and ref.endswith(r8) and len(r8) > 40,
          "by adapter name: llama.cpp's text (%r vs %r)" % (r8, ref))
    rc, out, _ = cli("run", MODEL, "-p", "Once upon a time", "-n", "64", "--temp", "0", "-t", "1",
                     "--lora", R8)
    check(rc == 0 and r8 is not None and out.rstrip("\n").endswith(r8),
          "by adapter name: realm run --lora's text")
    r, b = complete(s, "Once upon a time", model="r8", max_tokens=4)
    check(r.status == 200 and b["model"] == "r8", "the response names the adapter")
    # llama-server's "lora" and the "adapter" option
    check(text_of(s, "Once upon a time", lora=[{"id": 0, "scale": 1.0}]) == r8,
          "lora [{id 0, scale 1}] on the base = the adapter by name")
    park = text_of(s, "Lily and Tom went to the park", lora=[{"id": 0, "scale": 0.5}])
    check(park is not None and reference("r8-s0.5-park.stdout.txt").endswith(park),
          "lora at scale 0.5: llama.cpp's --lora-scaled text (%r)" % park)
    dog = text_of(s, "The little dog", adapter="qv")
    check(dog is not None and reference("qv-s1.0-dog.stdout.txt").endswith(dog),
          "adapter: qv: llama.cpp's text (%r)" % dog)
    sam = text_of(s, "Sam had a big red", model="r8", adapter_scale=0.5,
                  lora=[{"id": 1, "scale": 0.5}])
    check(sam is not None and reference("r8-s0.5-qv-s0.5-sam.stdout.txt").endswith(sam),
          "two adapters at 0.5 (model + lora): llama.cpp's text (%r)" % sam)
    check(text_of(s, "Once upon a time", model="r8", adapter_scale=0) == base,
          "adapter_scale 0 is the base")
    r, b = s.req("POST", "/v1/chat/completions",
                 {"model": "qv", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                  "temperature": 0})
    check(r.status == 200 and b["model"] == "qv", "chat by adapter name: %s" % b)
    r, b = s.req("POST", "/v1/responses", {"model": "r8", "input": "Once upon a time",
                                           "max_output_tokens": 8, "temperature": 0})
    check(r.status == 200 and b.get("model") == "r8" and b.get("status") in ("completed", "incomplete"),
          "/v1/responses by adapter name: %s" % b)
    # refusals naming the param
    for body, param, status in [
            ({"lora": [{"id": 7}]}, "lora[0].id", 400),
            ({"lora": [{"id": -1}]}, "lora[0].id", 400),
            ({"lora": [{"id": 0, "scale": "x"}]}, "lora[0].scale", 400),
            ({"lora": [{"id": 0, "scale": 1e9}]}, "lora[0].scale", 400),
            ({"lora": {"id": 0}}, "lora", 400),
            ({"lora": [3]}, "lora[0]", 400),
            ({"adapter": "nope"}, "adapter", 404),
            ({"adapter": "other"}, "adapter", 400),
            ({"adapter_scale": 0.5}, "adapter_scale", 400)]:
        r, b = complete(s, "Hi", max_tokens=2, **body)
        check(r.status == status and b["error"]["param"] == param,
              "%s: %d naming %s (%s %s)" % (body, status, param, r.status, b))
    r, b = complete(s, "Hi", model="other", max_tokens=2, lora=[{"id": 0}])
    check(r.status == 400 and b["error"]["param"] == "lora[0].id" and
          "is for the model 'tiny', not 'other'" in b["error"]["message"],
          "an adapter of another base: 400 (%s)" % b)
    # two adapters at once, each as it is alone
    out = {}

    def run(name, prompt):
        out[name] = text_of(s, prompt, model=name)
    solo = {"r8": r8, "qv": text_of(s, "Once upon a time", model="qv")}
    ts = [threading.Thread(target=run, args=(n, "Once upon a time")) for n in ("r8", "qv")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(out == solo and solo["qv"] != r8, "two adapters concurrently: %s vs %s" % (out, solo))
    lines = metric_lines(s, "realm:lora_requests_total")
    check(any('adapter="r8",base="tiny",id="0"' in l and float(l.split()[-1]) >= 5 for l in lines),
          "per-adapter request counts: %s" % lines)
    # a response's last bytes can reach the client before the engine has
    # retired its sequence: the gauge empties shortly after, not at once
    def idle_info():
        info = metric_lines(s, "realm:lora_requests_info")
        return len(info) == 1 and 'running_lora_adapters=""' in info[0]
    wait_for(idle_info)
    info = metric_lines(s, "realm:lora_requests_info")
    check(len(info) == 1 and 'loaded_lora_adapters="r8,qv"' in info[0]
          and 'running_lora_adapters=""' in info[0], "realm:lora_requests_info: %s" % info)


def test_admin(s):
    os.makedirs(LDIR, exist_ok=True)
    shutil.copy(QV, os.path.join(LDIR, "qv2.gguf"))
    shutil.copy(R8, os.path.join(LDIR, "r8.gguf"))
    with open(R8, "rb") as f, open(os.path.join(LDIR, "cut.gguf"), "wb") as g:
        g.write(f.read()[:20000])
    r, b = admin(s, "load", {"lora_name": "qv2", "lora_path": "qv2.gguf"}, key=None)
    check(r.status == 401, "load without the admin key: 401")
    r, b = admin(s, "load", {"lora_name": "qv2", "lora_path": "qv2.gguf"}, key="wrong")
    check(r.status == 401, "load with a tenant's or a wrong key: 401")
    r, b = admin(s, "load", {"lora_name": "qv2", "lora_path": "qv2.gguf"})
    check(r.status == 200 and b["parent"] == "tiny" and b["id"] == 2,
          "load_lora_adapter: 200 with its base and id (%s)" % b)
    r, b = s.req("GET", "/v1/models/qv2")
    check(r.status == 200 and b["parent"] == "tiny", "a loaded adapter is listed at once")
    dog = text_of(s, "The little dog", model="qv2")
    check(dog is not None and reference("qv-s1.0-dog.stdout.txt").endswith(dog),
          "a loaded adapter generates as the same file at startup")
    for body, status, code, param, text in [
            ({"lora_name": "qv2", "lora_path": "qv2.gguf"}, 409, "adapter_exists", "lora_name",
             "already registered"),
            ({"lora_name": "tiny", "lora_path": "qv2.gguf"}, 409, "adapter_exists", "lora_name",
             "already registered"),
            ({"lora_name": "w", "lora_path": "r8.gguf", "base": "other"}, 400, "invalid_adapter",
             "lora_path", "of the base model"),
            ({"lora_name": "w", "lora_path": "r8.gguf", "base": "nope"}, 404, "model_not_found",
             "base", "no model named 'nope'"),
            ({"lora_name": "w", "lora_path": "cut.gguf"}, 400, "invalid_adapter", "lora_path",
             "ends past end of file"),
            ({"lora_name": "w", "lora_path": "none.gguf"}, 404, "file_not_found", "lora_path",
             "no adapter file"),
            ({"lora_name": "w", "lora_path": R8}, 400, "path_not_allowed", "lora_path",
             "outside the LoRA directory"),
            ({"lora_name": "w", "lora_path": "../../etc/passwd"}, 400, "path_not_allowed",
             "lora_path", "outside the LoRA directory"),
            ({"lora_name": "w", "lora_path": "/nonexistent/x.gguf"}, 400, "path_not_allowed",
             "lora_path", "outside the LoRA directory"),
            ({"lora_name": "bad name", "lora_path": "r8.gguf"}, 400, "invalid_adapter",
             "lora_name", "adapter name"),
            ({"lora_path": "r8.gguf"}, 400, "missing_field", "lora_name", "required"),
            ({"lora_name": "w"}, 400, "missing_field", "lora_path", "required")]:
        r, b = admin(s, "load", body)
        e = b["error"] if isinstance(b, dict) and "error" in b else {}
        check(r.status == status and e.get("code") == code and e.get("param") == param
              and text in e.get("message", ""),
              "load %s: %d %s (%s %s)" % (body, status, code, r.status, b))
    r, b = s.req("GET", "/v1/models/w")
    check(r.status == 404, "nothing refused was registered")
    r, b = admin(s, "unload", {"lora_name": "nope"})
    check(r.status == 404 and b["error"]["code"] == "adapter_not_found", "unload unknown: 404")

    # unload while a stream uses it: the stream finishes, new requests 404 at once,
    # the memory is freed when it ends
    def ps_entry():
        r, b = s.req("GET", "/api/ps")
        return [m for m in b["models"] if m["name"] == "qv2"]
    check(len(ps_entry()) == 1 and ps_entry()[0]["size"] > 0 and ps_entry()[0]["parent"] == "tiny",
          "/api/ps lists the adapter's memory")
    rc, out, err = cli("ps", "--url", "http://127.0.0.1:%d" % s.port)
    check(rc == 0 and any(l.startswith("qv2 ") and "LoRA adapter of tiny" in l
                          for l in out.splitlines()), "realm ps shows the adapter: %s" % out)
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("POST", "/v1/completions",
              json.dumps({"model": "qv2", "prompt": "Once", "max_tokens": 480, "ignore_eos": True,
                          "n": 4, "temperature": 0, "stream": True}),
              {"Content-Type": "application/json"})
    resp = c.getresponse()
    first = resp.readline()
    check(first.startswith(b"data: "), "the stream started: %r" % first)
    r, b = admin(s, "unload", {"lora_name": "qv2"})
    check(r.status == 200 and b["requests_in_progress"] == 1,
          "unload while a stream uses it: 200, one request in progress (%s)" % b)
    r, b = complete(s, "Hi", model="qv2", max_tokens=2)
    check(r.status == 404, "a new request for the unloaded adapter: 404 at once (%s)" % b)
    r, b = s.req("GET", "/v1/models/qv2")
    check(r.status == 404, "the unloaded adapter is no longer listed")
    info = metric_lines(s, "realm:lora_requests_info")
    in_use = len(ps_entry()) == 1 and ps_entry()[0]["unloading"]
    rest = first + resp.read()
    c.close()
    check(in_use or b"[DONE]" in rest, "while it runs, /api/ps shows it unloading")
    events = [e for e in rest.decode().split("\n\n") if e.startswith("data: ")]
    finishes = [json.loads(e[6:])["choices"][0].get("finish_reason") for e in events
                if e != "data: [DONE]" and json.loads(e[6:]).get("choices")]
    check(events and events[-1] == "data: [DONE]" and finishes.count("length") == 4,
          "the stream ran to its end (%d events, %s)" % (len(events), finishes[-4:]))
    check(wait_for(lambda: ps_entry() == []), "its memory freed after the last request")
    check(not any('adapter="qv2"' in l for l in metric_lines(s, "realm:lora_memory_bytes")),
          "and gone from the metrics")
    # loaded again under the same name: a new id
    r, b = admin(s, "load", {"lora_name": "qv2", "lora_path": os.path.join(LDIR, "qv2.gguf")})
    check(r.status == 200 and b["id"] == 3, "loaded again (absolute path inside): new id (%s)" % b)
    r, b = admin(s, "unload", {"lora_name": "qv2"})
    check(r.status == 200 and b["requests_in_progress"] == 0, "unload when idle")


def test_tenants(s):
    """An adapter needs its own name allowed; a base allowed does not allow its
    adapters, and an allowed adapter does not need its base."""
    def tenant(name, models):
        cli("tenant", "add", name, "--data-dir", DATA)
        rc, _, err = cli("tenant", "set", name, "--models", models, "--data-dir", DATA)
        check(rc == 0, "tenant set %s --models %s (%s)" % (name, models, err))
        rc, key, _ = cli("key", "create", name, "--data-dir", DATA)
        return {"Authorization": "Bearer " + key.strip()}
    only_r8 = tenant("only-r8", "r8")
    only_base = tenant("only-base", "tiny")
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=only_base)[0].status == 200),
          "the tenants' keys work")
    r, b = s.req("GET", "/v1/models", headers=only_r8)
    check([m["id"] for m in b["data"]] == ["r8"], "an adapter-only tenant sees it: %s" % b)
    r, b = s.req("GET", "/v1/models", headers=only_base)
    check([m["id"] for m in b["data"]] == ["tiny"], "a base-only tenant sees no adapter: %s" % b)
    r, b = s.req("GET", "/lora-adapters", headers=only_r8)
    check([a["name"] for a in b] == ["r8"], "GET /lora-adapters: the tenant's adapters only")
    check(text_of(s, "Once upon a time", only_r8, model="r8") is not None,
          "an allowed adapter without its base: 200")
    r, b = complete(s, "Hi", only_r8, model="tiny", max_tokens=2)
    check(r.status in (403, 404), "...but not the base (%s)" % r.status)
    r, b = complete(s, "Hi", only_r8, model="qv", max_tokens=2)
    check(r.status in (403, 404), "...nor another adapter (%s)" % r.status)
    r, b = complete(s, "Hi", only_r8, model="r8", max_tokens=2, lora=[{"id": 1}])
    check(r.status == 403 and b["error"]["param"] == "lora[0].id",
          "...nor another adapter by lora id: 403 (%s)" % b)
    r, b = complete(s, "Hi", only_base, model="r8", max_tokens=2)
    check(r.status in (403, 404), "a base allowed does not allow its adapter (%s)" % r.status)
    r, b = complete(s, "Hi", only_base, max_tokens=2, lora=[{"id": 0}])
    check(r.status == 403 and b["error"]["param"] == "lora[0].id", "...by lora id: 403 (%s)" % b)
    r, b = complete(s, "Hi", only_base, max_tokens=2, adapter="r8")
    check(r.status == 403 and b["error"]["param"] == "adapter", "...by adapter: 403 (%s)" % b)
    # a change made with the CLI applies from the server's next request (the
    # key and the tenant's settings are read at the same version; the
    # half-second housekeeping sync alone would leave a window)
    for models in ["tiny,r8", "tiny", "r8,qv", "tiny"]:
        rc, _, err = cli("tenant", "set", "only-base", "--models", models, "--data-dir", DATA)
        r, b = s.req("GET", "/v1/models", headers=only_base)
        got = sorted(m["id"] for m in b["data"]) if r.status == 200 else r.status
        check(rc == 0 and got == sorted(models.split(",")),
              "tenant set --models %s: in effect on the next request (%s)" % (models, got))


def main():
    test_cli_flags()
    os.makedirs(LDIR, exist_ok=True)
    with open(os.path.join(TMP, "admin.key"), "w") as f:
        f.write(ADMIN_KEY + "\n")
    shutil.copy(QV, os.path.join(TMP, "qv.gguf"))  # a bare FILE: named after it
    s = Server("-m", "other=" + OTHER, "--lora", "r8=" + R8, "--lora",
               os.path.join(TMP, "qv.gguf"), "--lora-dir", LDIR, "--admin-key-file",
               os.path.join(TMP, "admin.key"))
    if not check(s.port is not None, "server started: %s" % s.log.decode(errors="replace")):
        return
    test_listing(s)
    test_generation(s)
    test_admin(s)
    test_tenants(s)


if __name__ == "__main__":
    serve_util.run(main, TMP)

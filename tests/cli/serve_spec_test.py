#!/usr/bin/env python3
"""realm serve with speculative decoding, end to end over 127.0.0.1 (standard library only).

Started by tests/cli/serve_spec.sh with REALM_BIN, REALM_TESTDATA and
REALM_MAKE_TEST_MODEL. stories260K serves as 'tiny' with a Q4_0 copy of itself
(made here by realm quantize) as its draft (--draft tiny=q4, the draft named as
a --model). Checks: greedy output equals llama.cpp's reference and the same
request without speculation, through completions, chat, SSE and /v1/responses,
with the draft, prompt lookup and off; seeded sampling with lookup equals off;
stop strings across accepted runs; the /metrics counters; the request option
"speculative" and llama-server's flat "speculative.n_max" refused naming the
param; mode draft on a model without a draft refused; a draft of another
vocabulary refused with a clear error at load; --lookup as the server's
default; the CLI flags. Every wait is bounded; every server is killed at the
end. Prints one line per failed check and "N passed, N failed"; exits 1 on any
failure.
"""
import json
import os
import subprocess
import tempfile

import serve_util
from serve_util import check, cli

TD = os.environ["REALM_TESTDATA"]
MAKER = os.environ["REALM_MAKE_TEST_MODEL"]
MODEL = os.path.join(TD, "models", "stories260K.gguf")
TMP = tempfile.mkdtemp(prefix="realm-serve-spec-")
DATA = os.path.join(TMP, "data")
DRAFT = os.path.join(TMP, "s260k-q4_0.gguf")
OTHER_VOCAB = os.path.join(TMP, "other-vocab.gguf")
PROMPT = "Once upon a time"


def reference():
    """llama.cpp's greedy 64 tokens after PROMPT, as the completion's text."""
    with open(os.path.join(TD, "reference", "stories260K.completion.stdout.txt")) as f:
        out = f.read().rstrip("\n")
    return out[len(" " + PROMPT):]


def Server(*extra):
    return serve_util.Server("--data-dir", DATA, "--models-dir", os.path.join(TMP, "models"),
                             "--module-cache", os.path.join(TMP, "cache"), "-t", "1",
                             "--parallel", "8", *extra)


def metric(s, name, model):
    _, text = s.req("GET", "/metrics", raw=True)
    for line in text.decode().splitlines():
        if line.startswith('%s{model="%s"}' % (name, model)):
            return float(line.split()[-1])
    return None


def complete(s, model="tiny", **kw):
    b = {"model": model, "prompt": PROMPT, "max_tokens": 64, "temperature": 0}
    b.update(kw)
    return s.req("POST", "/v1/completions", b)


def text_of(s, what, model="tiny", **kw):
    r, b = complete(s, model, **kw)
    if not check(r.status == 200, "%s: 200 (%s %s)" % (what, r.status, b)):
        return None
    return b["choices"][0]["text"]


def sse_text(s, path, body):
    """The text of a streamed chat completion or completion, from its SSE events."""
    r, raw = s.req("POST", path, dict(body, stream=True), raw=True)
    if not check(r.status == 200, "%s streamed: 200 (%s)" % (path, r.status)):
        return None
    text = ""
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            ev = json.loads(line[6:])
            for ch in ev.get("choices", []):
                text += ch.get("text") or ch.get("delta", {}).get("content") or ""
    return text


def test_cli_flags():
    def serve(*extra):
        return cli("serve", "--port", "0", "--data-dir", DATA, "--models-dir",
                   os.path.join(TMP, "models"), "-t", "1", *extra)
    rc, _, err = serve("-m", "tiny=" + MODEL, "--draft", "x=" + DRAFT)
    check(rc == 1 and "--draft x=" in err and "no --model of that name" in err,
          "--draft for a model not served (%s)" % err)
    rc, _, err = serve("-m", "tiny=" + MODEL, "--draft", "tiny")
    check(rc == 1 and "must be MODEL=DRAFT" in err, "--draft without '=' (%s)" % err)
    rc, _, err = serve("-m", "tiny=" + MODEL, "--draft-max", "33")
    check(rc != 0 and "--draft-max" in err, "--draft-max above 32 refused (%s)" % err)
    rc, out, _ = cli("serve", "--help")
    check(rc == 0 and all(f in out for f in ("--draft MODEL=DRAFT", "--lookup", "--draft-max N",
                                             "--draft-min N", "--draft-p-min P",
                                             "REALM_DRAFT_MAX")),
          "serve --help lists the speculative flags")


def test_draft_server(s, plain):
    ref = reference()
    check(plain == ref, "without speculation: llama.cpp's greedy text (%r)" % plain)
    d0 = metric(s, "realm:spec_decode_num_draft_tokens_total", "tiny") or 0
    a0 = metric(s, "realm:spec_decode_num_accepted_tokens_total", "tiny") or 0
    t = text_of(s, "greedy with the draft (the model's default)")
    check(t == ref, "greedy with the draft model: the same text (%r)" % t)
    d1 = metric(s, "realm:spec_decode_num_draft_tokens_total", "tiny")
    a1 = metric(s, "realm:spec_decode_num_accepted_tokens_total", "tiny")
    check(d1 is not None and d1 > d0 and a1 is not None and a1 > a0 and a1 - a0 <= d1 - d0,
          "/metrics counts drafted (%s -> %s) and accepted (%s -> %s) tokens" % (d0, d1, a0, a1))
    t = text_of(s, "speculative off", speculative={"mode": "off"})
    check(t == ref, "speculative off: the same text")
    check(metric(s, "realm:spec_decode_num_draft_tokens_total", "tiny") == d1,
          "speculative off drafts nothing")
    for opts in ({"mode": "lookup"}, {"mode": "lookup", "n_max": 2, "n_min": 1},
                 {"mode": "draft", "n_max": 16, "p_min": 0}, {"mode": "default"}):
        t = text_of(s, "speculative %s" % opts, speculative=opts)
        check(t == ref, "speculative %s: the same text (%r)" % (opts, t))
    t = text_of(s, "llama-server's flat speculative.n_max", **{"speculative.n_max": 3})
    check(t == ref, "speculative.n_max 3: the same text")
    # seeded sampling: prompt lookup draws as a run without speculation does
    seeded = dict(temperature=0.9, seed=1234, max_tokens=48)
    a = text_of(s, "seeded, off", speculative={"mode": "off"}, **seeded)
    b = text_of(s, "seeded, lookup", speculative={"mode": "lookup", "n_max": 8}, **seeded)
    check(a is not None and a == b, "seeded sampling: lookup gives the run's own tokens")
    c = text_of(s, "seeded, draft", speculative={"mode": "draft"}, **seeded)
    c2 = text_of(s, "seeded, draft again", speculative={"mode": "draft"}, **seeded)
    check(c is not None and c == c2, "seeded sampling with the draft: reproducible")
    # a stop string inside what a step accepts: nothing past it
    stop = ref[20:26]
    t = text_of(s, "stop string", stop=[stop])
    check(t == ref[:ref.index(stop)], "a stop string ends the text before it (%r)" % t)
    # streamed, chat and responses
    t = sse_text(s, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 64,
                                        "temperature": 0})
    check(t == ref, "streamed completion with the draft: the same text (%r)" % t)
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me a story"}],
            "max_tokens": 40, "temperature": 0}
    r, off = s.req("POST", "/v1/chat/completions", dict(chat, speculative={"mode": "off"}))
    r2, on = s.req("POST", "/v1/chat/completions", chat)
    check(r.status == 200 and r2.status == 200 and
          off["choices"][0]["message"]["content"] == on["choices"][0]["message"]["content"],
          "chat with and without speculation: the same message")
    t = sse_text(s, "/v1/chat/completions", dict(chat, speculative={"mode": "lookup"}))
    check(r.status == 200 and t == off["choices"][0]["message"]["content"],
          "streamed chat with lookup: the same message")
    resp = {"model": "tiny", "input": "Tell me a story", "max_output_tokens": 40,
            "temperature": 0, "store": False}
    r, x = s.req("POST", "/v1/responses", dict(resp, speculative={"mode": "off"}))
    r2, y = s.req("POST", "/v1/responses", dict(resp, speculative={"mode": "draft"}))
    check(r.status == 200 and r2.status == 200 and
          x["output"][0]["content"][0]["text"] == y["output"][0]["content"][0]["text"],
          "/v1/responses passes speculative on: the same text")
    r, y = s.req("POST", "/v1/responses", dict(resp, speculative={"mode": "fast"}))
    check(r.status == 400 and y["error"]["param"] == "speculative.mode",
          "/v1/responses: a bad mode is a 400 naming it (%s)" % y)


def test_refusals(s):
    for body, param in (({"speculative": "lookup"}, "speculative"),
                        ({"speculative": {"mode": "fast"}}, "speculative.mode"),
                        ({"speculative": {"mode": 1}}, "speculative.mode"),
                        ({"speculative": {"n_max": 0}}, "speculative.n_max"),
                        ({"speculative": {"n_max": 33}}, "speculative.n_max"),
                        ({"speculative": {"n_min": -1}}, "speculative.n_min"),
                        ({"speculative": {"p_min": 1.5}}, "speculative.p_min"),
                        ({"speculative": {"bogus": 1}}, "speculative.bogus"),
                        ({"speculative.n_max": 99}, "speculative.n_max"),
                        ({"speculative.p_min": "high"}, "speculative.p_min")):
        r, b = complete(s, **body)
        check(r.status == 400 and isinstance(b, dict) and b["error"]["param"] == param,
              "%s: 400 naming %s (%s %s)" % (body, param, r.status, b))
    r, b = complete(s, "q4", speculative={"mode": "draft"})
    check(r.status == 400 and "no draft model" in json.dumps(b),
          "mode draft on a model without one: 400 saying so (%s %s)" % (r.status, b))
    # two models loaded now: each metric family's samples stand together
    _, text = s.req("GET", "/metrics", raw=True)
    fams, last = [], None
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            fam = line.split("{")[0].split(" ")[0]
            for suffix in ("_bucket", "_sum", "_count"):
                if fam.endswith(suffix) and fam[:-len(suffix)] in fams:
                    fam = fam[:-len(suffix)]
            if fam != last:
                fams.append(fam)
                last = fam
    check(len(fams) == len(set(fams)), "/metrics: every family's samples together (%s)" %
          sorted(f for f in fams if fams.count(f) > 1))
    check(text.decode().count('realm:num_requests_running{model="') == 2,
          "/metrics: both models' gauges")


def test_other_vocab():
    s = Server("-m", "tiny=" + MODEL, "--draft", "tiny=" + OTHER_VOCAB)
    if not check(s.port is not None, "a server with a mismatched draft starts (loads lazily)"):
        return
    r, b = complete(s)
    check(r.status >= 400 and "draft model's vocabulary" in json.dumps(b),
          "a draft of another vocabulary: the load fails saying so (%s %s)" % (r.status, b))
    s.stop()


def test_lookup_default(ref):
    s = Server("-m", "tiny=" + MODEL, "--lookup", "--draft-max", "4")
    if not check(s.port is not None, "a --lookup server starts"):
        return
    # a prompt that repeats itself gives lookup something to draft
    r, b = s.req("POST", "/v1/completions", {"model": "tiny", "max_tokens": 64,
                                             "temperature": 0,
                                             "prompt": PROMPT + ref + PROMPT})
    check(r.status == 200, "a completion under --lookup")
    d = metric(s, "realm:spec_decode_num_draft_tokens_total", "tiny")
    check(d is not None and d > 0, "--lookup drafts by default (%s)" % d)
    t = text_of(s, "--lookup, greedy")
    check(t == ref, "--lookup: llama.cpp's greedy text")
    s.stop()


def main():
    rc, _, err = cli("quantize", MODEL, DRAFT, "q4_0")
    if not check(rc == 0, "realm quantize makes the Q4_0 draft (%s)" % err):
        return
    r = subprocess.run([MAKER, os.path.join(TD, "vocab", "ggml-vocab-llama-spm.gguf"),
                        OTHER_VOCAB, "32", "1", "2", "1", "64", "256"], capture_output=True,
                       timeout=120)
    check(r.returncode == 0, "make_test_model writes a model of another vocabulary")
    test_cli_flags()
    base = Server("-m", "tiny=" + MODEL)
    plain = text_of(base, "without speculation") if check(base.port, "a plain server") else None
    base.stop()
    s = Server("-m", "tiny=" + MODEL, "-m", "q4=" + DRAFT, "--draft", "tiny=q4")
    if check(s.port is not None, "a server with --draft tiny=q4 starts (%s)" % s.log[-400:]):
        test_draft_server(s, plain)
        test_refusals(s)
    s.stop()
    test_other_vocab()
    test_lookup_default(reference())


if __name__ == "__main__":
    serve_util.run(main, TMP)

#!/usr/bin/env python3
"""realm serve end to end, over real sockets on 127.0.0.1 (standard library only).

Started by tests/cli/serve.sh with REALM_BIN and REALM_TESTDATA. Every wait is
bounded; each server is killed at the end. Prints one line per failed check and
a summary "N passed, N failed"; exits 1 on any failure.
"""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import serve_util
from serve_util import REALM, check, cli, wait_for

TD = os.environ["REALM_TESTDATA"]
MODEL = os.path.join(TD, "models", "stories260K.gguf")
TMP = tempfile.mkdtemp(prefix="realm-serve-test-")
DATA = os.path.join(TMP, "data")


def Server(*extra, host="127.0.0.1"):
    """realm serve with the tiny model and this test's directories."""
    return serve_util.Server("-m", "tiny=" + MODEL, "--data-dir", DATA, "--models-dir",
                             os.path.join(TMP, "models"), "--module-cache",
                             os.path.join(TMP, "cache"), "-t", "1", "--parallel", "4",
                             "--read-timeout", "2s", "--drain-timeout", "20s", *extra, host=host)


def chat(content="Once upon a time", **kw):
    b = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8,
         "temperature": 0}
    b.update(kw)
    return b


def metric(s, name, **labels):
    _, text = s.req("GET", "/metrics", raw=True)
    total = 0.0
    for line in text.decode().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all('%s="%s"' % (k, v) in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def sse_events(raw):
    text = raw.decode()
    check(text.endswith("\n\n"), "SSE ends with a blank line")
    events = [e for e in text.split("\n\n") if e]
    check(all(e.startswith("data: ") and "\n" not in e for e in events),
          "every SSE event is one 'data: ' line, no event: lines")
    return [e[len("data: "):] for e in events]


def test_basics(s):
    r, b = s.req("GET", "/health")
    check(r.status == 200 and b == {"status": "ok"}, "/health")
    check(r.getheader("x-request-id", "").startswith("req-"), "x-request-id on /health")
    r, b = s.req("GET", "/ready")
    check(r.status == 200, "/ready")
    r, b = s.req("GET", "/v1/models")
    check(r.status == 200 and b["object"] == "list" and b["data"][0]["id"] == "tiny"
          and b["data"][0]["object"] == "model", "/v1/models")
    r, b = s.req("GET", "/v1/models/tiny")
    check(r.status == 200 and b["id"] == "tiny", "/v1/models/tiny")
    r, b = s.req("GET", "/v1/models/nope")
    check(r.status == 404 and b["error"]["code"] == "model_not_found", "/v1/models/nope 404")

    r, b = s.req("POST", "/v1/chat/completions", chat())
    ok = check(r.status == 200, "chat: 200 (%s)" % (b,))
    if ok:
        check(b["id"].startswith("chatcmpl-") and b["object"] == "chat.completion"
              and isinstance(b["created"], int) and b["model"] == "tiny"
              and b["system_fingerprint"], "chat: id, object, created, model, fingerprint")
        ch = b["choices"][0]
        check(ch["index"] == 0 and ch["message"]["role"] == "assistant"
              and isinstance(ch["message"]["content"], str) and ch["finish_reason"] == "length",
              "chat: the choice")
        u = b["usage"]
        check(u["completion_tokens"] == 8 and u["total_tokens"] == u["prompt_tokens"] + 8
              and "cached_tokens" in u["prompt_tokens_details"], "chat: usage")
        check(r.getheader("x-request-id") in b["id"], "chat: id carries the request id")
    r, b = s.req("POST", "/v1/completions", {"model": "tiny", "prompt": "Once upon a time",
                                             "max_tokens": 6, "temperature": 0})
    check(r.status == 200 and b["object"] == "text_completion" and b["id"].startswith("cmpl-")
          and isinstance(b["choices"][0]["text"], str) and b["usage"]["completion_tokens"] == 6,
          "completions")

    # /tokenize and /detokenize (llama-server's shapes)
    r, b = s.req("POST", "/tokenize", {"content": "Once upon a time", "add_special": True})
    check(r.status == 200 and b["tokens"] == [1, 403, 407, 261, 378], "/tokenize (%s)" % (b,))
    r, b = s.req("POST", "/detokenize", {"model": "tiny", "tokens": [403, 407, 261, 378]})
    check(r.status == 200 and b["content"].strip() == "Once upon a time", "/detokenize")
    r, b = s.req("POST", "/detokenize", {"tokens": [99999]})
    check(r.status == 400 and b["error"]["param"] == "tokens", "/detokenize: bad id 400")
    r, b = s.req("POST", "/tokenize", {"model": "nope", "content": "x"})
    check(r.status == 404, "/tokenize: unknown model 404")
    check(b"POST /tokenize 200" in s.log or wait_for(lambda: b"/tokenize 200" in s.log, 2),
          "the access log line names the request")

    # streaming, byte-level framing
    r, raw = s.req("POST", "/v1/chat/completions",
                   chat(stream=True, stream_options={"include_usage": True}), raw=True)
    check(r.status == 200 and r.getheader("content-type", "").startswith("text/event-stream"),
          "stream: 200 text/event-stream")
    ev = sse_events(raw)
    check(ev[-1] == "[DONE]", "stream: ends with [DONE]")
    chunks = [json.loads(e) for e in ev[:-1]]
    check(len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
          and all(c["model"] == "tiny" and c["object"] == "chat.completion.chunk"
                  for c in chunks), "stream: same id, created, model in every chunk")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    check(deltas and deltas[0].get("role") == "assistant"
          and all("role" not in d for d in deltas[1:]), "stream: role in the first chunk only")
    fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check(len(fin) == 1 and fin[0]["choices"][0]["delta"] == {}
          and fin[0]["choices"][0]["finish_reason"] == "length", "stream: one final chunk")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8,
          "stream: the usage chunk last")
    text = "".join(d.get("content", "") for d in deltas)
    r, b = s.req("POST", "/v1/chat/completions", chat())
    check(b["choices"][0]["message"]["content"] == text, "stream: same text as not streamed")
    r, raw = s.req("POST", "/v1/chat/completions", chat(stream=True), raw=True)
    check(not any('"usage"' in e for e in sse_events(raw)), "stream: no usage unless asked")

    # n choices: one prompt, three answers
    before = metric(s, "realm:prompt_tokens_total")
    r, b = s.req("POST", "/v1/chat/completions", chat(n=3, temperature=1, seed=5))
    ok = check(r.status == 200 and [c["index"] for c in b["choices"]] == [0, 1, 2], "n=3: three "
               "choices (%s)" % (b,))
    if ok:
        check(b["usage"]["completion_tokens"] == 24, "n=3: completion tokens summed")
        check(metric(s, "realm:prompt_tokens_total") - before == b["usage"]["prompt_tokens"],
              "n=3: the prompt counted once")
    r, raw = s.req("POST", "/v1/chat/completions", chat(n=2, stream=True), raw=True)
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    idx = [c["choices"][0]["index"] for c in chunks]
    check(sorted(set(idx)) == [0, 1] and sum(1 for c in chunks
                                             if c["choices"][0]["finish_reason"]) == 2,
          "n=2 streamed: both choices, each with its final chunk")
    firsts = {}
    for c in chunks:
        firsts.setdefault(c["choices"][0]["index"], c["choices"][0]["delta"])
    check(all(d.get("role") == "assistant" for d in firsts.values()),
          "n=2 streamed: each choice's first chunk carries the role")
    r, b = s.req("POST", "/v1/chat/completions", chat(n=9))
    check(r.status == 400 and b["error"]["param"] == "n", "n=9: 400 naming n")

    # completions: an array of prompts (each n choices), the legacy logprobs shape
    r, b = s.req("POST", "/v1/completions", {"model": "tiny", "prompt": ["Once upon", "The dog"],
                                             "max_tokens": 3, "n": 2, "logprobs": 2,
                                             "temperature": 0})
    ok = check(r.status == 200 and [c["index"] for c in b["choices"]] == [0, 1, 2, 3],
               "two prompts x n=2: four choices (%s)" % (b,))
    if ok:
        lp = b["choices"][2]["logprobs"]
        check(len(lp["tokens"]) == 3 and len(lp["token_logprobs"]) == 3
              and len(lp["top_logprobs"]) == 3 and len(lp["top_logprobs"][0]) == 2
              and lp["text_offset"][0] == 0 and "".join(lp["tokens"]) == b["choices"][2]["text"],
              "legacy logprobs: tokens, token_logprobs, top_logprobs (2 each), text_offset")
        check(b["choices"][0]["text"] != b["choices"][2]["text"], "each prompt its own text")
    r, b = s.req("POST", "/v1/completions", {"model": "tiny", "prompt": [[1, 2]]})
    check(r.status == 400 and b["error"]["param"] == "prompt", "token-array prompts: 400")


def test_errors(s):
    r, b = s.req("POST", "/v1/chat/completions", '{"model": "tiny", "messages": [')
    check(r.status == 400 and b["error"]["code"] == "invalid_json" and "byte" in
          b["error"]["message"], "malformed JSON: 400 with its position")
    r, b = s.req("POST", "/v1/chat/completions", chat(temperature="hot"))
    check(r.status == 400 and b["error"]["param"] == "temperature" and
          "'temperature' must be a number between 0 and 2" in b["error"]["message"],
          "wrong type: 400 naming the parameter")
    r, b = s.req("POST", "/v1/chat/completions", chat(max_tokens=0))
    check(r.status == 400 and b["error"]["param"] == "max_tokens", "max_tokens 0: 400")
    r, b = s.req("POST", "/v1/chat/completions", {"model": "tiny", "messages": []})
    check(r.status == 400 and b["error"]["param"] == "messages", "empty messages: 400")
    r, b = s.req("POST", "/v1/chat/completions", chat(model="nope"))
    check(r.status == 404 and b["error"]["code"] == "model_not_found", "unknown model: 404")
    r, b = s.req("POST", "/v1/chat/completions", chat(tools=[{"type": "function"}]))
    check(r.status == 400 and b["error"]["param"] == "tools", "tools: refused by name")
    r, b = s.req("POST", "/v1/chat/completions", chat(content="x" * 5000))
    check(r.status == 413 and b["error"]["code"] == "request_too_large", "body over --max-body")
    r, b = s.req("GET", "/v2/nothing")
    check(r.status == 404, "unknown route: 404")
    r, b = s.req("GET", "/v1/chat/completions")
    check(r.status == 405 and r.getheader("allow") == "POST", "wrong method: 405 with Allow")
    r, b = s.req("POST", "/v1/chat/completions", json.dumps(chat()), {"Content-Type": "text/plain"})
    check(r.status == 415, "text/plain body: 415")
    r, b = s.req("POST", "/v1/chat/completions", b'{"model":"tiny","messages":[{"role":"user",'
                 b'"content":"\xff\xfe"}]}')
    check(r.status == 400, "invalid UTF-8 in JSON: 400")
    r, b = s.req("GET", "/health", headers={"Host": "evil.example"})
    check(r.status == 403, "keyless server: a foreign Host header is refused")
    check(all(h for h in [r.getheader("x-request-id")]), "x-request-id on errors")


def raw_socket(s, data, read=True, timeout=5):
    so = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    so.sendall(data)
    out = b""
    if read:
        try:
            while True:
                d = so.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
    so.close()
    return out


def test_disconnect_in_prefill():
    """A client leaving while its prompt is being computed: the prefill stops
    within a step (stories260K computes a whole prompt in a few ms, so a model
    of 25 M parameters made by make_test_model is served, one thread, 32
    tokens per step: a 1,500-token prompt takes about 47 steps)."""
    slow = os.path.join(TMP, "slow.gguf")
    r = subprocess.run([os.environ["REALM_MAKE_TEST_MODEL"], MODEL, slow], capture_output=True,
                       text=True, timeout=120)
    if not check(r.returncode == 0, "make_test_model: %s" % r.stderr.strip()):
        return
    s = Server("-m", "slow=" + slow, "--batch", "32")
    if not check(s.port is not None, "server with the slow model started"):
        return
    # the model is loaded (its gauges appear) by a short request first
    r, b = s.req("POST", "/v1/completions",
                 {"model": "slow", "prompt": "Once", "max_tokens": 1, "temperature": 0})
    check(r.status == 200, "slow model answers: %s" % b)
    words = ("Lily and Ben went to the park to play with a red ball and a big dog. " * 60).split()
    for stream in (False, True):
        text = "Story %d. %s" % (stream, " ".join(words))
        _, tok = s.req("POST", "/tokenize", {"model": "slow", "content": text})
        n_prompt = len(tok["tokens"])
        check(1200 <= n_prompt <= 2000, "a long prompt (%d tokens)" % n_prompt)
        lab = {"model": "slow"}
        pre0 = metric(s, "realm:prefill_tokens_total", **lab)
        gen0 = metric(s, "realm:generation_tokens_total", **lab)
        can0 = metric(s, "realm:request_success_total", finished_reason="cancelled", **lab)
        so = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        data = json.dumps({"model": "slow", "prompt": text, "max_tokens": 16, "temperature": 0,
                           "stream": stream}).encode()
        so.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) +
                   data)
        # leave once the engine has computed a first part of the prompt
        started = wait_for(lambda: metric(s, "realm:prefill_tokens_total", **lab) > pre0, 30)
        at_close = metric(s, "realm:prefill_tokens_total", **lab) - pre0
        so.close()
        what = "streaming" if stream else "not streaming"
        check(started and at_close < n_prompt,
              "%s: closed during prefill (%d of %d prompt tokens computed)" %
              (what, at_close, n_prompt))
        check(wait_for(lambda: metric(s, "realm:request_success_total",
                                      finished_reason="cancelled", **lab) == can0 + 1, 30),
              "%s: disconnect during prefill cancels" % what)
        check(wait_for(lambda: metric(s, "realm:num_requests_running", **lab) == 0, 10),
              "%s: ...and frees its sequence" % what)
        done = metric(s, "realm:prefill_tokens_total", **lab) - pre0
        check(done < n_prompt / 2,
              "%s: ...and stops its prefill: %d of %d prompt tokens computed" %
              (what, done, n_prompt))
        check(metric(s, "realm:generation_tokens_total", **lab) == gen0,
              "%s: ...before its first token" % what)
    s.stop()


def test_bad_input(s):
    raw_socket(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", False)
    out = raw_socket(s, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200000 +
                     b"\r\n\r\n")
    check(out == b"" or out.startswith(b"HTTP/1.1 4"), "a huge header is refused or dropped")
    out = raw_socket(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo", False)
    # a slow client (slowloris) is dropped after the read timeout; others are served
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    r, b = s.req("GET", "/health")
    check(r.status == 200, "served while a slow client holds a connection")
    slow.settimeout(8)
    t0 = time.time()
    try:
        got = slow.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = None
    check(got == b"" and time.time() - t0 < 7, "slowloris connection closed by the read timeout")
    slow.close()
    r, b = s.req("POST", "/v1/chat/completions", chat())
    check(r.status == 200, "still serving after bad input")


def test_disconnects(s):
    base = metric(s, "realm:request_success_total", finished_reason="cancelled")

    def cancel_after(body, seconds, stream=False):
        so = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        data = json.dumps(body).encode()
        so.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) +
                   data)
        time.sleep(seconds)
        so.close()

    long = chat(max_tokens=100000, ignore_eos=True)
    # decoding, not streaming: nothing written yet; the socket is watched
    cancel_after(long, 0.5)
    check(wait_for(lambda: metric(s, "realm:request_success_total",
                                  finished_reason="cancelled") == base + 1),
          "disconnect while decoding (not streaming) cancels")
    check(wait_for(lambda: metric(s, "realm:num_requests_running") == 0),
          "...and frees its sequence")
    # streaming
    cancel_after(dict(long, stream=True), 0.5)
    check(wait_for(lambda: metric(s, "realm:request_success_total",
                                  finished_reason="cancelled") == base + 2),
          "disconnect while streaming cancels")
    # waiting: the engine runs --parallel 4; four long streams fill it, the
    # fifth waits and leaves
    holders = []
    for _ in range(4):
        c = s.conn(30)
        c.request("POST", "/v1/chat/completions", json.dumps(dict(long, stream=True)),
                  {"Content-Type": "application/json"})
        holders.append(c)
    check(wait_for(lambda: metric(s, "realm:num_requests_running") == 4),
          "four streams running")
    cancel_after(long, 0.6)
    check(wait_for(lambda: metric(s, "realm:request_success_total",
                                  finished_reason="cancelled") == base + 3),
          "disconnect while waiting cancels")
    check(metric(s, "realm:num_requests_waiting") == 0, "...and leaves the queue")
    for c in holders:
        c.close()
    check(wait_for(lambda: metric(s, "realm:num_requests_running") == 0, 10),
          "closed streams end")


def test_tenants(s):
    # keys: once one exists, requests need one
    rc, key, err = cli("key", "create", "default", "--data-dir", DATA)
    key = key.strip()
    check(rc == 0 and key.startswith("rk-"), "key create (%s)" % err)
    check(wait_for(lambda: s.req("POST", "/v1/chat/completions", chat())[0].status == 401),
          "no key: 401 once keys exist")
    r, b = s.req("POST", "/v1/chat/completions", chat(), {"Authorization": "Bearer rk-nope"})
    check(r.status == 401 and b["error"]["code"] == "invalid_api_key", "unknown key: 401")
    auth = {"Authorization": "Bearer " + key}
    r, b = s.req("POST", "/v1/chat/completions", chat(), auth)
    check(r.status == 200, "with the key: 200")
    # a second tenant limited to no model, with a rate limit
    cli("tenant", "add", "limited", "--data-dir", DATA)
    cli("tenant", "set", "limited", "--models", "other-model", "--rpm", "20", "--data-dir", DATA)
    rc, key2, _ = cli("key", "create", "limited", "--data-dir", DATA)
    auth2 = {"Authorization": "Bearer " + key2.strip()}
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=auth2)[0].status == 200),
          "second tenant's key works")
    r, b = s.req("GET", "/v1/models", headers=auth2)
    check(b["data"] == [], "a tenant sees only its models")
    r, b = s.req("POST", "/v1/chat/completions", chat(), auth2)
    check(r.status in (403, 404), "a tenant cannot use a model it is not allowed")
    # rate limit: 20 requests a minute (one every 3 s), a burst of 20
    statuses = []
    for _ in range(25):
        r, b = s.req("GET", "/v1/models/tiny", headers=auth2)
        statuses.append(r.status)
    statuses = []
    for _ in range(25):
        r, b = s.req("POST", "/v1/chat/completions", chat(max_tokens=1), auth2)
        statuses.append(r.status)
        if r.status == 429:
            limited = (r, b)
    check(429 in statuses, "over the rpm limit: 429 (%s)" % statuses)
    if 429 in statuses:
        r, b = limited
        check(b["error"]["code"] == "rate_limit_exceeded" and int(r.getheader("retry-after")) >= 1
              and r.getheader("x-ratelimit-limit-requests") == "20", "429 with Retry-After")
        time.sleep(min(int(r.getheader("retry-after")), 6) + 0.2)
        r, b = s.req("POST", "/v1/chat/completions", chat(max_tokens=1), auth2)
        check(r.status != 429, "the limit recovers")
    # a revoked key stops working
    cli("key", "revoke", key2.strip(), "--data-dir", DATA)
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=auth2)[0].status == 401),
          "a revoked key: 401")
    # a tenant whose module traps gets 500 with the trap; others carry on
    wat = os.path.join(TMP, "trap.wat")
    with open(wat, "w") as f:
        f.write('(module (memory (export "memory") 1) (func (export "handle") (result i32) '
                'unreachable))')
    subprocess.run(["wat2wasm", wat, "-o", wat[:-4] + ".wasm"], check=True)
    cli("tenant", "add", "trapper", "--data-dir", DATA)
    rc, _, err = cli("tenant", "set", "trapper", "--module", wat[:-4] + ".wasm", "--data-dir", DATA)
    check(rc == 0, "tenant set --module (%s)" % err)
    rc, key3, _ = cli("key", "create", "trapper", "--data-dir", DATA)
    auth3 = {"Authorization": "Bearer " + key3.strip()}
    check(wait_for(lambda: s.req("POST", "/v1/chat/completions", chat(), auth3)[0].status == 500),
          "a trapping module: 500")
    r, b = s.req("POST", "/v1/chat/completions", chat(), auth3)
    check("guest trapped" in b["error"]["message"], "...with the trap message")
    r, b = s.req("POST", "/v1/chat/completions", chat(), auth)
    check(r.status == 200, "the other tenant carries on")
    check(metric(s, "realm:guest_traps_total", tenant="trapper") >= 1, "traps counted")
    return auth


def response_events(raw):
    """The Responses API's SSE events: each 'event: TYPE' then 'data: JSON'.
    Returns [(event name, object)]."""
    text = raw.decode()
    check(text.endswith("\n\n"), "responses: SSE ends with a blank line")
    out = []
    for block in [e for e in text.split("\n\n") if e]:
        lines = block.split("\n")
        ok = len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        if not check(ok, "responses: an event is 'event:' and 'data:' (%r)" % block[:200]):
            continue
        out.append((lines[0][len("event: "):], json.loads(lines[1][len("data: "):])))
    return out


def test_responses(s, auth):
    """/v1/responses through the default module: whole and streamed, stored,
    retrieved, listed, deleted, continued; refused options; tenants apart."""
    def create(**kw):
        b = {"model": "tiny", "max_output_tokens": 8, "temperature": 0}
        b.update(kw)
        return s.req("POST", "/v1/responses", b, auth)

    def out_text(resp):
        return "".join(p["text"] for item in resp["output"] for p in item["content"])

    r, b = create(input="Once upon a time", store=False, metadata={"k": "v"},
                  instructions="Tell a story", user="u1")
    if not check(r.status == 200, "responses: 200 (%s)" % b):
        return
    u = b["usage"]
    item = b["output"][0] if len(b["output"]) == 1 else {}
    check(b["id"].startswith("resp_") and b["object"] == "response" and b["model"] == "tiny" and
          isinstance(b["created_at"], int), "responses: id, object, created_at, model")
    check(item.get("type") == "message" and item.get("role") == "assistant" and
          item.get("id", "").startswith("msg_") and len(item["content"]) == 1 and
          item["content"][0]["type"] == "output_text" and item["content"][0]["annotations"] == []
          and item["content"][0]["text"], "responses: one output message of output_text")
    check(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] and u["output_tokens"] > 0
          and u["output_tokens_details"] == {"reasoning_tokens": 0} and
          "cached_tokens" in u["input_tokens_details"], "responses: usage (%s)" % u)
    cut = u["output_tokens"] == 8
    check(b["status"] == ("incomplete" if cut else "completed") and item.get("status") == b["status"]
          and b["incomplete_details"] == ({"reason": "max_output_tokens"} if cut else None),
          "responses: status and incomplete_details (%s, %s)" % (b["status"], u))
    check(b["metadata"] == {"k": "v"} and b["instructions"] == "Tell a story" and
          b["max_output_tokens"] == 8 and b["temperature"] == 0 and b["store"] is False and
          b["tools"] == [] and b["text"] == {"format": {"type": "text"}} and b["user"] == "u1" and
          b["previous_response_id"] is None and b["error"] is None,
          "responses: the request's fields echoed")
    # the same conversation through /v1/chat/completions: the same prompt and text
    r, c = s.req("POST", "/v1/chat/completions",
                 {"model": "tiny", "max_tokens": 8, "temperature": 0,
                  "messages": [{"role": "system", "content": "Tell a story"},
                               {"role": "user", "content": "Once upon a time"}]}, auth)
    check(r.status == 200 and c["choices"][0]["message"]["content"] == out_text(b) and
          c["usage"]["prompt_tokens"] == u["input_tokens"],
          "responses: instructions and input make the chat request's prompt")
    r, g = s.req("GET", "/v1/responses/" + b["id"], headers=auth)
    check(r.status == 404 and g["error"]["message"].startswith("Response with id"),
          "responses: store false is not kept (%s)" % g)

    # streamed (stored by default)
    r, raw = s.req("POST", "/v1/responses", {"model": "tiny", "max_output_tokens": 8,
                                             "temperature": 0, "input": "Once upon a time",
                                             "stream": True}, auth, raw=True)
    check(r.status == 200 and r.getheader("content-type") == "text/event-stream",
          "responses: stream is SSE")
    evs = response_events(raw)
    types = [o.get("type") for _, o in evs]
    check(all(name == o.get("type") for name, o in evs), "responses: event names are the types")
    check([o.get("sequence_number") for _, o in evs] == list(range(len(evs))),
          "responses: sequence numbers 0, 1, 2, ...")
    head = ["response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done",
            "response.output_item.done"]
    n_delta = len(evs) - len(head) - len(tail) - 1
    check(types[:4] == head and types[4:4 + n_delta] == ["response.output_text.delta"] * n_delta
          and n_delta > 0 and types[4 + n_delta:-1] == tail and
          types[-1] in ("response.completed", "response.incomplete"),
          "responses: the events in order (%s)" % types)
    if len(evs) < 9:
        return
    final = evs[-1][1]["response"]
    deltas = "".join(o["delta"] for _, o in evs if o["type"] == "response.output_text.delta")
    check(deltas == evs[-4][1]["text"] == out_text(final) == out_text(b),
          "responses: the deltas joined are the final text, as the whole response's")
    check(evs[0][1]["response"]["status"] == "in_progress" and evs[0][1]["response"]["output"] == []
          and final["id"] == evs[0][1]["response"]["id"] and
          all(o.get("item_id") == final["output"][0]["id"] for _, o in evs[3:-2]),
          "responses: one id throughout")
    check(final["status"] == ("incomplete" if final["usage"]["output_tokens"] == 8
                              else "completed") and
          types[-1] == "response." + final["status"], "responses: the last event is its status")
    sid = final["id"]
    r, g = s.req("GET", "/v1/responses/" + sid, headers=auth)
    check(r.status == 200 and g == final, "responses: a stored response is retrieved as sent")

    # input items: a list of the input as message items, newest first
    r, b = create(input=[{"role": "developer", "content": "Be kind"},
                         {"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "Once"},
                                      {"type": "input_text", "text": "upon a time"}]}])
    check(r.status == 200, "responses: a list of message items (%s)" % b)
    rid = b.get("id", "")
    r, li = s.req("GET", "/v1/responses/%s/input_items" % rid, headers=auth)
    ok = r.status == 200 and li["object"] == "list" and len(li["data"]) == 2
    check(ok and [d["role"] for d in li["data"]] == ["user", "developer"] and
          li["data"][0]["content"] == [{"type": "input_text", "text": "Once"},
                                       {"type": "input_text", "text": "upon a time"}] and
          all(d["type"] == "message" and d["id"].startswith("msg_") for d in li["data"]) and
          li["first_id"] == li["data"][0]["id"] and li["last_id"] == li["data"][1]["id"] and
          li["has_more"] is False, "responses: input_items (%s)" % li)
    r, p1 = s.req("GET", "/v1/responses/%s/input_items?order=asc&limit=1" % rid, headers=auth)
    r2, p2 = s.req("GET", "/v1/responses/%s/input_items?order=asc&limit=1&after=%s"
                   % (rid, p1["last_id"]), headers=auth)
    check(ok and p1["data"] == [li["data"][1]] and p1["has_more"] is True and
          p2["data"] == [li["data"][0]] and p2["has_more"] is False,
          "responses: input_items order, limit and after")
    r, e = s.req("GET", "/v1/responses/%s/input_items?limit=0" % rid, headers=auth)
    check(r.status == 400 and e["error"]["param"] == "limit", "responses: a bad limit: 400")
    r, d = s.req("DELETE", "/v1/responses/" + rid, headers=auth)
    check(r.status == 200 and d == {"id": rid, "object": "response", "deleted": True},
          "responses: delete")
    for method, path in (("GET", rid), ("DELETE", rid), ("GET", rid + "/input_items")):
        r, e = s.req(method, "/v1/responses/" + path, headers=auth)
        check(r.status == 404 and e["error"]["type"] == "invalid_request_error",
              "responses: %s %s after the delete: 404" % (method, path))

    # a conversation of three turns: each continues the one before
    turns, prev = [], None
    for text in ("Once upon a time", "The dog ran", "Then the cat"):
        kw = {"input": text, "max_output_tokens": 4}
        if prev:
            kw["previous_response_id"] = prev
        if not turns:
            kw["instructions"] = "Only the first turn has these"
        r, b = create(**kw)
        if not check(r.status == 200, "responses: turn %d (%s)" % (len(turns) + 1, b)):
            return
        turns.append(b)
        prev = b["id"]
    check(turns[1]["previous_response_id"] == turns[0]["id"], "responses: previous_response_id")
    msgs = []
    for text, t in zip(("Once upon a time", "The dog ran"), turns):
        msgs += [{"role": "user", "content": text}, {"role": "assistant", "content": out_text(t)}]
    msgs.append({"role": "user", "content": "Then the cat"})
    r, c = s.req("POST", "/v1/chat/completions",
                 {"model": "tiny", "max_tokens": 4, "temperature": 0, "messages": msgs}, auth)
    check(r.status == 200 and c["usage"]["prompt_tokens"] == turns[2]["usage"]["input_tokens"]
          and c["choices"][0]["message"]["content"] == out_text(turns[2]),
          "responses: the third turn's prompt holds the first two (not their instructions)")
    check(turns[2]["usage"]["input_tokens_details"]["cached_tokens"] > 0,
          "responses: the conversation's prefix is cached (%s)" % turns[2]["usage"])
    r, e = create(input="x", previous_response_id="resp_unknown")
    check(r.status == 404 and e["error"]["param"] == "previous_response_id",
          "responses: an unknown previous_response_id: 404")

    # refused: 400 naming the parameter
    for kw, param in (({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
                      ({"text": {"format": {"type": "json_schema", "name": "x",
                                            "schema": {}}}}, "text.format"),
                      ({"background": True}, "background"),
                      ({"input": [{"role": "user", "content": [
                          {"type": "input_image", "image_url": "http://x/y.png"}]}]},
                       "input[0].content[0]"),
                      ({"input": [{"type": "function_call_output", "call_id": "c",
                                   "output": "o"}]}, "input[0].type"),
                      ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
                      ({"input": 5}, "input"),
                      ({"max_output_tokens": 0}, "max_output_tokens"),
                      ({"temperature": 3}, "temperature")):
        body = {"input": "Once upon a time"}
        body.update(kw)
        r, e = create(**body)
        check(r.status == 400 and e["error"]["param"] == param,
              "responses: %s refused naming %s (%s)" % (kw, param, e))
    r, b = create(input="Once", tools=[], max_output_tokens=1, store=False)
    check(r.status == 200 and b["tools"] == [], "responses: an empty tools list is accepted")
    r, e = s.req("PUT", "/v1/responses/" + sid, b"{}", auth)
    check(r.status == 405 and r.getheader("allow") == "GET, DELETE", "responses: 405 with Allow")

    # another tenant does not see this one's responses
    cli("tenant", "add", "resp-b", "--data-dir", DATA)
    _, kb, _ = cli("key", "create", "resp-b", "--data-dir", DATA)
    other = {"Authorization": "Bearer " + kb.strip()}
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=other)[0].status == 200),
          "responses: the other tenant's key works")
    for method, path in (("GET", sid), ("GET", sid + "/input_items"), ("DELETE", sid)):
        r, e = s.req(method, "/v1/responses/" + path, headers=other)
        check(r.status == 404, "responses: another tenant's %s %s: 404" % (method, path))
    r, e = s.req("POST", "/v1/responses", {"model": "tiny", "input": "x",
                                           "previous_response_id": sid}, other)
    check(r.status == 404 and e["error"]["param"] == "previous_response_id",
          "responses: another tenant's previous_response_id: 404")
    r, g = s.req("GET", "/v1/responses/" + sid, headers=auth)
    check(r.status == 200, "responses: ...and it is still there for its tenant")


def test_responses_ttl():
    """realm serve --responses-ttl: a stored response is kept that long, then it
    is 404, and so is continuing it; the next server's housekeeping removes it
    from the data directory. A second server over the same data, a tenant of
    its own."""
    r = subprocess.run([REALM, "serve", "--responses-ttl", "0.5s", "--port", "0",
                        "--data-dir", DATA], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "--responses-ttl must be a duration between 1s" in r.stderr,
          "responses ttl: under a second is refused (%s)" % r.stderr.strip())
    cli("tenant", "add", "resp-ttl", "--data-dir", DATA)
    _, key, _ = cli("key", "create", "resp-ttl", "--data-dir", DATA)
    auth = {"Authorization": "Bearer " + key.strip()}

    def kv_keys():
        rc, out, _ = cli("tenant", "show", "resp-ttl", "--json", "--data-dir", DATA)
        return json.loads(out)["kv_used"]["keys"] if rc == 0 else -1

    # 2 s: the store keeps whole seconds, so a response lives between 1 and 2 s
    s = Server("--responses-ttl", "2s")
    if not check(s.port is not None, "responses ttl: the server starts"):
        return
    body = {"model": "tiny", "input": "Once upon a time", "max_output_tokens": 2,
            "temperature": 0}
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=auth)[0].status == 200),
          "responses ttl: the tenant's key works")
    r, b = s.req("POST", "/v1/responses", body, auth)
    made = time.time()
    if not check(r.status == 200, "responses ttl: a stored response (%s)" % b):
        return
    rid = b["id"]
    r, g = s.req("GET", "/v1/responses/" + rid, headers=auth)
    check(r.status == 200 and g == b, "responses ttl: retrieved before the ttl")
    r, c = s.req("POST", "/v1/responses", dict(body, previous_response_id=rid, store=False), auth)
    check(r.status == 200 and c["previous_response_id"] == rid,
          "responses ttl: continued before the ttl (%s)" % c)
    check(kv_keys() == 1, "responses ttl: one entry in the tenant's key-value data")
    gone = wait_for(lambda: s.req("GET", "/v1/responses/" + rid, headers=auth)[0].status == 404,
                    seconds=4)
    check(gone and time.time() - made <= 3.5, "responses ttl: 404 once the ttl has passed "
          "(%.1f s after it was made)" % (time.time() - made))
    for method, path in (("GET", rid + "/input_items"), ("DELETE", rid)):
        r, e = s.req(method, "/v1/responses/" + path, headers=auth)
        check(r.status == 404, "responses ttl: %s %s expired: 404" % (method, path))
    r, e = s.req("POST", "/v1/responses", dict(body, previous_response_id=rid), auth)
    check(r.status == 404 and e["error"]["param"] == "previous_response_id",
          "responses ttl: an expired previous_response_id: 404 (%s)" % e)
    s.stop()
    # a server purges expired key-value data when it starts (then every minute; the
    # first server's minute may come first)
    s = Server()
    check(wait_for(lambda: kv_keys() == 0), "responses ttl: purged by the next server")
    s.stop()


def test_cache_types():
    """--cache-type-k / --cache-type-v (and REALM_CACHE_TYPE_*): bad values refused
    at start; with q8_0 the tiny model of testdata/quant serves and counts a pool
    smaller by exactly its Q8_0 saving in /api/ps, while stories260K (head size
    8) fails to open, saying why."""
    for args, env, want in ((["--cache-type-k", "q4_0"], {}, "--cache-type-k must be one of "
                             "f16, q8_0, not 'q4_0'"),
                            ([], {"REALM_CACHE_TYPE_V": "f32"}, "REALM_CACHE_TYPE_V must be one "
                             "of f16, q8_0, not 'f32'")):
        r = subprocess.run([REALM, "serve", "--port", "0", "--data-dir", DATA] + args,
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **env))
        check(r.returncode != 0 and want in r.stderr,
              "cache types: %s refused (%s)" % (args or env, r.stderr.strip()))
    tiny = os.path.join(TD, "quant", "tiny-q8_0.gguf")
    sizes = {}
    for kind in ("f16", "q8_0"):
        # data of their own: no API keys there, requests are tenant 'default's
        s = Server("-m", "q8=" + tiny, "--ctx", "512", "--cache-type-k", kind,
                   "--cache-type-v", kind, "--data-dir", os.path.join(TMP, "data-" + kind))
        if not check(s.port is not None, "cache types: a server with %s starts" % kind):
            return
        r, b = s.req("POST", "/v1/chat/completions", dict(chat(), model="q8"))
        check(r.status == 200 and b["usage"]["completion_tokens"] == 8,
              "cache types: %s: the tiny model answers (%s)" % (kind, b))
        r, ps = s.req("GET", "/api/ps")
        sizes[kind] = [m["size"] for m in ps["models"] if m["name"] == "q8"]
        if kind == "q8_0":
            r, b = s.req("POST", "/v1/chat/completions", chat())
            check(r.status >= 400 and "multiple of 32, and this model's is 8" in
                  b["error"]["message"], "cache types: stories260K refused (%s)" % b)
        s.stop()
    # 2 layers x 2048 tokens (512 x --parallel 4) x (K and V) x (256 - 136 bytes a row)
    check(len(sizes["f16"]) == 1 and len(sizes["q8_0"]) == 1 and
          sizes["f16"][0] - sizes["q8_0"][0] == 2 * 2048 * 2 * 120,
          "cache types: the q8_0 pool counts 960 KiB less (%s)" % sizes)


def test_repack():
    """--repack (the default): a Q4_K model served with its matrices packed at
    load answers a greedy request with the same 8 tokens as with --no-repack
    (the logits agree within float rounding, test_model)."""
    tiny = os.path.join(TD, "quant", "tiny-q4_k_m.gguf")
    texts = {}
    for extra in (["--no-repack"], []):
        s = Server("-m", "q4=" + tiny, "--ctx", "512", *extra,
                   "--data-dir", os.path.join(TMP, "data-repack%d" % len(extra)))
        if not check(s.port is not None, "repack: a server with %s starts" % extra):
            return
        r, b = s.req("POST", "/v1/chat/completions", dict(chat(), model="q4"))
        check(r.status == 200 and b["usage"]["completion_tokens"] == 8,
              "repack %s: the model answers (%s)" % (extra, b))
        texts[1 - len(extra)] = b.get("choices", [{}])[0].get("message", {}).get("content")
        s.stop()
    check(texts.get(0) is not None and texts.get(0) == texts.get(1),
          "repack: the same greedy text with and without (%s)" % texts)


def test_kv(s):
    """Tenants' modules keep key-value data in the store (realm.kv_*), each
    tenant its own: tests/sandbox/kv.c as the module of two tenants."""
    src = os.environ.get("REALM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    wasm = os.path.join(TMP, "kv.wasm")
    rt = subprocess.run(["clang", "--target=wasm32-wasi", "-print-libgcc-file-name"],
                        capture_output=True, text=True).stdout.strip()
    r = subprocess.run(["clang", "--target=wasm32-wasi", "-O2", "-nostdlib", "-ffreestanding",
                        "-I" + os.path.join(src, "guest", "include"), "-Wl,--no-entry",
                        "-Wl,--export=handle", "-o", wasm,
                        os.path.join(src, "tests", "sandbox", "kv.c"),
                        os.path.join(src, "guest", "lib", "realm_guest.c"), rt],
                       capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "kv: the guest builds (%s)" % r.stderr):
        return
    auths = {}
    for name in ("kv-a", "kv-b"):
        cli("tenant", "add", name, "--data-dir", DATA)
        rc, _, err = cli("tenant", "set", name, "--module", wasm, "--data-dir", DATA)
        check(rc == 0, "kv: tenant set --module (%s)" % err)
        _, key, _ = cli("key", "create", name, "--data-dir", DATA)
        auths[name] = {"Authorization": "Bearer " + key.strip()}

    def kv(name, text):
        r, b = s.req("POST", "/v1/chat/completions", {"req": text}, auths[name], raw=True)
        return r.status, b.decode(errors="replace")

    check(wait_for(lambda: kv("kv-a", "put\ngreeting\n0\nhello from a") == (200, "0")),
          "kv: a tenant's module stores a value")
    check(kv("kv-a", "get\ngreeting\n100") == (200, "12:hello from a"), "kv: ...and reads it back")
    st, body = kv("kv-b", "get\ngreeting\n100")
    check(st == 200 and body.startswith("-6:"), "kv: another tenant does not see it (%s)" % body)
    check(kv("kv-b", "list\n-\n-\n10\n100") == (200, '24:{"keys":[],"more":false}'),
          "kv: ...nor lists it")
    check(kv("kv-b", "put\ngreeting\n0\nb") == (200, "0") and
          kv("kv-a", "get\ngreeting\n100") == (200, "12:hello from a"),
          "kv: ...and its own value of the key is its own")
    rc, out, _ = cli("tenant", "show", "kv-a", "--json", "--data-dir", DATA)
    used = json.loads(out).get("kv_used", {}) if rc == 0 else {}
    check(used.get("keys") == 1 and used.get("bytes") == len("greeting") + 12,
          "kv: realm tenant show counts it (%s)" % used)

    def kv_keys(name):
        rc, out, _ = cli("tenant", "show", name, "--json", "--data-dir", DATA)
        return json.loads(out)["kv_used"]["keys"] if rc == 0 else -1

    # an entry with a ttl: absent once expired, removed by the server's
    # housekeeping (at its start, then every minute)
    check(kv("kv-a", "put\nbrief\n1\nx") == (200, "0"), "kv: a put with a ttl")
    time.sleep(2.1)
    check(kv("kv-a", "get\nbrief\n100")[1].startswith("-6:"), "kv: ...absent once expired")
    check(kv_keys("kv-a") == 2, "kv: ...counted until purged")
    s2 = Server("--kv-max-value", "64", "--kv-quota", "64")
    check(wait_for(lambda: kv_keys("kv-a") == 1), "kv: ...and purged by the server")

    def kv2(name, text):
        r, b = s2.req("POST", "/v1/chat/completions", {"req": text}, auths[name], raw=True)
        return r.status, b.decode(errors="replace")

    # the server's limits: a value of 65 bytes; kv-b (the default quota, 9 bytes used) over 64
    st, body = kv2("kv-a", "put\nv\n0\n" + "x" * 65)
    check(st == 200 and body.startswith("-8:") and "over the 64" in body,
          "kv: realm serve --kv-max-value (%s)" % body)
    st, body = kv2("kv-b", "put\nw\n0\n" + "x" * 60)
    check(st == 200 and body.startswith("-8:") and "over its quota of 64" in body,
          "kv: realm serve --kv-quota (%s)" % body)
    s2.stop()


def test_admin(s):
    """The admin API on a second server over the same data directory."""
    r, b = s.req("GET", "/admin/v1/tenants")
    check(r.status == 404 and b["error"]["code"] == "not_found", "admin API off without a key: 404")
    key_file = os.path.join(TMP, "admin.key")
    with open(key_file, "w") as f:
        f.write("admin-secret\n")
    a = Server("--admin-key-file", key_file)
    if not check(a.port is not None, "admin server started: %s" % a.log.decode(errors="replace")):
        return
    adm = {"Authorization": "Bearer admin-secret"}
    r, b = a.req("GET", "/admin/v1/tenants", headers={"Authorization": "Bearer admin-wrong"})
    check(r.status == 401 and b["error"]["code"] == "invalid_api_key", "admin: a wrong key: 401")
    r, b = a.req("GET", "/admin/v1/tenants")
    check(r.status == 401, "admin: no key: 401")

    # tenants: create, list, get, patch
    r, b = a.req("POST", "/admin/v1/tenants", {"name": "acme", "rpm": 600, "models": ["tiny"]},
                 adm)
    check(r.status == 201 and b["name"] == "acme" and b["rpm"] == 600 and b["models"] == ["tiny"]
          and b["module_sha256"] is None and b["weight"] == 1 and isinstance(b["id"], int)
          and isinstance(b["created"], int), "admin: create a tenant: 201 (%s)" % (b,))
    r, b = a.req("GET", "/admin/v1/tenants", headers=adm)
    check(r.status == 200 and b["object"] == "list"
          and {"default", "acme"} <= {t["name"] for t in b["data"]}, "admin: list tenants")
    r, b = a.req("GET", "/admin/v1/tenants/acme", headers=adm)
    check(r.status == 200 and b["name"] == "acme" and b["rpm"] == 600, "admin: get a tenant")
    r, b = a.req("PATCH", "/admin/v1/tenants/acme", {"tpm": 100000, "weight": 2, "models": None},
                 adm)
    check(r.status == 200 and b["tpm"] == 100000 and b["weight"] == 2 and b["models"] == []
          and b["rpm"] == 600, "admin: patch a tenant (%s)" % (b,))

    # a key made over HTTP works at once, here and on the other server
    r, b = a.req("POST", "/admin/v1/tenants/acme/keys", {}, adm)
    key = b.get("key", "") if r.status == 201 else ""
    check(key.startswith("rk-") and b["prefix"] == key[:12] and b["tenant"] == "acme"
          and r.getheader("cache-control") == "no-store", "admin: create a key: 201 (%s)" % (b,))
    kauth = {"Authorization": "Bearer " + key}
    r, b = a.req("POST", "/v1/chat/completions", chat(user="alice"), kauth)
    check(r.status == 200, "admin: the new key works at once (%s)" % (b,))
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=kauth)[0].status == 200, 1.0),
          "admin: ...and on the other server within a second")

    # usage: the request above, recorded within about a second
    def acme_usage(since="24h"):
        r, b = a.req("GET", "/admin/v1/usage?tenant=acme&since=" + since, headers=adm)
        return b if r.status == 200 else None
    check(wait_for(lambda: (acme_usage() or {}).get("total", {}).get("requests") == 1, 3.0),
          "admin: usage records the request within 3 s")
    b = acme_usage()
    row = b["data"][0] if b and b["data"] else {}
    check(len(b["data"]) == 1 and b["object"] == "list" and row["tenant"] == "acme"
          and row["model"] == "tiny" and row["user"] == "alice" and row["requests"] == 1
          and row["completion_tokens"] == 8 and row["prompt_tokens"] > 0
          and len(row["hour"]) == 20 and row["hour"].endswith(":00:00Z")
          and b["total"]["completion_tokens"] == 8, "admin: the usage row (%s)" % (b,))
    today = time.strftime("%Y-%m-%d", time.gmtime())
    check((acme_usage(today) or {}).get("total", {}).get("requests") == 1, "admin: since=DATE")
    check(acme_usage(str(int(time.time()) + 7200)) == {"object": "list", "data": [], "total": {
        "requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0}},
        "admin: since=UNIX in the future: nothing")
    r, b = a.req("GET", "/admin/v1/usage?since=soon", headers=adm)
    check(r.status == 400 and b["error"]["param"] == "since", "admin: a bad since: 400")

    # errors
    r, b = a.req("GET", "/admin/v1/tenants/nope", headers=adm)
    check(r.status == 404 and b["error"]["code"] == "tenant_not_found", "admin: unknown tenant 404")
    r, b = a.req("POST", "/admin/v1/tenants", {"name": "acme"}, adm)
    check(r.status == 409 and b["error"]["code"] == "tenant_exists", "admin: duplicate name 409")
    r, b = a.req("PATCH", "/admin/v1/tenants/acme", {"colour": "red"}, adm)
    check(r.status == 400 and b["error"]["param"] == "colour" and "colour" in
          b["error"]["message"], "admin: an unknown field: 400 naming it")
    r, b = a.req("PATCH", "/admin/v1/tenants/acme", {"rpm": "fast"}, adm)
    check(r.status == 400 and b["error"]["param"] == "rpm", "admin: a wrong type: 400 naming it")
    r, b = a.req("PATCH", "/admin/v1/tenants/acme", {"models": ["tiny", 3]}, adm)
    check(r.status == 400 and b["error"]["param"] == "models", "admin: models not strings: 400")
    r, b = a.req("POST", "/admin/v1/tenants", {"name": "half", "max_pages": 10 ** 6}, adm)
    check(r.status == 400 and b["error"]["param"] == "max_pages", "admin: a bad value: 400")
    r, b = a.req("GET", "/admin/v1/tenants/half", headers=adm)
    check(r.status == 404, "admin: ...and no tenant is left half made")
    r, b = a.req("PUT", "/admin/v1/tenants/acme", {}, adm)
    check(r.status == 405 and r.getheader("allow") == "GET, PATCH, DELETE"
          and b["error"]["code"] == "method_not_allowed", "admin: a wrong method: 405 with Allow")
    r, b = a.req("GET", "/admin/v1/nothing", headers=adm)
    check(r.status == 404, "admin: an unknown endpoint: 404")

    # keys: an ambiguous prefix (63 keys share a first character), an unknown one, revoking
    prefixes = set()
    while True:
        r, b = a.req("POST", "/admin/v1/tenants/acme/keys", {}, adm)
        if r.status != 201 or b["prefix"][:4] in prefixes:
            break
        prefixes.add(b["prefix"][:4])
    r, b = a.req("DELETE", "/admin/v1/keys/" + b.get("prefix", "")[:4], headers=adm)
    check(r.status == 409 and b["error"]["code"] == "ambiguous_key_prefix",
          "admin: an ambiguous prefix: 409")
    r, b = a.req("DELETE", "/admin/v1/keys/rk-000000000", headers=adm)
    check(r.status == 404 and b["error"]["code"] == "key_not_found", "admin: unknown key: 404")
    r, b = a.req("DELETE", "/admin/v1/keys/" + key[:12], headers=adm)
    check(r.status == 204, "admin: revoke a key: 204")
    r, b = a.req("POST", "/v1/chat/completions", chat(), kauth)
    check(r.status == 401, "admin: a revoked key: 401 at once")
    check(wait_for(lambda: s.req("GET", "/v1/models", headers=kauth)[0].status == 401, 1.0),
          "admin: ...and on the other server within a second")

    r, b = a.req("DELETE", "/admin/v1/tenants/acme", headers=adm)
    check(r.status == 204, "admin: delete a tenant: 204")
    r, b = a.req("GET", "/admin/v1/tenants/acme", headers=adm)
    check(r.status == 404, "admin: a deleted tenant: 404")
    r, b = a.req("DELETE", "/admin/v1/tenants/acme", headers=adm)
    check(r.status == 404 and b["error"]["code"] == "tenant_not_found", "admin: delete twice: 404")
    a.stop()


def test_drain(s, auth):
    c = s.conn(60)
    c.request("POST", "/v1/chat/completions",
              json.dumps(chat(max_tokens=100000, ignore_eos=True, stream=True)),
              dict(auth, **{"Content-Type": "application/json"}))
    r = c.getresponse()
    first = r.read1(100)
    check(r.status == 200 and first.startswith(b"data: "), "drain: a stream is running")
    s.p.send_signal(signal.SIGTERM)
    check(wait_for(lambda: s.req("GET", "/ready")[0].status == 503), "drain: /ready 503")
    r2, b2 = s.req("POST", "/v1/chat/completions", chat(), auth)
    check(r2.status == 503, "drain: new work refused with 503")
    rest = r.read()
    check(rest.endswith(b"data: [DONE]\n\n"), "drain: the running stream finishes")
    c.close()
    try:
        s.p.wait(30)
    except subprocess.TimeoutExpired:
        pass
    check(s.p.returncode == 0, "drain: exit 0 (%s)" % s.p.returncode)


def test_cors_tls_ipv6():
    s = Server("--cors-origin", "http://ok.example", "--api-key", "secret-key")
    r, b = s.req("OPTIONS", "/v1/chat/completions",
                 headers={"Origin": "http://ok.example", "Access-Control-Request-Method": "POST"})
    check(r.status == 204 and r.getheader("access-control-allow-origin") == "http://ok.example",
          "CORS preflight from an allowed origin")
    r, b = s.req("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://evil.example"})
    check(r.status == 403, "CORS preflight from another origin: 403")
    r, b = s.req("GET", "/v1/models", headers={"Origin": "http://ok.example",
                                               "Authorization": "Bearer secret-key"})
    check(r.status == 200 and r.getheader("access-control-allow-origin") == "http://ok.example",
          "CORS header on a response; --api-key")
    r, b = s.req("GET", "/v1/models")
    check(r.status == 401, "--api-key: no key, 401")
    s.stop()
    # TLS with a self-signed certificate
    cert, key = os.path.join(TMP, "cert.pem"), os.path.join(TMP, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    s = Server("--tls-cert", cert, "--tls-key", key)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=30)
    c.request("GET", "/health", headers={"Host": "localhost"})
    r = c.getresponse()
    check(r.status == 200 and json.loads(r.read()) == {"status": "ok"}, "HTTPS /health")
    s.stop()
    # IPv6 loopback, where the machine has it
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        have6 = True
    except OSError:
        have6 = False
    if have6:
        s = Server(host="::1")
        r, b = s.req("GET", "/health", headers={"Host": "[::1]"})
        check(r.status == 200, "IPv6 ::1")
        s.stop()
    # no keys on a public address: refused at start
    r = subprocess.run([REALM, "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir",
                        os.path.join(TMP, "empty"), "--models-dir", os.path.join(TMP, "models")],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "without API keys" in r.stderr,
          "no keys on 0.0.0.0: refused (%s)" % r.stderr.strip())


def main():
    s = Server("--max-body", "4096")
    if not check(s.port is not None, "server started: %s" % s.log.decode(errors="replace")):
        return
    test_basics(s)
    test_errors(s)
    test_bad_input(s)
    test_disconnects(s)
    test_disconnect_in_prefill()
    auth = test_tenants(s)
    test_responses(s, auth)
    test_responses_ttl()
    test_cache_types()
    test_repack()
    test_kv(s)
    test_admin(s)
    test_drain(s, auth)
    test_cors_tls_ipv6()


if __name__ == "__main__":
    serve_util.run(main, TMP)

#!/usr/bin/env python3
"""What a turn of a conversation costs through /v1/responses (Python standard library only).

Starts `realm serve` on 127.0.0.1 (a free port, a temporary data directory), then
holds the same N-turn conversation three ways, each as its own tenant (the
prefix cache is per tenant, so they share nothing):

  prev  each turn sends only its new user message with previous_response_id
        (store: true); the module replays the stored chain
  full  each turn sends the whole conversation as input items (the earlier
        user messages and the replies it got), store: false, no
        previous_response_id
  cold  as full, but every turn as a tenant of its own: nothing in its prefix
        cache, so every input token is computed

Every request is streamed, temperature 0, max_output_tokens M. Per turn it
reports usage.input_tokens and input_tokens_details.cached_tokens, the prompt
tokens the engine computed (the change of realm:prefill_tokens_total on
/metrics; requests run one at a time), the time to the response's first byte
(status line) and to its first response.output_text.delta event, and the
whole request's time. Before each turn it waits (within a budget) for the other
processes on the machine to go quiet, and it reports what they used during the
requests. Loopback only; every wait is bounded. bench/README.md has the figures.

    python3 bench/responses_turns.py --realm build/realm --model /work/models/tinyllama-q4km.gguf \
        [--turns 6] [--max-output-tokens 32] [--reps 3] [--quiet 0.3] [--quiet-budget 600] [--json]
"""
import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# Six user turns of about 30 tokens each (LLaMA's tokenizer).
TURNS = [
    "I am planning a three day trip to the mountains next month with two friends. "
    "What should we pack for cold nights and long hikes?",
    "We will sleep in a small wooden cabin without electricity. How do we keep our "
    "phones charged and our food fresh for three days?",
    "One of my friends has never hiked before and worries about the steep trails. "
    "How can we plan the days so that she enjoys them?",
    "The weather forecast says it might rain on the second day. What could we do "
    "inside the cabin or nearby if the trails are too wet?",
    "We would like to cook dinner together every evening on a small gas stove. "
    "Suggest three simple meals that need few pots and little water.",
    "On the last morning we want to watch the sunrise from the top of the ridge. "
    "When should we leave the cabin and what should we bring?",
]


class Server:
    """realm serve on 127.0.0.1 with --port 0; the port read from its output."""

    def __init__(self, realm, model, data, threads, extra=()):
        args = [realm, "serve", "-m", "tl=" + model, "--host", "127.0.0.1", "--port", "0",
                "--data-dir", data, "--models-dir", os.path.join(data, "models"),
                "--module-cache", os.path.join(data, "cache"), "-t", str(threads)] + list(extra)
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = b""
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline and self.port is None and self.p.poll() is None:
            r, _, _ = select.select([self.p.stdout], [], [], 1)
            if r:
                line = self.p.stdout.readline()
                self.log += line
                m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
        if self.port is None:
            self.stop()
            sys.exit("realm serve did not start:\n" + self.log.decode(errors="replace"))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stdout:
            self.log += line

    def req(self, method, path, body=None, key=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        if key:
            h["Authorization"] = "Bearer " + key
        c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def prefill_total(self):
        _, text = self.req("GET", "/metrics")
        total = 0.0
        for line in text.decode().splitlines():
            if line.startswith("realm:prefill_tokens_total{") and 'model="tl"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def stream(self, body, key, timeout):
        """POST /v1/responses with stream: true. Returns (final response object,
        ms to the status line, ms to the first output_text.delta, ms in all)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = json.dumps(dict(body, stream=True))
        t0 = time.perf_counter()
        c.request("POST", "/v1/responses", body=data,
                  headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
        r = c.getresponse()
        t_head = time.perf_counter()
        if r.status != 200:
            raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:500]))
        t_delta, final = None, None
        while final is None:
            line = r.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            ev = json.loads(line[6:])
            if ev["type"] == "response.output_text.delta" and t_delta is None:
                t_delta = time.perf_counter()
            elif ev["type"] in ("response.completed", "response.incomplete", "response.failed"):
                final = ev["response"]
        r.read()
        t_end = time.perf_counter()
        c.close()
        if final is None or final["status"] == "failed":
            raise RuntimeError("the stream ended without a response: %s" % final)
        ms = lambda t: None if t is None else (t - t0) * 1000.0
        return final, ms(t_head), ms(t_delta), ms(t_end)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def out_text(resp):
    return "".join(p["text"] for it in resp["output"] for p in it["content"])


# ---- the other processes' CPU use, from /proc ----------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids):
    """(busy ticks of the whole machine, ticks used by pids)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - v[4]  # all but idle and iowait
    own = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return busy, own


class Others:
    """Cores used by every process but the server and this script, between
    start() and stop()."""

    def __init__(self, pids):
        self.pids = pids

    def start(self):
        self.t, (self.busy, self.own) = time.time(), cpu_ticks(self.pids)

    def stop(self):
        busy, own = cpu_ticks(self.pids)
        dt = max(time.time() - self.t, 1e-3)
        return max(0.0, (busy - self.busy) - (own - self.own)) / TICK / dt


def wait_quiet(others, limit, budget):
    """Wait (3 s windows) until the other processes use under limit cores, for
    at most budget[0] seconds in all (what is left is written back)."""
    while budget[0] > 0:
        others.start()
        time.sleep(3)
        budget[0] -= 3
        if others.stop() < limit:
            return


# ---- the three kinds of conversation --------------------------------------------------------

def turn(s, mode, i, text, conv, key, a):
    """Turn i of conversation conv (a dict: its history, the last response's id)."""
    body = {"model": "tl", "max_output_tokens": a.max_output_tokens, "temperature": 0}
    if mode == "prev":
        body.update(input=text, store=True)
        if conv.get("prev"):
            body["previous_response_id"] = conv["prev"]
    else:
        body.update(input=conv["history"] + [{"role": "user", "content": text}], store=False)
    before = s.prefill_total()
    s.others.start()
    resp, ttfb, first, total = s.stream(body, key, a.timeout)
    busy = s.others.stop()
    computed = s.prefill_total() - before
    u = resp["usage"]
    conv["prev"] = resp["id"]
    return {"turn": i + 1, "input": u["input_tokens"],
            "cached": u["input_tokens_details"]["cached_tokens"], "computed": computed,
            "output": u["output_tokens"], "ttfb": ttfb, "first": first, "total": total,
            "others": busy, "text": out_text(resp)}


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realm", default="build/realm", help="the realm program")
    ap.add_argument("--model", default="/work/models/tinyllama-q4km.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=6, help="at most %d" % len(TURNS))
    ap.add_argument("--max-output-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3, help="conversations of each kind")
    ap.add_argument("--quiet", type=float, default=0.3,
                    help="before each turn, wait until other processes use fewer cores")
    ap.add_argument("--quiet-budget", type=float, default=600,
                    help="seconds of such waiting in all, then measure anyway")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds a request may go without sending a byte")
    ap.add_argument("--json", action="store_true", help="print every row as JSON too")
    a = ap.parse_args()
    turns = TURNS[:max(1, min(a.turns, len(TURNS)))]
    n, reps = len(turns), max(1, a.reps)
    kinds = ("prev", "full", "cold")

    # SIGTERM (timeout, kill) also stops the server and removes the data directory
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    data = tempfile.mkdtemp(prefix="realm-responses-turns-")
    s = None
    try:
        def cli(*args):
            r = subprocess.run([a.realm] + list(args) + ["--data-dir", data], capture_output=True,
                               text=True, timeout=60)
            if r.returncode:
                sys.exit("realm %s: %s" % (" ".join(args), r.stderr))
            return r.stdout.strip()

        # a tenant per conversation, and for the cold ones one per turn: the prefix cache
        # is the tenant's, so none of them finds another's tokens
        names = ["warm"]
        for r in range(reps):
            names += ["prev%d" % r, "full%d" % r] + ["cold%d_%d" % (r, i) for i in range(n)]
        keys = {}
        for name in names:
            cli("tenant", "add", name)
            keys[name] = cli("key", "create", name)
        s = Server(a.realm, a.model, data, a.threads)
        s.others = Others([s.p.pid, os.getpid()])
        # load the model and compile the module (untimed); then run every tenant's
        # module once (a 404 lookup: no generation) so that no turn pays for starting it
        st, b = s.req("POST", "/v1/responses", {"model": "tl", "input": "Hello",
                                                "max_output_tokens": 2, "store": False},
                      keys["warm"], timeout=a.timeout)
        if st != 200:
            sys.exit("warm-up: HTTP %d %s" % (st, b[:300]))
        for name in names:
            s.req("GET", "/v1/responses/resp_none", key=keys[name])
        tok = []
        for t in turns:
            st, b = s.req("POST", "/tokenize", {"model": "tl", "content": t}, keys["warm"])
            tok.append(len(json.loads(b)["tokens"]) if st == 200 else -1)

        # turn by turn with the kinds interleaved, so that a change of the machine's load
        # falls on all of them; cold sends the prompts prev's conversation had
        load0 = os.getloadavg()
        budget = [a.quiet_budget]
        rows = {m: [[] for _ in range(n)] for m in kinds}
        for r in range(reps):
            convs = {m: {"history": []} for m in kinds}
            for i, text in enumerate(turns):
                for m in kinds:
                    wait_quiet(s.others, a.quiet, budget)
                    key = keys["cold%d_%d" % (r, i)] if m == "cold" else keys["%s%d" % (m, r)]
                    row = turn(s, m, i, text, convs[m], key, a)
                    rows[m][i].append(row)
                    print("rep %d turn %d %s: %d in, %d cached, %d computed, first delta %.0f ms, "
                          "others %.2f cores" % (r + 1, i + 1, m, row["input"], row["cached"],
                                                  row["computed"], row["first"], row["others"]),
                          file=sys.stderr, flush=True)
                for m, src in (("full", "full"), ("cold", "prev")):
                    convs[m]["history"] += [{"role": "user", "content": text},
                                            {"role": "assistant", "content": rows[src][i][-1]["text"]}]
        load1 = os.getloadavg()

        first = [rows["prev"][i][0] for i in range(n)]
        same = all(x["text"] == first[i]["text"] and x["input"] == first[i]["input"]
                   for i in range(n) for x in rows["prev"][i] + rows["full"][i])
        same_in = all(x["input"] == first[i]["input"] for i in range(n) for m in kinds
                      for x in rows[m][i])
        steady = all(len({(x["cached"], x["computed"]) for x in rows[m][i]}) == 1
                     for i in range(n) for m in kinds)
        others = max(x["others"] for m in kinds for i in range(n) for x in rows[m][i])
        print("model %s, realm serve -t %d, %d turns, max_output_tokens %d, temperature 0, "
              "%d conversations of each kind; user messages of %s tokens" % (
                  a.model, a.threads, n, a.max_output_tokens, reps, ", ".join(map(str, tok))))
        print("prev and full had the same prompts and replies in every conversation: %s; "
              "cold the same prompts: %s; cached and computed alike in every repetition: %s" % (
                  "yes" if same else "NO", "yes" if same_in else "NO", "yes" if steady else "NO"))
        print("load average %.2f before, %.2f after; other processes used at most %.2f cores "
              "during a request; %.0f s spent waiting for a quiet machine" % (
                  load0[0], load1[0], others, a.quiet_budget - budget[0]))
        print("tokens from the first conversation of each kind; times in ms, the median of %d"
              % reps)
        print()
        print("| turn | input tokens | prev: cached | prev: computed | prev: first byte "
              "| prev: first delta | full: cached | full: computed | full: first delta "
              "| cold: computed | cold: first delta |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        total = [0] * 10
        for i in range(n):
            p0, f0, c0 = rows["prev"][i][0], rows["full"][i][0], rows["cold"][i][0]
            med = lambda m, k: median([x[k] for x in rows[m][i]])
            v = [p0["input"], p0["cached"], p0["computed"], med("prev", "ttfb"),
                 med("prev", "first"), f0["cached"], f0["computed"], med("full", "first"),
                 c0["computed"], med("cold", "first")]
            total = [t + x for t, x in zip(total, v)]
            print("| %d | %d | %d | %d | %.0f | %.0f | %d | %d | %.0f | %d | %.0f |" % (i + 1, *v))
        total[3] = ""
        print("| all | %d | %d | %d | %s | %.0f | %d | %d | %.0f | %d | %.0f |" % tuple(total))
        if a.json:
            print(json.dumps({m: [[{k: v for k, v in x.items() if k != "text"} for x in t]
                                  for t in rows[m]] for m in kinds}))
    finally:
        if s:
            s.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""realm serve under connection load (standard library only): 1,000 idle
keep-alive connections held open while 64 clients stream completions at once,
on 127.0.0.1. Every stream must end with [DONE], no request may fail, and the
idle connections must still be usable afterwards. Bounded: the whole run
gives up after ~3 minutes. Prints "N passed, N failed"."""
import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

REALM = os.environ["REALM_BIN"]
MODEL = os.path.join(os.environ["REALM_TESTDATA"], "models", "stories260K.gguf")
TMP = tempfile.mkdtemp(prefix="realm-serve-load-")
N_IDLE, N_STREAM = 1000, 64
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)


def request(port, body, timeout=120):
    data = json.dumps(body).encode()
    so = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    so.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(data) + data)
    out = b""
    while True:
        d = so.recv(65536)
        if not d:
            break
        out += d
    so.close()
    return out


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = N_IDLE + N_STREAM + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want * 2), hard))
    p = subprocess.Popen([REALM, "serve", "-m", "tiny=" + MODEL, "--port", "0", "--data-dir",
                          os.path.join(TMP, "data"), "--models-dir", os.path.join(TMP, "models"),
                          "--module-cache", os.path.join(TMP, "cache"), "-t", "2",
                          "--parallel", "16", "--read-timeout", "120s"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = None
    deadline = time.time() + 120
    while time.time() < deadline and port is None:
        r, _, _ = select.select([p.stdout], [], [], 1)
        line = p.stdout.readline() if r else b""
        if r and not line:
            break
        if b"listening on" in line:
            port = int(line.split(b":")[-1].split()[0])
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    idle = []
    try:
        if not port:
            check(False, "server started")
            return
        # 1,000 idle keep-alive connections, each having made one request
        for i in range(N_IDLE):
            so = socket.create_connection(("127.0.0.1", port), timeout=30)
            idle.append(so)
        for so in idle[:50]:  # some of them used once, then left idle
            so.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            check(b"200 OK" in so.recv(4096), "a keep-alive connection answers")
        # 64 streaming clients at once
        results = [None] * N_STREAM
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Once upon a time"}],
                "max_tokens": 48, "temperature": 0.8, "stream": True}

        def worker(i):
            try:
                results[i] = request(port, body)
            except OSError as e:
                results[i] = str(e).encode()

        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_STREAM)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        elapsed = time.time() - t0
        ok = sum(1 for r in results if r and r.startswith(b"HTTP/1.1 200")
                 and r.endswith(b"data: [DONE]\r\n\r\n0\r\n\r\n") or
                 (r and r.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in r))
        check(ok == N_STREAM, "%d of %d streams completed with [DONE] (%.1f s)" % (
            ok, N_STREAM, elapsed))
        print("%d idle connections + %d streams: %d ok in %.1f s" % (N_IDLE, N_STREAM, ok,
                                                                       elapsed))
        # the idle connections are still served
        good = 0
        for so in idle[-20:]:
            so.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            good += b"200 OK" in so.recv(4096)
        check(good == 20, "idle connections still served after the load (%d/20)" % good)
        check(p.poll() is None, "the server is still running")
    finally:
        for so in idle:
            so.close()
        p.kill()
        p.wait(10)
        subprocess.run(["rm", "-rf", TMP])
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""What the Python tests of realm serve share (standard library only).

check() counts and reports checks; Server starts `realm serve` on 127.0.0.1
with --port 0, reads the port it prints and keeps its output; cli() runs the
realm program; run() runs a test's body, prints every server's log tail if
it raised or a check failed, kills the servers, removes the temporary
directory, prints "N passed, N failed" and exits 1 on any failure.
REALM_BIN names the program.
"""
import http.client
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time

REALM = os.environ["REALM_BIN"]
counts = {"passed": 0, "failed": 0}
servers = []


def check(cond, what):
    counts["passed" if cond else "failed"] += 1
    if not cond:
        print("FAIL:", what, flush=True)
    return cond


def cli(*args):
    r = subprocess.run([REALM] + list(args), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def wait_for(fn, seconds=10.0):
    end = time.time() + seconds
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


class Server:
    """realm serve ARGS... --port 0 (--host HOST when given); port is None if it
    did not start within 120 s."""

    def __init__(self, *args, host=None):
        self.host = host or "127.0.0.1"
        extra = ["--host", host] if host else []
        self.p = subprocess.Popen([REALM, "serve", "--port", "0"] + extra + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        servers.append(self)
        self.port = None
        self.log = b""
        deadline = time.time() + 120
        while time.time() < deadline and self.port is None:
            r, _, _ = select.select([self.p.stdout], [], [], 1)
            if r:
                line = self.p.stdout.readline()
                if not line:
                    break
                self.log += line
                if b"listening on" in line:
                    self.port = int(line.split(b":")[-1].split()[0].rstrip(b")"))
        # keep draining its output so it never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stdout:
            self.log += line

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def req(self, method, path, body=None, headers=None, raw=False, timeout=60):
        """(response, body): the body parsed as JSON when it is, else bytes (raw:
        bytes). A body given as bytes or str is sent as it is, anything else as
        JSON."""
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        out = r.read()
        c.close()
        if raw:
            return r, out
        try:
            return r, json.loads(out) if out else None
        except ValueError:
            return r, out

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def run(main, tmp):
    """Run main(); then the logs (on failure), the clean-up, the summary and the exit."""
    try:
        main()
    except BaseException:
        counts["failed"] += 1
        raise
    finally:
        if counts["failed"]:
            for sv in servers:
                sys.stderr.write("server %s: exit status %s, log tail:\n%s\n" %
                                 (sv.port, sv.p.poll(), sv.log[-4000:].decode(errors="replace")))
        for sv in servers:
            sv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (counts["passed"], counts["failed"]))
    sys.exit(1 if counts["failed"] else 0)

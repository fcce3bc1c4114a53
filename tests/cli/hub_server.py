#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub and its CDN, for tests/cli/pull.sh.

usage: hub_server.py ROOT LOG [--time-limit SECONDS]

Listens on 127.0.0.1 on a free port and prints the port on stdout. The hub is
reached as http://127.0.0.1:PORT, its CDN as http://localhost:PORT (another
host name, so a client must not send the hub's Authorization header there).
Files are served from ROOT/OWNER/REPO/PATH:

  GET|HEAD /OWNER/REPO/resolve/main/PATH   302 to the CDN, with X-Linked-Etag
                                           (the file's SHA-256, quoted), X-Linked-Size;
                                           404 with X-Error-Code/-Message if absent
  GET /api/models/OWNER/REPO/tree/main     the repository's files as JSON
                                           [{"type","path","size","oid","lfs":{"oid","size"}}]
  GET /cdn/OWNER/REPO/PATH                 the file's bytes (Range honoured: 206, 416)
  GET /files/PATH                          ROOT/files/PATH, a plain web server with Range

Behaviour per repository ("OWNER/REPO", or "files") comes from ROOT/modes.json,
re-read on every request, e.g. {"o/drop": {"drop_after": 100000}}:
  drop_after N    the first GET of each file sends N bytes of it, then hangs up
  stall_after N   the first GET of each file sends N bytes, then nothing for 60 s
  rate B          send at most B bytes per second
  ignore_range    answer 200 with the whole file whatever the Range
  bad_etag        X-Linked-Etag is a wrong (well-formed) hash
  html            the CDN answers an HTML page instead of the file

Every request is appended to LOG as one JSON line:
  {"method", "host", "path", "headers": {lower-case name: value}}
The server exits after --time-limit seconds (default 120), when its parent
process goes away, or on SIGTERM.
"""
import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = (b"<!DOCTYPE html>\n<html><head><title>Hugging Face</title></head>"
        b"<body><p>This is a web page, not a model.</p></body></html>\n")


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    root = "."
    log_path = "/dev/null"
    lock = threading.Lock()
    dropped = set()  # (mode, path) whose one drop or stall has happened
    hashes = {}      # file path -> (mtime, size, sha256)

    def log_message(self, fmt, *args):  # quiet: the LOG file records requests
        pass

    # ---- helpers -----------------------------------------------------------
    def record(self):
        entry = {"method": self.command, "host": self.headers.get("Host", ""),
                 "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()}}
        with Hub.lock, open(Hub.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def modes(self, key):
        try:
            with open(os.path.join(Hub.root, "modes.json")) as f:
                return json.load(f).get(key, {})
        except (OSError, ValueError):
            return {}

    def sha256(self, path):
        st = os.stat(path)
        known = Hub.hashes.get(path)
        if known and known[0] == st.st_mtime and known[1] == st.st_size:
            return known[2]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        Hub.hashes[path] = (st.st_mtime, st.st_size, h.hexdigest())
        return h.hexdigest()

    def local(self, *parts):
        """ROOT/parts..., or None if it escapes ROOT or is not a file."""
        p = os.path.realpath(os.path.join(Hub.root, *parts))
        if not p.startswith(os.path.realpath(Hub.root) + os.sep) or not os.path.isfile(p):
            return None
        return p

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self, code, message):
        body = json.dumps({"error": message}).encode()
        self.reply(404, body, headers=[("X-Error-Code", code), ("X-Error-Message", message)])

    def send_file(self, path, modes):
        """The bytes of path, honouring Range unless told not to."""
        if modes.get("html"):
            self.reply(200, HTML, "text/html; charset=utf-8")
            return
        size = os.path.getsize(path)
        first, status = 0, 200
        rng = self.headers.get("Range")
        if rng and not modes.get("ignore_range"):
            spec = rng.replace("bytes=", "", 1).split("-", 1)
            first = int(spec[0])
            if first >= size:
                self.reply(416, b"", "text/plain", [("Content-Range", "bytes */%d" % size)])
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - first))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"%s"' % hashlib.md5(path.encode()).hexdigest())
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, size - 1, size))
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(first)
            data = f.read()
        for mode in ("drop_after", "stall_after"):
            at = modes.get(mode)
            with Hub.lock:
                once = at is not None and (mode, path) not in Hub.dropped and first < at
                if once:
                    Hub.dropped.add((mode, path))
            if once:
                self.wfile.write(data[:at - first])
                self.wfile.flush()
                if mode == "stall_after":
                    time.sleep(60)
                self.close_connection = True
                return
        rate = modes.get("rate")
        step = max(1, rate // 10) if rate else len(data) or 1
        for i in range(0, len(data), step):
            self.wfile.write(data[i:i + step])
            if rate:
                self.wfile.flush()
                time.sleep(0.1)

    # ---- routes -------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.record()
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        port = self.server.server_address[1]
        if len(parts) >= 5 and parts[2] == "resolve" and parts[3] == "main":
            owner, repo, rest = parts[0], parts[1], parts[4:]
            path = self.local(owner, repo, *rest)
            if path is None:
                if not os.path.isdir(os.path.join(Hub.root, owner, repo)):
                    return self.not_found("RepoNotFound", "Repository not found")
                return self.not_found("EntryNotFound", "Entry not found")
            sha = self.sha256(path)
            if self.modes(owner + "/" + repo).get("bad_etag"):
                sha = hashlib.sha256(b"not this file").hexdigest()
            cdn = "http://localhost:%d/cdn/%s/%s/%s" % (
                port, owner, repo, "/".join(urllib.parse.quote(p) for p in rest))
            return self.reply(302, b"", "text/plain", [
                ("Location", cdn), ("X-Linked-Etag", '"%s"' % sha),
                ("X-Linked-Size", str(os.path.getsize(path))),
                ("ETag", '"%s"' % hashlib.sha1(sha.encode()).hexdigest())])
        if self.command == "GET" and parts[:2] == ["api", "models"] and len(parts) >= 6 \
                and parts[4:6] == ["tree", "main"]:
            owner, repo = parts[2], parts[3]
            base = os.path.join(Hub.root, owner, repo)
            if not os.path.isdir(base):
                return self.not_found("RepoNotFound", "Repository not found")
            entries = []
            for d, _, names in sorted(os.walk(base)):
                for n in sorted(names):
                    p = os.path.join(d, n)
                    rel = os.path.relpath(p, base)
                    size = os.path.getsize(p)
                    entries.append({"type": "file", "path": rel, "size": size,
                                    "oid": hashlib.sha1(rel.encode()).hexdigest(),
                                    "lfs": {"oid": self.sha256(p), "size": size,
                                            "pointerSize": 134}})
            return self.reply(200, json.dumps(entries).encode())
        if self.command == "GET" and len(parts) >= 4 and parts[0] == "cdn":
            path = self.local(*parts[1:])
            if path is None:
                return self.not_found("EntryNotFound", "Entry not found")
            return self.send_file(path, self.modes(parts[1] + "/" + parts[2]))
        if self.command == "GET" and len(parts) >= 2 and parts[0] == "files":
            path = self.local("files", *parts[1:])
            if path is None:
                return self.reply(404, b"not found\n", "text/plain")
            return self.send_file(path, self.modes("files"))
        self.reply(404, b"not found\n", "text/plain")


def main():
    args = sys.argv[1:]
    limit = 120.0
    if "--time-limit" in args:
        i = args.index("--time-limit")
        limit = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    Hub.root, Hub.log_path = args
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    server.daemon_threads = True
    parent = os.getppid()

    def watchdog():
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

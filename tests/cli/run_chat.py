#!/usr/bin/env python3
"""realm run's chat on a pseudo-terminal, as a person types it.

usage: run_chat.py REALM_BIN MODEL.gguf

Prompts, a streamed reply, /set parameter, a multi-line message between
triple quotes (with the earlier turns taken from the prefix cache), /show,
/clear, Ctrl-C during a reply (the reply stops, the program stays), Ctrl-C at
the prompt, an unknown command, /bye, and Ctrl-D. Every read has a timeout
and the whole test is bounded; on a failure it prints what the terminal
showed and exits 1.
"""
import os
import pty
import re
import select
import signal
import sys
import time

BIN, MODEL = sys.argv[1], sys.argv[2]
DEADLINE = time.monotonic() + 60
PROMPT = ">>> "
checks = 0


class Session:
    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(BIN, [BIN, "run", MODEL, *args])
        self.buf = ""  # output not consumed yet
        self.log = ""  # everything, for failure reports

    def read_some(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the other side is closed
            data = b""
        if not data:
            raise EOFError
        text = data.decode("utf-8", "replace")
        self.buf += text
        self.log += text
        return True

    def expect(self, what, timeout=20):
        """Consume output up to and including the first match of what (a
        string or a compiled regex); return the text before it."""
        end = min(time.monotonic() + timeout, DEADLINE)
        while True:
            if isinstance(what, str):
                i = self.buf.find(what)
                span = (i, i + len(what)) if i >= 0 else None
            else:
                m = what.search(self.buf)
                span = m.span() if m else None
            if span:
                before, self.buf = self.buf[: span[0]], self.buf[span[1] :]
                return before
            left = end - time.monotonic()
            try:
                if left <= 0 or not self.read_some(left):
                    fail(f"timed out waiting for {what!r}")
            except EOFError:
                fail(f"the program ended while waiting for {what!r}")

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=15):
        end = min(time.monotonic() + timeout, DEADLINE)
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:
                self.read_some(0.1)
            except EOFError:
                time.sleep(0.05)
        fail("the program did not exit")


session = None


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    if session is not None:
        print("---- terminal output ----\n" + session.log[-4000:], file=sys.stderr)
        try:
            os.kill(session.pid, signal.SIGKILL)
        except OSError:
            pass
    sys.exit(1)


def check(cond, msg):
    global checks
    checks += 1
    if not cond:
        fail(msg)


session = Session("--verbose", "-n", "48", "-t", "1")
s = session
s.expect(PROMPT)

# A message, its reply streamed, then the prompt again.
s.send("Hello, who are you?\r")
s.expect("Hello, who are you?")  # the terminal's echo
reply = s.expect(PROMPT)
check(re.search(r"turn 1: prompt \d+ tokens", reply), "no turn line after the first reply")
check(len(re.sub(r"turn 1:.*", "", reply).strip()) > 0, "empty first reply")

s.send("/set parameter temperature 0\r")
s.expect("Set parameter 'temperature' to '0'")
s.expect(PROMPT)

# Multi-line input: continuation prompts, one message; the conversation so far
# comes from the prefix cache.
s.send('"""Tell me a story\r')
s.expect("... ")
s.send("about a cat.\r")
s.expect("... ")
s.send('The end."""\r')
reply = s.expect(PROMPT)
m = re.search(r"turn 2: prompt (\d+) tokens, (\d+) cached", reply)
check(m, "no turn line after the multi-line message")
check(int(m.group(2)) > 0, f"turn 2 took nothing from the prefix cache: {m.group(0)}")

s.send("/show\r")
shown = s.expect(PROMPT)
check(re.search(r"temperature\s+0\b", shown), "/show does not show temperature 0")
check("messages         4" in shown, "/show does not count 4 messages")

s.send("/clear\r")
s.expect("Cleared session context")
s.expect(PROMPT)

# Ctrl-C during a long reply stops it and brings the prompt back.
s.send("/set parameter num_predict 1500\r")
s.expect("Set parameter 'num_predict' to '1500'")
s.expect(PROMPT)
s.send("Once upon a time there was a big dog\r")
s.expect("there was a big dog")
s.expect(re.compile(r"\S"))  # the reply has begun
s.send("\x03")
reply = s.expect(PROMPT)
m = re.search(r"turn 3: prompt \d+ tokens, \d+ cached \| reply (\d+) tokens.*\(stopped\)", reply)
check(m, "Ctrl-C did not stop the reply")
check(int(m.group(1)) < 1500, "the stopped reply ran to its end")

# The program is alive: Ctrl-C at the prompt gives a hint, commands still work.
s.send("\x03")
s.expect("Use /bye or Ctrl-D to exit.")
s.expect(PROMPT)
s.send("/show\r")
shown = s.expect(PROMPT)
check("num_predict      1500" in shown, "/show after Ctrl-C")
s.send("/nosuch\r")
s.expect("Unknown command '/nosuch'")
s.expect(PROMPT)
s.send("/bye\r")
check(s.wait() == 0, "/bye did not exit with status 0")

# Ctrl-D at the prompt exits too.
session = s = Session("-n", "8", "-t", "1")
s.expect(PROMPT)
s.send("\x04")
check(s.wait() == 0, "Ctrl-D did not exit with status 0")

print(f"run_chat.py: {checks} checks passed")

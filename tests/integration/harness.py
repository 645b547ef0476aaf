"""harness.py: shared helpers for dualroute's integration tests (Python 3 standard library only).

The tests run the real dualroute-routerd against the fake Anthropic API (tests/fakes/upstream) on
127.0.0.1, both on ports the kernel picks, each in a scratch directory. What is here:

- FakeUpstream: starts fake-upstream, reads its PORT= line, and wraps its control API (queue
  scripts, read recorded requests and stats).
- Routerd: starts dualroute-routerd with per-test arguments and environment, reads the port from
  its "listening on http://127.0.0.1:PORT" line, collects its stderr (a list and a log file), and
  stops it (SIGTERM, wait, SIGKILL past a timeout). It can read the daemon's RSS and fd count.
- http_request(): one request with http.client (duplicate headers allowed, nothing added but Host).
- RawConnection: a raw socket for byte-level checks: half-sent requests, chunked decoding, reading
  an SSE body incrementally with arrival times, detecting that the server closed the connection.
- find_secret_leaks(): every canary key (full, or any 12-character piece of it) in a text.
- RouterTestCase: a unittest.TestCase with a fake per class and routers per test; every router a
  test starts is stopped after it, and its log is checked for leaked keys and sanitizer reports.
- main(): runs a module's tests, ends with a one-line summary, exits non-zero on failure.

Binary paths come from DUALROUTE_ROUTERD and DUALROUTE_FAKE_UPSTREAM (set by CMake), else the
default build directory. Every wait is bounded. DUALROUTE_IT_KEEP=1 keeps the scratch directories.
"""

import atexit
import ctypes
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binary(env_name, default_rel):
    path = os.environ.get(env_name)
    if path:
        return path
    return os.path.join(ROOT, "build", default_rel)


ROUTERD = _binary("DUALROUTE_ROUTERD", "routerd/dualroute-routerd")
FAKE_UPSTREAM = _binary("DUALROUTE_FAKE_UPSTREAM", "tests/fakes/fake-upstream")
FAKE_OAUTH = _binary("DUALROUTE_FAKE_OAUTH", "tests/fakes/fake-oauth")


def _canary(label, prefix="sk-ant-api03-"):
    """A key-shaped string that appears nowhere else, so finding it in a log is a leak."""
    tail = hashlib.sha256(label.encode()).hexdigest()[:40]
    return prefix + tail[:6] + label + tail[6:] + "AA"


# Canary keys. Every routerd log the tests produce is checked for each of them.
ROUTER_KEY = _canary("RouterKey")
CLIENT_KEY = _canary("ClientKey")
CLIENT_BEARER_KEY = _canary("ClientBearer")
SUBSCRIPTION_TOKEN = _canary("Subscription", prefix="sk-ant-oat01-")
FILE_KEY = _canary("FileKey")
BODY_KEY = _canary("InBodyKey")
SECRETS = [ROUTER_KEY, CLIENT_KEY, CLIENT_BEARER_KEY, SUBSCRIPTION_TOKEN, FILE_KEY, BODY_KEY]
# The public parts of keys (documented prefixes, shown in logs by design).
PUBLIC_PREFIXES = ["sk-ant-api03-", "sk-ant-oat01-"]

SANITIZED = None


def routerd_sanitized():
    """True when dualroute-routerd was built with AddressSanitizer (slower, more memory)."""
    global SANITIZED
    if SANITIZED is None:
        try:
            with open(ROUTERD, "rb") as f:
                SANITIZED = b"__asan_init" in f.read()
        except OSError:
            SANITIZED = False
    return SANITIZED


def now_ms():
    """Wall-clock milliseconds, the clock fake-upstream's received_at_ms/ended_at_ms use."""
    return time.time() * 1000.0


def wait_until(fn, timeout, interval=0.05, message="condition"):
    """Calls fn until it returns a true value; returns it, or raises AssertionError at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, message))
        time.sleep(interval)


# --- secrets -------------------------------------------------------------------------------------


def find_secret_leaks(text, secrets=None, window=12):
    """Returns a list of (secret, piece) for every canary found in text: the whole key, or any
    window-character piece of it holding at least 4 characters past its public prefix (pieces
    made mostly of "sk-ant-api03-" are shared by every key)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    leaks = []
    for secret in secrets if secrets is not None else SECRETS:
        if secret in text:
            leaks.append((secret, secret))
            continue
        public = max((len(p) for p in PUBLIC_PREFIXES if secret.startswith(p)), default=0)
        for i in range(max(0, public + 4 - window), len(secret) - window + 1):
            piece = secret[i:i + window]
            if piece in text:
                leaks.append((secret, piece))
                break
    return leaks


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "LeakSanitizer has encountered",
                     "AddressSanitizer:DEADLYSIGNAL")


# --- processes -----------------------------------------------------------------------------------


def _base_env(extra=None):
    """A clean environment: nothing from the caller's shell (no ANTHROPIC_API_KEY, ROUTER_PORT,
    CREDENTIALS_DIRECTORY, NOTIFY_SOCKET) except PATH, locale and sanitizer options."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


_children = []


def _child_setup():
    """In the child before exec: die with the test process (PR_SET_PDEATHSIG), so a test killed by
    ctest's timeout leaves no daemon behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(cmd, **kw):
    proc = subprocess.Popen(cmd, preexec_fn=_child_setup, start_new_session=True, **kw)
    _children.append(proc)
    return proc


@atexit.register
def _kill_children():
    for proc in _children:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signals proc and waits; past timeout sends SIGINT (a second stop signal) and waits 3 s more,
    then SIGKILL. Returns (returncode, forced): forced when sig alone did not end it."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        pass
    try:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=3), True
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10), True


def _read_port_line(proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    line = b""
    fd = proc.stdout.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError("no PORT= line (got %r)" % line)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            b = os.read(fd, 1)
            if b:
                line += b
    m = re.match(rb"PORT=(\d+)", line)
    if not m:
        raise RuntimeError("printed %r" % line)
    return int(m.group(1))


class FakeUpstream:
    """fake-upstream on 127.0.0.1, port picked by the kernel."""

    def __init__(self, workdir, args=()):
        self.workdir = workdir
        self.args = list(args)
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(workdir, "fake-upstream.%d.err" % id(self))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        if not os.access(FAKE_UPSTREAM, os.X_OK):
            raise RuntimeError("fake-upstream not found at %s (set DUALROUTE_FAKE_UPSTREAM)"
                               % FAKE_UPSTREAM)
        self._err = open(self.stderr_path, "wb")
        self.proc = _spawn([FAKE_UPSTREAM, "--port", "0"] + self.args,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
                           env=_base_env())
        try:
            self.port = _read_port_line(self.proc, timeout)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError("fake-upstream: %s" % e)
        self._lock = threading.Lock()
        self._conn = None
        self.stats()  # opens the control connection
        return self

    def stop(self):
        if self.proc is None:
            return None
        if getattr(self, "_conn", None):
            self._conn.close()
            self._conn = None
        rc, _ = _stop_process(self.proc, timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()
        self.proc = None
        return rc

    # Control API, over one kept-alive connection so that control calls do not show in the
    # connection counts of /_fake/stats.
    def _call(self, method, path, body=None, timeout=15.0):
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                            timeout=timeout)
                try:
                    self._conn.request(method, path, body=data, headers=headers)
                    resp = self._conn.getresponse()
                    raw = resp.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    self._conn.close()
                    self._conn = None
                    if attempt:
                        raise
        if resp.status != 200:
            raise RuntimeError("fake %s %s -> %d %s" % (method, path, resp.status, raw[:300]))
        return json.loads(raw)

    def queue(self, *scripts):
        """Queues scripts (dicts) for the next API requests, oldest first."""
        return self._call("POST", "/_fake/queue", list(scripts))

    def clear_queue(self):
        return self._call("DELETE", "/_fake/queue")

    def requests(self):
        return self._call("GET", "/_fake/requests")

    def clear_requests(self):
        return self._call("DELETE", "/_fake/requests")

    def reset(self):
        self.clear_queue()
        self.clear_requests()

    def stats(self):
        return self._call("GET", "/_fake/stats")

    def wait_requests(self, n=1, timeout=10.0):
        """Waits until at least n requests are recorded; returns the records."""
        return wait_until(lambda: (lambda r: r if len(r) >= n else None)(self.requests()), timeout,
                          message="%d upstream request(s)" % n)

    def wait_ended(self, n=1, timeout=10.0):
        """Waits until at least n recorded requests have ended; returns the records."""
        def done():
            recs = self.requests()
            return recs if sum(1 for r in recs if r.get("ended")) >= n else None
        return wait_until(done, timeout, message="%d upstream request(s) to end" % n)


LISTEN_RE = re.compile(r"listening on http://(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")


class FakeOAuth:
    """fake-oauth on 127.0.0.1 with its /_fake/ control API."""

    def __init__(self, workdir):
        self.workdir = workdir

    def start(self):
        if not os.access(FAKE_OAUTH, os.X_OK):
            raise unittest.SkipTest("fake-oauth not built (%s)" % FAKE_OAUTH)
        self._err = open(os.path.join(self.workdir, "fake-oauth.err"), "wb")
        self.proc = _spawn([FAKE_OAUTH, "--port", "0"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=self._err, env=_base_env())
        self.port = _read_port_line(self.proc)
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                      headers={"Content-Type": "application/json"} if body is not None else {})
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        if r.status != 200:
            raise RuntimeError("fake-oauth %s %s -> %d %r" % (method, path, r.status, data))
        return json.loads(data)

    def stop(self):
        _stop_process(self.proc)
        self.proc.stdout.close()
        self._err.close()


class Routerd:
    """One dualroute-routerd process. stderr is collected line by line into .lines and a file."""

    def __init__(self, workdir, args=(), env=None, key=ROUTER_KEY, upstream=None, port_arg=True,
                 name="routerd"):
        self.workdir = workdir
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.key = key
        self.upstream = upstream
        self.port_arg = port_arg
        self.name = name
        self.proc = None
        self.port = None
        self.address = None
        self.lines = []
        self.cond = threading.Condition()
        self.log_path = os.path.join(workdir, "%s.%d.log" % (name, id(self)))
        self.returncode = None
        self.killed = False
        self._reader = None

    def command(self):
        cmd = [ROUTERD]
        if self.port_arg is True:
            cmd += ["-p", "0"]
        elif self.port_arg:
            cmd += ["-p", str(self.port_arg)]
        if self.upstream:
            cmd += ["--upstream", self.upstream]
        return cmd + self.args

    def environment(self):
        extra = {}
        if self.key is not None:
            extra["ANTHROPIC_API_KEY"] = self.key
        extra.update(self.extra_env)
        return _base_env(extra)

    def start(self, timeout=10.0, wait=True):
        if not os.access(ROUTERD, os.X_OK):
            raise RuntimeError("dualroute-routerd not found at %s (set DUALROUTE_ROUTERD)"
                               % ROUTERD)
        self._log = open(self.log_path, "wb")
        self.proc = _spawn(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=self.environment(), cwd=self.workdir)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait == "connect":
            # For modes that do not log the port (-q): poll the port given with port_arg.
            self.port = int(self.port_arg)
            self.address = "127.0.0.1"

            def accepting():
                if self.proc.poll() is not None:
                    raise AssertionError("routerd exited with %s:\n%s"
                                         % (self.proc.returncode, self.log_text()))
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return True
                except OSError:
                    return False
            wait_until(accepting, timeout, message="routerd to accept on port %d" % self.port)
        elif wait:
            m = self.wait_for_log(LISTEN_RE, timeout=timeout)
            self.address = m.group(1).strip("[]")
            self.port = int(m.group(2))
        return self

    def _read(self):
        f = self.proc.stdout
        for raw in iter(f.readline, b""):
            self._log.write(raw)
            self._log.flush()
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def log_text(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern, timeout=10.0, start=0):
        """Waits for a log line (from index start) matching pattern; returns the match. Fails if the
        process exits first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not self._reader.is_alive()
                if left <= 0 or exited:
                    raise AssertionError("routerd log never matched %r (%s); log:\n%s" % (
                        rx.pattern, "process exited with %s" % self.proc.returncode if exited
                        else "timeout %.1f s" % timeout, "\n".join(self.lines[-40:])))
                self.cond.wait(min(left, 0.2))

    def log_mark(self):
        """The current number of log lines, to look only at lines after this point."""
        with self.cond:
            return len(self.lines)

    def lines_since(self, mark):
        with self.cond:
            return list(self.lines[mark:])

    @property
    def pid(self):
        return self.proc.pid

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for the process to exit; returns its status or None at timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finish_reader()
        return self.returncode

    def _finish_reader(self):
        if self._reader:
            self._reader.join(timeout=5)
        if not self._log.closed:
            self._log.close()

    def stop(self, sig=signal.SIGTERM, timeout=8.0):
        """Stops the process: sig, then (past timeout) a second stop signal, which makes routerd
        exit without waiting for its drain, then SIGKILL. Returns the exit status; .killed says
        whether the first signal was not enough (a failure for tests that check the exit)."""
        if self.proc is None:
            return None
        if self.returncode is None:
            self.returncode, self.killed = _stop_process(self.proc, sig, timeout)
        self._finish_reader()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.returncode

    # /proc readings.
    def proc_status(self, field):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
        return None

    def rss_kb(self):
        return int(self.proc_status("VmRSS").split()[0])

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


def run_routerd(args, env=None, key=ROUTER_KEY, timeout=15.0, cwd=None):
    """Runs dualroute-routerd to completion (for --check-config, refusals and the like). Returns
    (returncode, stdout, stderr) as text."""
    extra = {}
    if key is not None:
        extra["ANTHROPIC_API_KEY"] = key
    extra.update(env or {})
    p = subprocess.run([ROUTERD] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       env=_base_env(extra), timeout=timeout, cwd=cwd)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def free_port():
    """A port free at the time of the call (for tests that must name a port themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


# --- HTTP ---------------------------------------------------------------------------------------


class Response:
    def __init__(self, status, reason, headers, body, elapsed=0.0):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), as received
        self.body = body
        self.elapsed = elapsed

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:500])


def http_request(port, method, path, body=None, headers=(), timeout=20.0, host="127.0.0.1"):
    """One request with http.client. headers is a list of (name, value) (duplicates allowed) or a
    dict; only Host (and Content-Length for a body) is added. body: bytes, str or a JSON value."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers)
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        names = {k.lower() for k, _ in headers}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names and \
                "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.getheaders(), data,
                        time.monotonic() - t0)
    finally:
        conn.close()


ANTHROPIC_HEADERS = [("content-type", "application/json"), ("anthropic-version", "2023-06-01")]


def messages_body(stream=False, model="claude-sonnet-4-5", **extra):
    body = {"model": model, "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


class PeerClosed(Exception):
    pass


class RawConnection:
    """A plain TCP connection for byte-level HTTP checks."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a reset (SO_LINGER 0), as a killed client would."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                 b"\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline, size=65536):
        """Reads more bytes into buf; returns False on EOF. Raises socket.timeout at deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            b = self.sock.recv(size)
        except ConnectionResetError:
            b = b""
        if not b:
            self.eof = True
            return False
        self.buf += b
        return True

    def send_background(self, data):
        """Sends data from a thread (so the response can be read while the server refuses the
        rest); returns the thread. Errors from a server that closed early are ignored."""
        if isinstance(data, str):
            data = data.encode()

        def run():
            try:
                self.sock.sendall(data)
            except OSError:
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def read_head(self, timeout=None):
        """Reads a status line and headers; returns (status, headers list). Raises PeerClosed if the
        server closes first."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise PeerClosed("connection closed before a response head (got %r)" % self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        self.head = (status, headers)
        return status, headers

    @staticmethod
    def _hget(headers, name):
        for k, v in headers:
            if k.lower() == name:
                return v
        return None

    def iter_body(self, headers, timeout=None, max_recv=65536, status=200):
        """Yields (monotonic time, bytes) for the body as it arrives, decoding chunked encoding.
        timeout bounds each wait for more bytes. Ends at the end of the body (or at EOF for a body
        delimited by the close); raises PeerClosed when a framed body is cut short."""
        wait = timeout if timeout is not None else self.timeout
        te = (self._hget(headers, "transfer-encoding") or "").lower()
        cl = self._hget(headers, "content-length")

        def more():
            return self._fill(time.monotonic() + wait, max_recv)

        if status in (204, 304) or 100 <= status < 200:
            return
        if "chunked" in te:
            while True:
                while b"\r\n" not in self.buf:
                    if not more():
                        raise PeerClosed("EOF in chunk size line")
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Trailers, then an empty line.
                    while True:
                        while b"\r\n" not in self.buf:
                            if not more():
                                raise PeerClosed("EOF in trailers")
                        line, self.buf = self.buf.split(b"\r\n", 1)
                        if line == b"":
                            return
                left = size
                while left > 0:
                    if not self.buf:
                        if not more():
                            raise PeerClosed("EOF inside a chunk")
                    piece = self.buf[:left]
                    self.buf = self.buf[len(piece):]
                    left -= len(piece)
                    yield time.monotonic(), piece
                while len(self.buf) < 2:
                    if not more():
                        raise PeerClosed("EOF after chunk data")
                if self.buf[:2] != b"\r\n":
                    raise AssertionError("bad chunk terminator %r" % self.buf[:10])
                self.buf = self.buf[2:]
        elif cl is not None:
            left = int(cl)
            while left > 0:
                if not self.buf:
                    if not more():
                        raise PeerClosed("EOF with %d body bytes missing" % left)
                piece = self.buf[:left]
                self.buf = self.buf[len(piece):]
                left -= len(piece)
                yield time.monotonic(), piece
        else:
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield time.monotonic(), piece
                if not more():
                    return

    def read_body(self, headers, timeout=None, status=200):
        return b"".join(p for _, p in self.iter_body(headers, timeout, status=status))

    def read_response(self, timeout=None):
        status, headers = self.read_head(timeout)
        body = self.read_body(headers, timeout, status=status)
        return Response(status, "", headers, body)

    def request(self, method, path, body=None, headers=(), timeout=None):
        """Sends a complete request (Host and Content-Length added) and reads the response."""
        self.send(build_request(method, path, body, headers))
        return self.read_response(timeout)

    def wait_closed(self, timeout):
        """Waits up to timeout for the server to close the connection (EOF or reset), discarding
        anything it sends. Returns the time it took, or None if still open."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            while self._fill(deadline):
                pass
        except socket.timeout:
            return None
        except OSError:
            pass
        return time.monotonic() - t0


def build_request(method, path, body=None, headers=(), host="127.0.0.1"):
    if isinstance(headers, dict):
        headers = list(headers.items())
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    names = {k.lower() for k, _ in headers}
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked_encode(data, size=8192):
    out = []
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def parse_sse(data):
    """Splits an SSE body into a list of (event, data) pairs."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    events = []
    for block in data.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, datas = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                datas.append(line[5:].lstrip(" "))
        events.append((event, "\n".join(datas)))
    return events


def sse_event(name, data):
    return "event: %s\ndata: %s\n\n" % (name, json.dumps(data, separators=(",", ":")))


def sse_transcript(n_deltas=5, text="word", input_tokens=28, output_tokens=19, stop=True):
    """A complete (or, stop=False, unfinished) Messages stream as a list of SSE events."""
    ev = [sse_event("message_start", {"type": "message_start", "message": {
        "id": "msg_it", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
          sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})]
    for i in range(n_deltas):
        ev.append(sse_event("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "%s %d " % (text, i)}}))
    ev.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    ev.append(sse_event("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": output_tokens}}))
    if stop:
        ev.append(sse_event("message_stop", {"type": "message_stop"}))
    return ev


def assert_anthropic_error(tc, resp, status, etype=None):
    """resp is an Anthropic-shaped error with this status (and error type)."""
    tc.assertEqual(resp.status, status, resp)
    body = resp.json()
    tc.assertEqual(body.get("type"), "error", body)
    tc.assertIsInstance(body.get("error"), dict, body)
    tc.assertIsInstance(body["error"].get("message"), str, body)
    tc.assertTrue(body["error"]["message"], body)
    if etype:
        tc.assertEqual(body["error"].get("type"), etype, body)
    tc.assertTrue((resp.header("content-type") or "").startswith("application/json"), resp)
    return body


def assert_openai_error(tc, resp, status):
    tc.assertEqual(resp.status, status, resp)
    body = resp.json()
    tc.assertNotIn("type", body, body)
    err = body.get("error")
    tc.assertIsInstance(err, dict, body)
    for k in ("message", "type", "param", "code"):
        tc.assertIn(k, err, body)
    tc.assertTrue(err["message"], body)
    return body


# --- test case base -------------------------------------------------------------------------------


class RouterTestCase(unittest.TestCase):
    """One fake upstream per class (reset before each test); routers started per test with
    start_router() are stopped after the test, and their logs must hold no canary key and no
    sanitizer report."""

    fake_args = ()

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="dualroute-it-")
        cls.fake = FakeUpstream(cls.workdir, cls.fake_args).start()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        if not os.environ.get("DUALROUTE_IT_KEEP"):
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def setUp(self):
        self.fake.reset()
        self.routers = []

    def start_router(self, *args, env=None, key=ROUTER_KEY, upstream="fake", port_arg=True,
                     wait=True, check_exit=True):
        """Starts routerd (upstream "fake" = this class's fake). Stopped after the test; with
        check_exit, its exit status after SIGTERM must be 0."""
        if upstream == "fake":
            upstream = self.fake.url
        r = Routerd(self.workdir, args, env=env, key=key, upstream=upstream, port_arg=port_arg,
                    name=self.id().rsplit(".", 1)[-1])
        self.routers.append(r)
        self.addCleanup(self._finish_router, r, check_exit)
        r.start(wait=wait)
        return r

    def _finish_router(self, r, check_exit):
        rc = r.stop()
        log = r.log_text()
        leaks = find_secret_leaks(log)
        self.assertEqual(leaks, [], "secret(s) leaked into the routerd log %s" % r.log_path)
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, log, "sanitizer report in %s:\n%s" % (r.log_path, log[-4000:]))
        if check_exit:
            self.assertFalse(r.killed, "routerd did not exit within 8 s of SIGTERM once the test's "
                             "clients were gone; log:\n%s" % log[-3000:])
            self.assertEqual(rc, 0, "routerd exited with %s; log:\n%s" % (rc, log[-3000:]))

    def request(self, router, method, path, body=None, headers=(), timeout=20.0):
        return http_request(router.port, method, path, body, headers, timeout)

    def assertNoUpstreamCall(self, settle=0.3):
        time.sleep(settle)
        self.assertEqual(self.fake.requests(), [], "the upstream was called")


class SharedRouterTestCase(RouterTestCase):
    """One routerd for the whole class (router_args), for tests that need no special setup."""

    router_args = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.router = Routerd(cls.workdir, cls.router_args, upstream=cls.fake.url,
                                 name=cls.__name__).start()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.router.stop()
        log = cls.router.log_text()
        killed = cls.router.killed
        super().tearDownClass()
        leaks = find_secret_leaks(log)
        problems = [m for m in SANITIZER_MARKERS if m in log]
        if rc != 0 or killed or leaks or problems:
            raise AssertionError("shared routerd: exit %s%s, leaked %r, sanitizer %r; log:\n%s"
                                 % (rc, " (forced)" if killed else "", leaks, problems,
                                    log[-3000:]))

    def setUp(self):
        super().setUp()
        self.routers = [self.router]


# --- runner ---------------------------------------------------------------------------------------


class _Result(unittest.TextTestResult):
    """Adds the tail of each running router's log to a failure report."""

    def _exc_info_to_string(self, err, test):
        text = super()._exc_info_to_string(err, test)
        for r in getattr(test, "routers", []) or []:
            tail = "\n".join(r.lines[-30:]) if r.lines else "(empty)"
            text += "\n--- routerd log %s (last lines) ---\n%s\n" % (r.log_path, tail)
        return text


def main():
    """Runs the calling module's tests; the last line is a summary; exit status 1 on failure."""
    module = sys.modules["__main__"]
    name = os.path.splitext(os.path.basename(module.__file__))[0]
    argv = sys.argv[1:]
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv, module)
    else:
        suite = loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result, stream=sys.stderr)
    t0 = time.monotonic()
    result = runner.run(suite)
    failed = len({t.id() for t, _ in result.failures + result.errors}) + \
        len(result.unexpectedSuccesses)
    ok = result.wasSuccessful() and result.testsRun > 0
    sys.stderr.flush()
    print("integration/%s: %s: %d run, %d failed, %d skipped in %.1f s (routerd %s%s)" % (
        name, "PASS" if ok else "FAIL", result.testsRun, failed, len(result.skipped),
        time.monotonic() - t0, ROUTERD, ", ASan" if routerd_sanitized() else ""), flush=True)
    sys.exit(0 if ok else 1)

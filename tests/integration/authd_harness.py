"""authd_harness.py: helpers for tests that talk to dualroute-authd (Python 3 standard library only).

- encode_frame() / FrameReader: docs/ipc.md's framing (u32 big-endian length, one JSON object).
- IpcClient: a blocking client on authd's Unix socket: request() sends one request and returns its
  reply (collecting events that arrive meanwhile), plus raw sends for protocol tests.
- Authd: starts dualroute-authd with --state-dir in a scratch directory, waits until its socket
  accepts connections, collects its stderr into a log file, and stops it (SIGTERM, or SIGKILL).

Binary path: DUALROUTE_AUTHD (set by CMake), else build-authd/ then build/. Every wait is bounded.
DUALROUTE_IT_KEEP=1 keeps the scratch directories.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAME_MAX = 65536


def _authd_binary():
    path = os.environ.get("DUALROUTE_AUTHD")
    if path:
        return path
    for d in ("build-authd", "build"):
        p = os.path.join(ROOT, d, "authd", "dualroute-authd")
        if os.path.exists(p):
            return p
    return os.path.join(ROOT, "build", "authd", "dualroute-authd")


AUTHD = _authd_binary()


# --- framing -------------------------------------------------------------------------------------


def encode_frame(msg):
    """One frame: a dict is sent as compact JSON; bytes are sent as the body as they are."""
    body = msg if isinstance(msg, (bytes, bytearray)) else json.dumps(
        msg, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + bytes(body)


class FrameError(Exception):
    pass


class FrameReader:
    """Cuts a byte stream into decoded messages."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data

    def next(self):
        """The next message (a dict), or None when more bytes are needed."""
        if len(self.buf) < 4:
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        if n == 0 or n > FRAME_MAX:
            raise FrameError("frame length %d" % n)
        if len(self.buf) < 4 + n:
            return None
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        msg = json.loads(body.decode("utf-8"))
        if not isinstance(msg, dict) or msg.get("v") != 1:
            raise FrameError("not a v1 object: %r" % (msg,))
        return msg


class PeerClosed(Exception):
    pass


class IpcClient:
    """A blocking client on authd's socket. Replies are matched by id; events are kept in
    self.events."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        self.reader = FrameReader()
        self.next_id = 1
        self.replies = {}
        self.events = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, msg):
        self.sock.sendall(encode_frame(msg))

    def _read_some(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message from authd in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise PeerClosed()
        self.reader.feed(data)

    def read_message(self, timeout=None):
        """The next message of any kind."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self.reader.next()
            if msg is not None:
                return msg
            self._read_some(deadline)

    def _take(self, msg):
        if "event" in msg:
            self.events.append(msg)
        else:
            self.replies[msg.get("id")] = msg

    def wait_reply(self, rid, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while rid not in self.replies:
            self._take(self.read_message(max(0.001, deadline - time.monotonic())))
        return self.replies.pop(rid)

    def wait_event(self, name, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("event") == name:
                    return self.events.pop(i)
            self._take(self.read_message(max(0.001, deadline - time.monotonic())))

    def start(self, op, **fields):
        """Sends a request; returns its id."""
        rid = self.next_id
        self.next_id += 1
        msg = {"v": 1, "op": op, "id": rid}
        msg.update(fields)
        self.send(msg)
        return rid

    def request(self, op, **fields):
        """Sends one request and returns its reply (a dict)."""
        return self.wait_reply(self.start(op, **fields))

    def call(self, op, **fields):
        """request(), but raises AssertionError unless the reply is ok."""
        reply = self.request(op, **fields)
        if reply.get("ok") is not True:
            raise AssertionError("%s failed: %r" % (op, reply.get("error")))
        return reply

    def is_closed(self, timeout=5.0):
        """True when authd closes the connection within timeout (pending bytes are drained)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (socket.timeout, TimeoutError):
            return False
        return False


# --- the daemon ----------------------------------------------------------------------------------


class Authd:
    """dualroute-authd in a scratch directory: state in <dir>/state unless state_dir is given."""

    def __init__(self, args=(), state_dir=None, workdir=None, env=None, socket_path=None):
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="dualroute-authd-")
        self.state_dir = state_dir or os.path.join(self.workdir, "state")
        self.socket_path = socket_path or os.path.join(self.state_dir, "authd.sock")
        self.db_path = os.path.join(self.state_dir, "authd.db")
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        self.env.update(env or {})
        self.proc = None
        self.log_path = os.path.join(self.workdir, "authd-%d.log" % int(time.time() * 1000))
        self._log = None
        self._pump = None

    def command(self):
        return [AUTHD, "--state-dir", self.state_dir, "-V"] + self.args

    def start(self, timeout=10.0):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dualroute-authd exited with %s:\n%s" %
                                     (self.proc.returncode, self.log()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket_path)
                s.close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("dualroute-authd did not listen within %.0f s:\n%s" %
                             (timeout, self.log()))

    def client(self, timeout=10.0):
        return IpcClient(self.socket_path, timeout)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and waits; returns the exit code (SIGKILL after timeout)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self._log:
            self._log.close()
            self._log = None
        if self.own_workdir and not os.environ.get("DUALROUTE_IT_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

"""pkgtest.py: helpers of the packaging tests (Python 3 standard library only).

- install(): 'cmake --install' of the build directory into a scratch directory, either with
  DESTDIR (the layout a package gets, prefix /usr) or with the prefix itself in the scratch
  directory (so that the units' ExecStart= paths exist on this machine).
- NotifySocket: what systemd is to a Type=notify service: an AF_UNIX datagram socket that the
  daemon finds in NOTIFY_SOCKET; it collects every message (READY=1, STOPPING=1, WATCHDOG=1, ...).
- The build and source directories come from DUALROUTE_BUILD_DIR and DUALROUTE_SOURCE_DIR (CMake
  sets them); the binaries, as for the integration tests, from DUALROUTE_ROUTERD and friends.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("DUALROUTE_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
BUILD_DIR = os.environ.get("DUALROUTE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

UNITS = ["dualroute-authd.service", "dualroute-authd.socket", "dualroute-routerd.service",
         "dualroute-routerd.socket"]


def scratch(prefix):
    d = tempfile.mkdtemp(prefix="dualroute-%s-" % prefix)
    if not os.environ.get("DUALROUTE_IT_KEEP"):
        import atexit
        atexit.register(shutil.rmtree, d, True)
    return d


def install(root, destdir=True):
    """Installs the build into root. destdir: DESTDIR=root with prefix /usr (files under
    root/usr and root/etc); else prefix root/usr. Returns the prefix as the files see it."""
    env = dict(os.environ)
    if destdir:
        env["DESTDIR"] = root
        prefix = "/usr"
    else:
        env.pop("DESTDIR", None)
        prefix = os.path.join(root, "usr")
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    return prefix


class NotifySocket:
    """An AF_UNIX SOCK_DGRAM socket standing in for systemd's notification socket."""

    serial = 0

    def __init__(self, workdir):
        NotifySocket.serial += 1
        self.path = os.path.join(workdir, "notify-%d.sock" % NotifySocket.serial)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, {key: value}) in arrival order

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _pump(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        self.messages.append((time.monotonic(), fields))

    def wait(self, key, value="1", timeout=10.0, after=0):
        """Waits for a message (past index `after`) with key=value; returns its index."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if self.messages[i][1].get(key) == value:
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s=%s from the daemon within %.1f s; got %r" %
                                     (key, value, timeout, [m for _, m in self.messages]))
            self._pump(left)

    def collect(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())

    def count(self, key, value="1", after=0):
        return sum(1 for _, m in self.messages[after:] if m.get(key) == value)

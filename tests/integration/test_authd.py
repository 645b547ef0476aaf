"""test_authd.py: dualroute-authd's socket server and ops, driven over its real Unix socket.

Each test starts its own authd with --state-dir in a scratch directory (authd_harness.Authd) and
talks docs/ipc.md to it. Every authd log is scanned for every secret the tests sent."""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from authd_harness import AUTHD, Authd, IpcClient, encode_frame  # noqa: E402


def canary(label):
    tail = hashlib.sha256(label.encode()).hexdigest()[:40]
    return "sk-ant-api03-" + tail[:6] + label + tail[6:] + "AA"


KEY_WORK = canary("AuthdWork")
KEY_DUP = canary("AuthdDuplicate")
KEY_GARBAGE = canary("AuthdGarbageFrame")
KEY_CRASH = canary("AuthdCrash")
SECRETS = [KEY_WORK, KEY_DUP, KEY_GARBAGE, KEY_CRASH]


def fingerprint(s):
    return hashlib.sha256(s.encode()).hexdigest()[:8]


def usage_record(rid, **over):
    r = {"request_id": rid, "at_ms": 1767229200000, "model": "claude-sonnet-4-5",
         "account": "work", "endpoint": "anthropic", "status": 200, "input_tokens": 10,
         "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0,
         "latency_ms": 123, "cost_micro_usd": 456}
    r.update(over)
    return r


class AuthdTestCase(unittest.TestCase):
    def setUp(self):
        self.daemons = []

    def start_authd(self, **kw):
        a = Authd(**kw)
        self.daemons.append(a)
        return a.start()

    def tearDown(self):
        for a in self.daemons:
            a.stop()
            log = a.log()
            leaks = harness.find_secret_leaks(log, SECRETS)
            a.cleanup()
            self.assertEqual(leaks, [], "a secret appears in authd's log")
            for marker in harness.SANITIZER_MARKERS:
                self.assertNotIn(marker, log)


class TestDaemon(AuthdTestCase):
    def test_file_modes(self):
        a = self.start_authd()
        self.assertEqual(stat.S_IMODE(os.stat(a.state_dir).st_mode), 0o700)
        st = os.stat(a.socket_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(stat.S_IMODE(os.stat(a.db_path).st_mode), 0o600)

    def test_sigterm_exits_0_and_removes_socket(self):
        a = self.start_authd()
        with a.client() as c:
            c.call("hello")
            self.assertEqual(a.stop(signal.SIGTERM), 0)
            self.assertTrue(c.is_closed())
        self.assertFalse(os.path.exists(a.socket_path))
        self.assertIn("stopping", a.log())

    def test_stale_socket_is_replaced(self):
        a = self.start_authd()
        a.kill()
        self.assertTrue(os.path.exists(a.socket_path))  # SIGKILL leaves it behind
        a.start()
        with a.client() as c:
            c.call("hello")

    def test_refuses_a_second_instance(self):
        a = self.start_authd()
        second = subprocess.run([AUTHD, "--state-dir", a.state_dir], capture_output=True,
                                timeout=10, cwd=a.workdir)
        self.assertEqual(second.returncode, 1)
        self.assertIn(b"listening", second.stderr)
        with a.client() as c:
            c.call("hello")

    def test_check_and_dump_config(self):
        r = subprocess.run([AUTHD, "--check-config", "--set", "max_connections_per_uid=3"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Configuration OK", r.stdout)
        r = subprocess.run([AUTHD, "--dump-config", "--set", "admin_group=ops"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b'admin_group = "ops"', r.stdout)
        self.assertIn(b"max_connections_per_uid = 16", r.stdout)
        r = subprocess.run([AUTHD, "--check-config", "--set", "no_such_key=1"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no_such_key", r.stderr)
        r = subprocess.run([AUTHD, "--version"], capture_output=True, timeout=10)
        self.assertEqual(r.stdout.strip(), b"dualroute-authd 0.1.0")

    def test_config_file_and_precedence(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "authd.conf")
            with open(conf, "w") as f:
                f.write("router_user = from-file\nadmin_group = from-file\n")
            r = subprocess.run([AUTHD, "--config", conf, "--set", "admin_group=from-cli",
                                "--dump-config"], capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b'router_user = "from-file"', r.stdout)
            self.assertIn(b'admin_group = "from-cli"', r.stdout)
            with open(conf, "w") as f:
                f.write("router_user = x\nbogus = 1\n")
            r = subprocess.run([AUTHD, "--config", conf, "--check-config"], capture_output=True,
                               timeout=10)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"authd.conf:2", r.stderr)


class TestOps(AuthdTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_authd()
        self.c = self.a.client()

    def tearDown(self):
        self.c.close()
        super().tearDown()

    def test_hello(self):
        r = self.c.call("hello", client="test_authd", client_version="1",
                        subscribe=["generation", "no.such.event"])
        self.assertEqual(r["protocol"], 1)
        self.assertEqual(r["authd_version"], "0.1.0")
        self.assertEqual(sorted(r["roles"]), ["admin", "router"])
        self.assertIs(r["dev_mode"], True)
        self.assertEqual(r["uid"], os.geteuid())
        self.assertEqual(r["subscribed"], ["generation"])

    def test_account_add_list_token_remove(self):
        r = self.c.call("account.add", name="work", provider="anthropic", auth="api_key",
                        api_key=KEY_WORK)
        acct = r["account"]
        self.assertEqual(acct["name"], "work")
        self.assertEqual(acct["provider"], "anthropic")
        self.assertEqual(acct["auth"], "api_key")
        self.assertEqual(acct["state"], "ok")
        self.assertEqual(acct["fingerprint"], fingerprint(KEY_WORK))

        r = self.c.request("account.add", name="work", provider="anthropic", auth="api_key",
                           api_key=KEY_DUP)
        self.assertEqual(r["error"]["code"], "exists")

        self.c.send_raw(encode_frame({"v": 1, "op": "account.list", "id": 99}))
        raw = self.c.sock.recv(65536)
        self.assertNotIn(KEY_WORK.encode(), raw)
        self.assertNotIn(KEY_WORK[20:36].encode(), raw)
        self.c.reader.feed(raw)
        lst = self.c.wait_reply(99)
        self.assertTrue(lst["ok"])
        self.assertEqual([x["name"] for x in lst["accounts"]], ["work"])
        self.assertEqual(lst["accounts"][0]["fingerprint"], fingerprint(KEY_WORK))

        st = self.c.call("status")
        self.assertNotIn(KEY_WORK, json.dumps(st))
        self.assertEqual(st["accounts"][0]["fingerprint"], fingerprint(KEY_WORK))

        # token.get goes through the credential manager (authd/cred.c).
        tok = self.c.request("token.get", account="work")
        self.assertTrue(tok["ok"], tok)
        self.assertEqual(tok["kind"], "api_key")
        self.assertEqual(tok["provider"], "anthropic")
        self.assertEqual(tok["account"], "work")
        self.assertEqual(tok["api_key"], KEY_WORK)

        self.c.call("account.remove", name="work")
        self.assertEqual(self.c.call("account.list")["accounts"], [])
        r = self.c.request("account.remove", name="work")
        self.assertEqual(r["error"]["code"], "not_found")

    def test_account_add_bad_fields(self):
        r = self.c.request("account.add", name="Bad Name", provider="anthropic", auth="api_key",
                           api_key=KEY_DUP)
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("name", r["error"]["message"])
        r = self.c.request("account.add", name="x", provider="anthropic", auth="api_key")
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("api_key", r["error"]["message"])
        r = self.c.request("account.add", name="x", provider="openai", auth="api_key",
                           api_key=KEY_DUP)
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertNotIn(KEY_DUP, json.dumps(r))

    def test_maps_and_generation_event(self):
        sub = self.a.client()
        try:
            self.assertEqual(sub.call("hello", subscribe=["generation"])["subscribed"],
                             ["generation"])
            g0 = self.c.call("status")["generation"]
            r = self.c.call("map.set", name="gpt-4o", model="claude-sonnet-4-5")
            self.assertGreater(r["generation"], g0)
            ev = sub.wait_event("generation")
            self.assertEqual(ev, {"v": 1, "event": "generation", "generation": r["generation"]})

            g = self.c.call("map.set", default_model="claude-haiku-4-5")["generation"]
            self.assertEqual(sub.wait_event("generation")["generation"], g)
            lst = self.c.call("map.list")
            self.assertEqual(lst["aliases"], {"gpt-4o": "claude-sonnet-4-5"})
            self.assertEqual(lst["default_model"], "claude-haiku-4-5")
            self.assertEqual(lst["routes"], [])

            r = self.c.request("map.set", name="fast", model="claude haiku")
            self.assertEqual(r["error"]["code"], "bad_request")
            r = self.c.request("map.set", name="fast")
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertIn("model", r["error"]["message"])

            r = self.c.call("map.import", mappings={"gpt-4o": "claude-opus-4-1",
                                                    "fast": "claude-haiku-4-5",
                                                    "o3": "claude-opus-4-1"})
            self.assertEqual((r["added"], r["changed"], r["removed"]), (2, 1, 0))
            self.assertEqual(sub.wait_event("generation")["generation"], r["generation"])
            r = self.c.call("map.import", mappings={"fast": "claude-haiku-4-5"}, replace=True)
            self.assertEqual((r["added"], r["changed"], r["removed"]), (0, 0, 2))
            self.assertEqual(self.c.call("map.list")["aliases"], {"fast": "claude-haiku-4-5"})
            r = self.c.request("map.import", mappings={"a": "ok-model", "b": 7})
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertEqual(self.c.call("map.list")["aliases"], {"fast": "claude-haiku-4-5"},
                             "a refused import changes nothing")

            self.c.call("map.unset", name="fast")
            self.assertEqual(self.c.request("map.unset", name="fast")["error"]["code"],
                             "not_found")
            self.c.call("map.set", default_model=None)
            self.assertIsNone(self.c.call("map.list")["default_model"])

            # An unsubscribed connection gets no event.
            self.c.call("map.set", name="x", model="y")
            self.assertEqual(self.c.events, [])
        finally:
            sub.close()

    def test_snapshot_and_status(self):
        self.c.call("map.set", name="gpt-4o", model="claude-sonnet-4-5")
        self.c.call("map.set", default_model="claude-haiku-4-5")
        snap = self.c.call("snapshot.get")
        self.assertEqual(snap["aliases"], {"gpt-4o": "claude-sonnet-4-5"})
        self.assertEqual(snap["default_model"], "claude-haiku-4-5")
        self.assertEqual(snap["routes"], [])
        self.assertEqual(snap["members"], [])
        self.assertIs(snap["more"], False)
        st = self.c.call("status")
        self.assertEqual(st["generation"], snap["generation"])
        self.assertEqual(st["authd_version"], "0.1.0")
        self.assertEqual(os.path.realpath(os.path.join(self.a.workdir, st["database"])),
                         os.path.realpath(self.a.db_path))
        self.assertGreaterEqual(st["connections"], 1)
        self.assertLessEqual(abs(st["started_at"] - time.time()), 60)
        r = self.c.request("snapshot.get", cursor="bogus")
        self.assertEqual(r["error"]["code"], "not_found")

    def test_usage_report(self):
        recs = [usage_record("req-%d" % i) for i in range(5)]
        self.assertEqual(self.c.call("usage.report", records=recs)["stored"], 5)
        # The same frame again, after a lost reply: nothing is counted twice.
        self.assertEqual(self.c.call("usage.report", records=recs)["stored"], 0)
        r = self.c.request("usage.report", records=[usage_record("bad", status="200")])
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("status", r["error"]["message"])
        db = sqlite3.connect(self.a.db_path)
        try:
            self.assertEqual(db.execute("SELECT count(*) FROM usage").fetchone()[0], 5)
        finally:
            db.close()

    def test_pipelined_requests(self):
        ids = [self.c.start("map.set", name="m%d" % i, model="claude-haiku-4-5")
               for i in range(40)]
        for rid in ids:
            self.assertTrue(self.c.wait_reply(rid)["ok"])
        self.assertEqual(len(self.c.call("map.list")["aliases"]), 40)


class TestProtocolErrors(AuthdTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.start_authd()

    def expect_connection_error(self, data, code):
        with self.a.client() as c:
            c.send_raw(data)
            msg = c.read_message()
            self.assertEqual(msg["id"], 0)
            self.assertIs(msg["ok"], False)
            self.assertEqual(msg["error"]["code"], code)
            self.assertTrue(c.is_closed(), "authd closes the connection after a connection error")
            return msg

    def test_bad_frame(self):
        msg = self.expect_connection_error(encode_frame(b'{"v":1,"op":"x","id":1,' +
                                                        KEY_GARBAGE.encode()),
                                           "bad_request")
        self.assertNotIn(KEY_GARBAGE, msg["error"]["message"])
        self.expect_connection_error(encode_frame(b"[1,2]"), "bad_request")
        self.expect_connection_error(encode_frame(b'{"v":1,"v":1}'), "bad_request")

    def test_oversize_frame(self):
        msg = self.expect_connection_error(struct.pack(">I", 70000), "too_large")
        self.assertIn("70000", msg["error"]["message"])
        self.expect_connection_error(struct.pack(">I", 0), "too_large")

    def test_version(self):
        self.expect_connection_error(encode_frame({"op": "hello", "id": 1}),
                                     "unsupported_version")
        self.expect_connection_error(encode_frame({"v": 2, "op": "hello", "id": 1}),
                                     "unsupported_version")

    def test_bad_envelope(self):
        self.expect_connection_error(encode_frame({"v": 1, "op": "hello", "id": 0}),
                                     "bad_request")
        with self.a.client() as c:
            # A usable id: answered with it, and the connection stays open.
            c.send({"v": 1, "id": 5})
            r = c.wait_reply(5)
            self.assertEqual(r["error"]["code"], "bad_request")
            c.call("hello")

    def test_unknown_op_and_missing_field(self):
        with self.a.client() as c:
            r = c.request("no.such.op")
            self.assertEqual(r["error"]["code"], "unknown_op")
            r = c.request("token.get")
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertIn("account", r["error"]["message"])
            r = c.request("map.unset")
            self.assertEqual(r["error"]["code"], "bad_request")
            c.call("hello")  # still open

    def test_connection_cap(self):
        self.a.stop()
        a = self.start_authd(args=["--set", "max_connections_per_uid=2"])
        keep = [a.client()]
        try:
            # The harness's readiness probe may not be closed on authd's side yet.
            harness.wait_until(lambda: keep[0].call("status")["connections"] == 1, 5,
                               message="only one connection left")
            keep.append(a.client())
            keep[1].call("hello")
            with a.client() as third:
                msg = third.read_message()
                self.assertEqual(msg["id"], 0)
                self.assertEqual(msg["error"]["code"], "busy")
                self.assertTrue(third.is_closed())
            keep.pop().close()
            time.sleep(0.2)
            with a.client() as again:
                again.call("hello")
        finally:
            for c in keep:
                c.close()

    @unittest.skipUnless(os.geteuid() == 0 and os.path.exists("/usr/bin/setpriv"),
                         "needs root and setpriv to connect as another uid")
    def test_other_uid_is_forbidden(self):
        self.a.stop()
        work = tempfile.mkdtemp(prefix="dualroute-authd-uid-")
        os.chmod(work, 0o711)
        run = os.path.join(work, "run")
        os.mkdir(run, 0o711)
        os.chmod(run, 0o711)
        sock = os.path.join(run, "authd.sock")
        a = self.start_authd(args=["--socket", sock], socket_path=sock)
        # Let uid 65534 reach the socket at all, so that authd's role check is what refuses it.
        os.chmod(sock, 0o666)
        client = (
            "import socket,struct,json,sys\n"
            "s=socket.socket(socket.AF_UNIX);s.settimeout(5);s.connect(sys.argv[1])\n"
            "b=b''\n"
            "while True:\n"
            "    d=s.recv(65536)\n"
            "    if not d: break\n"
            "    b+=d\n"
            "n=struct.unpack('>I',b[:4])[0];print(json.dumps(json.loads(b[4:4+n])))\n")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", client, sock], capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        msg = json.loads(r.stdout)
        self.assertEqual(msg["id"], 0)
        self.assertEqual(msg["error"]["code"], "forbidden")
        self.assertIn("uid 65534", a.log())
        with a.client() as c:  # our own uid still gets in
            c.call("hello")
        import shutil
        shutil.rmtree(work, ignore_errors=True)


class TestCrash(AuthdTestCase):
    def test_kill_9_during_writes(self):
        a = self.start_authd()
        with a.client() as c:
            c.call("account.add", name="crash", provider="anthropic", auth="api_key",
                   api_key=KEY_CRASH)
        acked = []
        stop = threading.Event()

        def writer():
            try:
                with a.client(timeout=5) as w:
                    i = 0
                    while not stop.is_set():
                        ids = {}
                        for _ in range(16):
                            ids[w.start("map.set", name="a%d" % i,
                                        model="claude-haiku-4-5")] = "a%d" % i
                            i += 1
                        w.start("usage.report", records=[usage_record("u%d" % i)])
                        for rid, name in ids.items():
                            if w.wait_reply(rid).get("ok"):
                                acked.append(name)
            except Exception:
                pass  # the daemon died under us: expected

        t = threading.Thread(target=writer)
        t.start()
        harness.wait_until(lambda: len(acked) > 200, 20, message="writes acknowledged")
        a.kill()
        stop.set()
        t.join(10)
        self.assertGreater(len(acked), 200)

        db = sqlite3.connect(a.db_path)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            db.close()
        a.start()
        with a.client() as c:
            aliases = c.call("map.list")["aliases"]
            missing = [n for n in acked if n not in aliases]
            self.assertEqual(missing, [], "acknowledged writes survive kill -9")
            self.assertEqual([x["name"] for x in c.call("account.list")["accounts"]], ["crash"])


if __name__ == "__main__":
    harness.main()

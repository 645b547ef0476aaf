"""Team sharing, authd's side: member keys (member.*), the snapshot's members and prices, the usage
ledger (usage.report with request_id dedupe, usage.query) and dualroutectl's member and usage
verbs. routerd's side (key checks, budgets, limits) is tested in its own module."""
import base64
import csv
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authd_harness  # noqa: E402
import harness  # noqa: E402
from authd_harness import Authd  # noqa: E402

CTL = harness._binary("DUALROUTE_CTL", "ctl/dualroutectl")
KEY_RE = re.compile(r"dr-[A-Za-z0-9_-]{43}")


def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()


def month_start(now=None):
    t = time.gmtime(now if now is not None else time.time())
    return int(time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)) - time.timezone)


def record(rid, at, member="alice", model="claude-sonnet-4-5", account="work", status=200,
           cost=100, **kw):
    r = {"request_id": rid, "at_ms": int(at * 1000), "member": member, "model": model,
         "account": account, "endpoint": "anthropic", "status": status, "input_tokens": 10,
         "output_tokens": 20, "cache_read_tokens": 3, "cache_write_tokens": 4,
         "latency_ms": 120, "ttfb_ms": 40, "cost_micro_usd": cost}
    r.update(kw)
    return r


class TeamAuthdTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="dualroute-team-")
        self.keys = []      # every member key handed out
        self.outputs = []   # every ctl stdout/stderr
        self.authd = Authd(workdir=self.work).start()

    def tearDown(self):
        self.authd.stop()
        logs = self.authd.log()
        for k in self.keys:
            self.assertNotIn(k, logs, "a member key reached authd's log")
            self.assertNotIn(k[3:], logs)
        self.authd.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)

    def ctl(self, *args):
        env = dict(os.environ)
        env["DUALROUTE_ROUTER"] = "http://127.0.0.1:9"
        p = subprocess.run([CTL, "--socket", self.authd.socket_path] + list(args),
                           capture_output=True, text=True, env=env, timeout=30)
        self.outputs.append((args, p.stdout + p.stderr))
        return p.returncode, p.stdout, p.stderr

    def db_bytes(self):
        data = b""
        for suffix in ("", "-wal"):
            p = self.authd.db_path + suffix
            if os.path.exists(p):
                with open(p, "rb") as f:
                    data += f.read()
        return data

    def snapshot(self, c):
        return c.call("snapshot.get")

    # --- members over IPC ---------------------------------------------------------------------

    def test_member_ops_over_ipc(self):
        with self.authd.client() as c:
            g0 = self.snapshot(c)["generation"]
            r = c.call("member.add", name="alice", budget_micro_usd=5000000, rate_limit_rpm=60,
                       models=["claude-sonnet-*", "claude-haiku-4-5"])
            key = r["key"]
            self.keys.append(key)
            self.assertRegex(key, r"^dr-[A-Za-z0-9_-]{43}$")
            self.assertEqual(len(base64.urlsafe_b64decode(key[3:] + "=")), 32)
            m = r["member"]
            self.assertEqual(m["name"], "alice")
            self.assertEqual(m["budget_micro_usd"], 5000000)
            self.assertEqual(m["rate_limit_rpm"], 60)
            self.assertNotIn("rate_limit_tpm", m)
            self.assertEqual(m["models"], ["claude-sonnet-*", "claude-haiku-4-5"])
            self.assertEqual(m["spent_micro_usd"], 0)
            self.assertEqual(m["key_fingerprint"], sha256(key)[:8])
            self.assertNotIn(key, json.dumps(c.call("member.list")))

            err = c.request("member.add", name="alice")["error"]
            self.assertEqual(err["code"], "exists")
            for bad in ({"name": "Alice!"}, {"name": "bob", "budget_micro_usd": -1},
                        {"name": "bob", "rate_limit_rpm": 0}, {"name": "bob", "models": []},
                        {"name": "bob", "models": ["has space"]}, {"name": "bob", "models": "x"}):
                self.assertEqual(c.request("member.add", **bad)["error"]["code"], "bad_request",
                                 bad)

            snap = self.snapshot(c)
            self.assertGreater(snap["generation"], g0)
            self.assertEqual(len(snap["members"]), 1)
            sm = snap["members"][0]
            self.assertEqual(sm["key_sha256"], sha256(key))
            self.assertEqual(sm["budget_micro_usd"], 5000000)
            self.assertEqual(sm["models"], ["claude-sonnet-*", "claude-haiku-4-5"])
            self.assertEqual(snap["month_start_at"], month_start())
            self.assertNotIn(key, json.dumps(snap))

            # set: absent fields stay, null removes.
            g1 = snap["generation"]
            m = c.call("member.set", name="alice", rate_limit_tpm=1000, models=None)["member"]
            self.assertEqual(m["budget_micro_usd"], 5000000)
            self.assertEqual(m["rate_limit_tpm"], 1000)
            self.assertNotIn("models", m)
            m = c.call("member.set", name="alice", budget_micro_usd=None)["member"]
            self.assertNotIn("budget_micro_usd", m)
            self.assertEqual(c.request("member.set", name="nobody")["error"]["code"], "not_found")
            snap = self.snapshot(c)
            self.assertGreater(snap["generation"], g1)
            self.assertNotIn("models", snap["members"][0])

            # rotate: a new key, the old hash is gone from the snapshot.
            r = c.call("member.rotate", name="alice")
            key2 = r["key"]
            self.keys.append(key2)
            self.assertNotEqual(key, key2)
            self.assertEqual(self.snapshot(c)["members"][0]["key_sha256"], sha256(key2))
            self.assertEqual(c.request("member.rotate", name="zed")["error"]["code"], "not_found")

            c.call("member.add", name="bob")
            self.assertEqual([m["name"] for m in c.call("member.list")["members"]],
                             ["alice", "bob"])
            c.call("member.remove", name="bob")
            self.assertEqual(c.request("member.remove", name="bob")["error"]["code"],
                             "not_found")
            self.assertEqual([m["name"] for m in self.snapshot(c)["members"]], ["alice"])

        # Only the hashes reach the database file.
        data = self.db_bytes()
        for k in (key, key2):
            self.assertNotIn(k.encode(), data)
            self.assertNotIn(k[3:].encode(), data)
        self.assertIn(sha256(key2).encode(), data)
        self.assertIn("Member 'alice' added (key %s)" % sha256(key)[:8], self.authd.log())

    def test_snapshot_in_pages(self):
        """More members than one 64 KiB frame holds: the snapshot comes in pages, each under the
        frame limit, all of one generation, every member exactly once."""
        n = 700
        models = ["claude-sonnet-4-5", "claude-haiku-4-*", "claude-opus-4-1-20250805"]
        with self.authd.client() as c:
            ids = [c.start("member.add", name="member-%04d" % i, budget_micro_usd=1000000 + i,
                           rate_limit_rpm=60, models=models) for i in range(n)]
            for rid in ids:
                reply = c.wait_reply(rid)
                self.assertTrue(reply.get("ok"), reply)
                self.keys.append(reply["key"])

            first = c.call("snapshot.get")
            self.assertIs(first["more"], True)
            self.assertIn("prices", first)
            self.assertIn("routes", first)
            pages, cursor = [first], first["cursor"]
            while pages[-1]["more"]:
                page = c.call("snapshot.get", cursor=pages[-1]["cursor"])
                self.assertEqual(page["generation"], first["generation"])
                self.assertNotIn("prices", page)
                pages.append(page)
                self.assertLess(len(pages), 20)
            self.assertGreaterEqual(len(pages), 3)
            self.assertNotIn("cursor", pages[-1])
            for page in pages:
                frame = json.dumps(page, separators=(",", ":"), ensure_ascii=False)
                self.assertLessEqual(len(frame.encode()), 65536)
            names = [m["name"] for page in pages for m in page["members"]]
            self.assertEqual(sorted(names), ["member-%04d" % i for i in range(n)])
            last = pages[-1]["members"][-1]
            self.assertEqual(last["models"], models)
            self.assertEqual(last["rate_limit_rpm"], 60)

            # A used cursor, or one from before a new first page, is not this connection's.
            self.assertEqual(c.request("snapshot.get", cursor=cursor)["error"]["code"],
                             "not_found")
            again = c.call("snapshot.get")
            self.assertNotEqual(again["cursor"], cursor)
            self.keys.append(c.call("member.add", name="late")["key"])  # a new generation
            nxt = c.call("snapshot.get", cursor=again["cursor"])
            self.assertEqual(nxt["generation"], again["generation"])
            self.assertEqual(nxt["members"], pages[1]["members"])
            with self.authd.client() as other:
                self.assertEqual(other.request("snapshot.get", cursor=nxt.get("cursor", "x"))
                                 ["error"]["code"], "not_found")

    def test_snapshot_prices_and_override(self):
        with self.authd.client() as c:
            prices = {p["model"]: p for p in self.snapshot(c)["prices"]}
        for fam in ("claude-opus-4*", "claude-sonnet-4*", "claude-haiku-4*", "claude-3-5-haiku*"):
            self.assertIn(fam, prices)
        s = prices["claude-sonnet-4*"]
        self.assertEqual((s["input_micro_usd_per_mtok"], s["output_micro_usd_per_mtok"],
                          s["cache_read_micro_usd_per_mtok"],
                          s["cache_write_micro_usd_per_mtok"]),
                         (3000000, 15000000, 300000, 3750000))
        self.assertEqual(prices["claude-opus-4-1*"]["output_micro_usd_per_mtok"], 75000000)

        path = os.path.join(self.work, "prices.json")
        with open(path, "w") as f:
            json.dump([{"model": "claude-sonnet-4*", "input_micro_usd_per_mtok": 1,
                        "output_micro_usd_per_mtok": 2, "cache_read_micro_usd_per_mtok": 3,
                        "cache_write_micro_usd_per_mtok": 4},
                       {"model": "my-model", "input_micro_usd_per_mtok": 5,
                        "output_micro_usd_per_mtok": 6, "cache_read_micro_usd_per_mtok": 7,
                        "cache_write_micro_usd_per_mtok": 8}], f)
        self.authd.stop()
        self.authd.args = ["--set", "prices_file=" + path]
        self.authd.start()
        with self.authd.client() as c:
            prices = {p["model"]: p for p in self.snapshot(c)["prices"]}
        self.assertEqual(prices["claude-sonnet-4*"]["input_micro_usd_per_mtok"], 1)
        self.assertEqual(prices["my-model"]["cache_write_micro_usd_per_mtok"], 8)
        self.assertIn("claude-opus-4*", prices)

        # A bad file is refused at start, naming the problem.
        with open(path, "w") as f:
            json.dump([{"model": "x", "input_micro_usd_per_mtok": -1}], f)
        r = subprocess.run([authd_harness.AUTHD, "--check-config", "--set",
                            "prices_file=" + path], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("prices_file", r.stderr)

    # --- usage ledger ---------------------------------------------------------------------------

    def test_usage_query_in_pages(self):
        """More rows than one 64 KiB frame holds: usage.query answers in pages continued after the
        last key, each with the total over every row; dualroutectl reads them all."""
        now = time.time()
        n = 900
        recs = [record("p%d" % i, now, member="member-%04d" % i, cost=i) for i in range(n)]
        recs.append(record("none", now, member=None, cost=5))
        with self.authd.client() as c:
            for i in range(0, len(recs), 100):
                self.assertEqual(c.call("usage.report", records=recs[i:i + 100])["stored"],
                                 len(recs[i:i + 100]))
            pages = [c.call("usage.query")]
            while pages[-1]["more"]:
                pages.append(c.call("usage.query", after=pages[-1]["next_after"]))
                self.assertLess(len(pages), 20)
            self.assertGreaterEqual(len(pages), 2)
            keys = [r["key"] for p in pages for r in p["rows"]]
            self.assertEqual(keys, [None] + ["member-%04d" % i for i in range(n)])
            for p in pages:
                self.assertEqual(p["total"]["requests"], n + 1)
                self.assertEqual(p["total"]["cost_micro_usd"], sum(range(n)) + 5)
                frame = json.dumps(p, separators=(",", ":"), ensure_ascii=False)
                self.assertLessEqual(len(frame.encode()), 65536)
            self.assertNotIn("next_after", pages[-1])
            # after "" skips only the null row; after the last key leaves nothing.
            self.assertEqual(c.call("usage.query", after="")["rows"][0]["key"], "member-0000")
            tail = c.call("usage.query", after="member-%04d" % (n - 1))
            self.assertEqual((tail["rows"], tail["more"]), ([], False))
            self.assertEqual(c.request("usage.query", after=3)["error"]["code"], "bad_request")

            # Keys that grow sixfold when escaped, up to the ledger's 256 bytes: every page, its
            # next_after included, still fits a frame.
            odd = ["\x01" * 250 + "%04d" % i for i in range(300)]
            for i in range(0, len(odd), 20):
                c.call("usage.report", records=[record("o%d" % j, now, model=odd[j], member=None)
                                                for j in range(i, i + 20)])
            pages = [c.call("usage.query", group_by="model")]
            while pages[-1]["more"]:
                pages.append(c.call("usage.query", group_by="model",
                                    after=pages[-1]["next_after"]))
                self.assertLess(len(pages), 100)
            for p in pages:
                frame = json.dumps(p, separators=(",", ":"), ensure_ascii=False)
                self.assertLessEqual(len(frame.encode()), 65536)
            keys = [r["key"] for p in pages for r in p["rows"]]
            self.assertEqual(keys, sorted(odd + ["claude-sonnet-4-5"]))

        rc, out, err = self.ctl("usage", "--json")
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        self.assertEqual(len(got["rows"]), n + 1)
        self.assertEqual(got["rows"][-1]["key"], "member-%04d" % (n - 1))
        self.assertNotIn("more", got)
        rc, out, err = self.ctl("usage", "--csv")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.strip().splitlines()), n + 2)  # a header and every row
        rc, out, err = self.ctl("usage")
        self.assertEqual(rc, 0, err)
        self.assertIn("member-%04d" % (n - 1), out)
        self.assertIn("TOTAL", out)

    def test_usage_report_query_and_dedupe(self):
        now = time.time()
        ms = month_start()
        frame = [record("r1", now, cost=100),
                 record("r2", now, model="claude-opus-4-1", account="gcp", status=500, cost=7),
                 record("r3", now, member="bob", model="claude-haiku-4-5", cost=3,
                        model_requested="fast"),
                 record("r4", now, member=None, account=None, cost=1),
                 record("r1", now, cost=100)]  # a repeat inside the frame
        old = [record("o1", ms - 3600, cost=1000)]  # last month
        with self.authd.client() as c:
            c.call("member.add", name="alice")
            self.keys.append(c.call("member.rotate", name="alice")["key"])
            self.assertEqual(c.call("usage.report", records=frame)["stored"], 4)
            self.assertEqual(c.call("usage.report", records=old)["stored"], 1)
            self.assertEqual(c.call("usage.report", records=frame)["stored"], 0)
            err = c.request("usage.report", records=[{"request_id": "x"}])["error"]
            self.assertEqual(err["code"], "bad_request")

            # Default window: this month; by member.
            q = c.call("usage.query")
            rows = {r["key"]: r for r in q["rows"]}
            self.assertEqual([r["key"] for r in q["rows"]], [None, "alice", "bob"])
            self.assertEqual(rows["alice"]["requests"], 2)
            self.assertEqual(rows["alice"]["cost_micro_usd"], 107)
            self.assertEqual(rows["alice"]["errors"], 1)
            self.assertEqual(rows["alice"]["input_tokens"], 20)
            self.assertEqual(rows["alice"]["cache_write_tokens"], 8)
            self.assertEqual(q["total"]["cost_micro_usd"], 111)
            self.assertEqual(q["total"]["requests"], 4)

            q = c.call("usage.query", group_by="model", member="alice")
            self.assertEqual([(r["key"], r["cost_micro_usd"]) for r in q["rows"]],
                             [("claude-opus-4-1", 7), ("claude-sonnet-4-5", 100)])
            q = c.call("usage.query", group_by="account")
            self.assertEqual([r["key"] for r in q["rows"]], [None, "gcp", "work"])
            q = c.call("usage.query", group_by="day", since=ms - 86400)
            day = time.strftime("%Y-%m-%d", time.gmtime(now))
            prev = time.strftime("%Y-%m-%d", time.gmtime(ms - 3600))
            self.assertEqual({r["key"]: r["cost_micro_usd"] for r in q["rows"]}.get(prev), 1000)
            self.assertEqual(q["total"]["cost_micro_usd"], 1111)
            if prev != day:
                self.assertIn(day, [r["key"] for r in q["rows"]])
            q = c.call("usage.query", since=ms - 86400, until=ms)
            self.assertEqual([(r["key"], r["cost_micro_usd"]) for r in q["rows"]],
                             [("alice", 1000)])
            self.assertEqual(c.request("usage.query", group_by="week")["error"]["code"],
                             "bad_request")

            # The snapshot's spend is the month's ledger sum for the member.
            snap = self.snapshot(c)
            self.assertEqual(snap["members"][0]["spent_micro_usd"], 107)
            self.assertEqual(c.call("member.list")["members"][0]["spent_micro_usd"], 107)

        # A frame re-sent after an authd restart stores nothing again.
        self.authd.stop()
        self.authd.start()
        with self.authd.client() as c:
            self.assertEqual(c.call("usage.report", records=frame)["stored"], 0)
            self.assertEqual(c.call("usage.query")["total"]["requests"], 4)

        # dualroutectl usage: table, CSV, JSON.
        rc, out, err = self.ctl("usage")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"alice\s+2\s+20\s+40\s+6\s+8\s+1\s+0\.0001")
        self.assertRegex(out, r"TOTAL\s+4\s+")
        rc, out, err = self.ctl("usage", "--by", "model", "--csv", "--member", "alice",
                                "--since", "40d")
        self.assertEqual(rc, 0, err)
        rows = list(csv.reader(io.StringIO(out)))
        self.assertEqual(rows[0], ["model", "requests", "input_tokens", "output_tokens",
                                   "cache_read_tokens", "cache_write_tokens", "errors",
                                   "cost_usd"])
        self.assertEqual({r[0]: r[7] for r in rows[1:]},
                         {"claude-opus-4-1": "0.0000", "claude-sonnet-4-5": "0.0011"})
        rc, out, err = self.ctl("usage", "--json", "--since",
                                time.strftime("%Y-%m-%d", time.gmtime(ms - 86400)))
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["total"]["cost_micro_usd"], 1111)
        rc, out, err = self.ctl("usage", "--by", "week")
        self.assertEqual(rc, 2)

    # --- dualroutectl member ------------------------------------------------------------------

    def test_ctl_member_verbs(self):
        rc, out, err = self.ctl("member", "add", "carol", "--budget", "12.5", "--rpm", "30",
                                "--models", "claude-sonnet-*,claude-haiku-*")
        self.assertEqual(rc, 0, err)
        keys = KEY_RE.findall(out)
        self.assertEqual(len(keys), 1, out)
        key = keys[0]
        self.keys.append(key)
        self.assertIn("will not be shown again", out)

        rc, out, err = self.ctl("member", "add", "dave", "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual(j["member"]["name"], "dave")
        self.keys.append(j["key"])
        self.assertEqual(j["member"]["key_fingerprint"], sha256(j["key"])[:8])

        rc, out, err = self.ctl("member", "list")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"carol\s+12\.5000\s+0\.0000\s+30\s+none\s+"
                              r"claude-sonnet-\*,claude-haiku-\*\s+%s" % sha256(key)[:8])
        self.assertRegex(out, r"dave\s+none\s+0\.0000\s+none\s+none\s+all")

        rc, out, err = self.ctl("member", "set", "carol", "--budget", "none", "--tpm", "500")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("--json", "member", "list")
        m = {x["name"]: x for x in json.loads(out)["members"]}["carol"]
        self.assertNotIn("budget_micro_usd", m)
        self.assertEqual(m["rate_limit_tpm"], 500)
        self.assertEqual(m["rate_limit_rpm"], 30)

        rc, out, err = self.ctl("member", "add", "carol")
        self.assertEqual(rc, 1)
        self.assertIn("exists", err)
        rc, out, err = self.ctl("member", "add", "erin", "--budget", "lots")
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl("member", "set", "carol")
        self.assertEqual(rc, 2)

        rc, out, err = self.ctl("member", "rotate", "carol")
        self.assertEqual(rc, 0, err)
        new = KEY_RE.findall(out)
        self.assertEqual(len(new), 1)
        self.keys.append(new[0])
        self.assertNotEqual(new[0], key)
        with self.authd.client() as c:
            sm = {m["name"]: m for m in c.call("snapshot.get")["members"]}
        self.assertEqual(sm["carol"]["key_sha256"], sha256(new[0]))
        self.assertNotIn("budget_micro_usd", sm["carol"])

        rc, out, err = self.ctl("member", "remove", "dave")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("member", "remove", "dave")
        self.assertEqual(rc, 1)

        data = self.db_bytes()
        for k in self.keys:
            self.assertNotIn(k.encode(), data)
        # Each key was printed once, by the verb that made it, and never again.
        for k in self.keys:
            shown = [args for args, out in self.outputs if k in out]
            self.assertEqual(len(shown), 1, (k[:6], shown))
            self.assertIn(shown[0][1], ("add", "rotate"))

    # --- roles ----------------------------------------------------------------------------------

    @unittest.skipUnless(os.geteuid() == 0 and os.path.exists("/usr/bin/setpriv"),
                         "needs root and setpriv to connect as another uid")
    def test_router_role_cannot_manage_members(self):
        self.authd.stop()
        work = tempfile.mkdtemp(prefix="dualroute-team-uid-")
        os.chmod(work, 0o711)
        run = os.path.join(work, "run")
        os.mkdir(run, 0o711)
        sock = os.path.join(run, "authd.sock")
        nobody = pwd.getpwuid(65534).pw_name
        a = Authd(workdir=self.work, socket_path=sock,
                  args=["--socket", sock, "--set", "router_user=" + nobody]).start()
        try:
            os.chmod(sock, 0o666)
            client = (
                "import socket,struct,json,sys\n"
                "s=socket.socket(socket.AF_UNIX);s.settimeout(5);s.connect(sys.argv[1])\n"
                "def call(i,op,**f):\n"
                "    m=dict(v=1,op=op,id=i,**f);b=json.dumps(m).encode()\n"
                "    s.sendall(struct.pack('>I',len(b))+b)\n"
                "    h=b''\n"
                "    while len(h)<4: h+=s.recv(4-len(h))\n"
                "    n=struct.unpack('>I',h)[0];d=b''\n"
                "    while len(d)<n: d+=s.recv(n-len(d))\n"
                "    return json.loads(d)\n"
                "out=[call(1,'hello')]\n"
                "for i,op in enumerate(['member.add','member.list','member.set','member.rotate',"
                "'member.remove','usage.query','snapshot.get'],2):\n"
                "    out.append(call(i,op,name='mallory'))\n"
                "print(json.dumps(out))\n")
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                sys.executable, "-c", client, sock], capture_output=True,
                               timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            replies = json.loads(r.stdout)
            self.assertEqual(replies[0]["roles"], ["router"])
            for rep in replies[1:7]:
                self.assertFalse(rep["ok"], rep)
                self.assertEqual(rep["error"]["code"], "forbidden")
            self.assertTrue(replies[7]["ok"])
            with a.client() as c:
                self.assertEqual(c.call("member.list")["members"], [])
        finally:
            a.cleanup()
            shutil.rmtree(work, ignore_errors=True)
            self.authd.start()


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Team mode end to end: dualroute-authd holds the members (member.add/rotate/set/remove over its
socket), dualroute-routerd (--authd-socket, team_mode=on) requires their dr- keys from both APIs,
enforces model patterns (403), monthly budgets with reservations (429 naming the member, the budget
and the reset) and per-minute rate limits (429 + retry-after), sends one usage record per request
to authd's ledger (usage.query shows tokens and cost; SIGTERM loses none, kill -9 at most the
last second), and serves /metrics in the Prometheus text format (checked by a real parser). No
member key appears in any log."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from authd_harness import Authd  # noqa: E402
from harness import (ANTHROPIC_HEADERS, RouterTestCase, _canary, find_secret_leaks,  # noqa: E402
                     http_request, messages_body, wait_until)

ACCOUNT_KEY = _canary("team-account")
SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
# The fake upstream's answers use 28 input and 19 output tokens; sonnet: $3 and $15 per MTok.
COST_SONNET = 28 * 3 + 19 * 15


def prometheus_parser():
    """prometheus_client's text parser (Debian: python3-prometheus-client), or None."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            return None
    return text_string_to_metric_families


def chat_body(model=SONNET, stream=False):
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        body["stream"] = True
    return body


class TeamTest(RouterTestCase):
    def setUp(self):
        super().setUp()
        self.keys = []
        self.authd = Authd(workdir=tempfile.mkdtemp(dir=self.workdir)).start()
        self.addCleanup(self.check_authd_log)
        self.ipc = self.authd.client()
        self.addCleanup(self.ipc.close)
        self.ipc.call("account.add", name="work", provider="anthropic", auth="api_key",
                      api_key=ACCOUNT_KEY)

    def check_authd_log(self):
        self.authd.stop()
        self.assertEqual(find_secret_leaks(self.authd.log(), self.keys + [ACCOUNT_KEY]), [],
                         "member key leaked into the authd log %s" % self.authd.log_path)

    def start_team_router(self, *args, check_exit=True):
        r = self.start_router("--authd-socket", self.authd.socket_path, "--set", "team_mode=on",
                              *args, key=None, check_exit=check_exit)
        self.addCleanup(self.check_router_log, r)
        return r

    def check_router_log(self, r):
        r.stop()
        log = r.log_text()
        self.assertEqual(find_secret_leaks(log, self.keys), [],
                         "member key leaked into the routerd log %s" % r.log_path)

    def add_member(self, name, **fields):
        reply = self.ipc.call("member.add", name=name, **fields)
        key = reply["key"]
        self.assertTrue(key.startswith("dr-") and len(key) == 46, key)
        self.keys.append(key)
        return key

    @staticmethod
    def anthropic_headers(key, bearer=False):
        return ANTHROPIC_HEADERS + [("authorization", "Bearer " + key) if bearer
                                    else ("x-api-key", key)]

    @staticmethod
    def openai_headers(key):
        return [("content-type", "application/json"), ("authorization", "Bearer " + key)]

    def messages(self, router, key, model=SONNET, stream=False, bearer=False):
        return http_request(router.port, "POST", "/v1/messages",
                            messages_body(model=model, stream=stream),
                            self.anthropic_headers(key, bearer))

    def chat(self, router, key, model=SONNET, stream=False):
        return http_request(router.port, "POST", "/v1/chat/completions",
                            chat_body(model, stream), self.openai_headers(key))

    def wait_status(self, fn, status, timeout=10.0):
        last = []

        def ok():
            last[:] = [fn()]
            return last[0].status == status
        wait_until(ok, timeout, interval=0.1,
                   message="status %d (last: %r)" % (status, last[0] if last else None))
        return last[0]

    def usage(self, **fields):
        return self.ipc.call("usage.query", **fields)

    def wait_usage_requests(self, n, timeout=10.0, **fields):
        last = {}

        def ok():
            last.update(self.usage(**fields))
            return last["total"]["requests"] >= n
        wait_until(ok, timeout, interval=0.1, message="%d ledger records (have %r)" %
                   (n, last.get("total")))
        return last

    # --- keys ------------------------------------------------------------------------------------

    def test_keys_both_apis_rotate_remove(self):
        key = self.add_member("alice")
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, key), 200)
        self.assertEqual(self.messages(r, key, bearer=True).status, 200)
        self.assertEqual(self.chat(r, key).status, 200)
        # The account's key went upstream, never the member's.
        for req in self.fake.requests():
            hdrs = {k.lower(): v for k, v in req["headers"].items()} \
                if isinstance(req.get("headers"), dict) else {}
            self.assertNotIn(key, json.dumps(req))
            if hdrs:
                self.assertEqual(hdrs.get("x-api-key"), ACCOUNT_KEY)

        # Missing and wrong keys: 401 in the caller's format.
        resp = http_request(r.port, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.json()["type"], "error")
        self.assertEqual(resp.json()["error"]["type"], "authentication_error")
        wrong = "dr-" + "A" * 43
        resp = self.chat(r, wrong)
        self.assertEqual(resp.status, 401)
        self.assertIn("message", resp.json()["error"])
        self.assertNotIn("type", resp.json())  # OpenAI's shape
        # A client's own Anthropic key is no way around team mode (no passthrough).
        resp = http_request(r.port, "POST", "/v1/messages", messages_body(),
                            ANTHROPIC_HEADERS + [("x-api-key", harness.CLIENT_KEY)])
        self.assertEqual(resp.status, 401)
        resp = http_request(r.port, "GET", "/v1/models", None, [("x-api-key", "not-used")])
        self.assertEqual(resp.status, 401)

        # Rotate: the old key stops working, the new one works.
        new = self.ipc.call("member.rotate", name="alice")["key"]
        self.keys.append(new)
        self.wait_status(lambda: self.messages(r, key), 401)
        self.assertEqual(self.messages(r, new).status, 200)
        self.assertEqual(self.chat(r, new).status, 200)
        # Remove: 401.
        self.ipc.call("member.remove", name="alice")
        self.wait_status(lambda: self.messages(r, new), 401)
        self.assertEqual(self.chat(r, new).status, 401)
        # The log names the member, never the key.
        self.assertIn("alice", r.log_text())

    def test_members_beyond_one_snapshot_page(self):
        """Enough members that authd's snapshot takes several 64 KiB pages: routerd applies them
        all, so the first and the last member added both get in."""
        ids = [self.ipc.start("member.add", name="m%04d" % i,
                              models=["claude-sonnet-4-5", "claude-haiku-4-*"])
               for i in range(700)]
        keys = []
        for rid in ids:
            reply = self.ipc.wait_reply(rid)
            self.assertTrue(reply.get("ok"), reply)
            keys.append(reply["key"])
        self.keys.extend(keys)
        self.assertIs(self.ipc.call("snapshot.get")["more"], True)
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, keys[-1]), 200)
        self.assertEqual(self.chat(r, keys[0]).status, 200)
        self.assertEqual(self.messages(r, keys[350]).status, 200)
        r.wait_for_log(r"Applied routing snapshot generation \d+ \(700 members\)")

    def test_model_restriction_403(self):
        key = self.add_member("bob", models=["claude-haiku-*"])
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, key, model=HAIKU), 200)
        resp = self.messages(r, key, model=SONNET)
        self.assertEqual(resp.status, 403)
        self.assertEqual(resp.json()["error"]["type"], "permission_error")
        self.assertIn("bob", resp.json()["error"]["message"])
        resp = self.chat(r, key, model=SONNET)
        self.assertEqual(resp.status, 403)
        self.assertIn(SONNET, resp.json()["error"]["message"])
        self.assertEqual(self.chat(r, key, model=HAIKU).status, 200)
        # Lifting the restriction takes effect without a restart.
        self.ipc.call("member.set", name="bob", models=None)
        self.wait_status(lambda: self.messages(r, key, model=SONNET), 200)

    # --- the ledger ------------------------------------------------------------------------------

    def test_ledger_records_json_and_streams(self):
        key = self.add_member("carol")
        r = self.start_team_router()
        self.wait_status(lambda: http_request(r.port, "GET", "/v1/models", None,
                                              [("x-api-key", key)]), 200)
        answers = [self.messages(r, key), self.messages(r, key, stream=True),
                   self.chat(r, key), self.chat(r, key, stream=True)]
        for a in answers:
            self.assertEqual(a.status, 200, a.body[:300])
        self.assertIn(b"message_stop", answers[1].body)
        self.assertIn(b"[DONE]", answers[3].body)

        # 4 model calls (the model list is no model call: not in the ledger).
        rows = self.wait_usage_requests(4, member="carol")
        time.sleep(0.7)
        rows = self.usage(member="carol")
        self.assertEqual(rows["total"]["requests"], 4, rows)
        total = rows["total"]
        self.assertEqual(total["input_tokens"], 4 * 28, rows)
        self.assertEqual(total["output_tokens"], 4 * 19, rows)
        self.assertEqual(total["cost_micro_usd"], 4 * COST_SONNET, rows)
        self.assertEqual(total["errors"], 0)
        by_model = {row["key"]: row for row in self.usage(group_by="model")["rows"]}
        self.assertEqual(by_model[SONNET]["requests"], 4, by_model)
        by_member = {row["key"]: row for row in self.usage(group_by="member")["rows"]}
        self.assertEqual(list(by_member), ["carol"])
        # Both endpoints are in the ledger, with latency and first byte.
        import sqlite3
        db = sqlite3.connect("file:%s?mode=ro" % self.authd.db_path, uri=True)
        try:
            cols = [c[1] for c in db.execute("PRAGMA table_info(usage)")]
            if cols:
                rows = [dict(zip(cols, row)) for row in db.execute("SELECT * FROM usage")]
                endpoints = sorted(str(row.get("endpoint")) for row in rows
                                   if (row.get("model_upstream") or row.get("model")) == SONNET)
                self.assertEqual(endpoints, ["anthropic", "anthropic", "openai", "openai"], rows)
                for row in rows:
                    self.assertNotIn("Hello", json.dumps(row))  # never the prompt
                    self.assertEqual(row.get("member"), "carol")
                    self.assertEqual(row.get("account"), "work")
        finally:
            db.close()

    def test_ledger_sigterm_loses_nothing(self):
        key = self.add_member("dave")
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, key), 200)
        for _ in range(30):
            self.assertEqual(self.messages(r, key).status, 200)
        # Some of these records are still queued (the flush interval is half a second).
        r.send_signal(signal.SIGTERM)
        self.assertEqual(r.wait(10), 0)
        self.assertRegex(r.log_text(), r"Sending \d+ usage records to dualroute-authd before "
                                       r"exiting")
        rows = self.wait_usage_requests(31, member="dave", timeout=3)
        self.assertEqual(rows["total"]["requests"], 31)

    def test_ledger_kill9_loses_at_most_a_second(self):
        key = self.add_member("erin")
        r = self.start_team_router(check_exit=False)
        self.wait_status(lambda: self.messages(r, key), 200)
        for _ in range(20):
            self.assertEqual(self.messages(r, key).status, 200)
        time.sleep(1.2)
        for _ in range(5):
            self.assertEqual(self.messages(r, key).status, 200)
        r.send_signal(signal.SIGKILL)
        r.wait(5)
        time.sleep(0.3)
        n = self.usage(member="erin")["total"]["requests"]
        self.assertGreaterEqual(n, 21, "records older than a second were lost")
        self.assertLessEqual(n, 26)

    # --- budgets and rate limits -----------------------------------------------------------------

    def test_budget_under_200_concurrent_requests(self):
        budget = 30000  # three cents: about 81 requests at 369 micro-USD
        key = self.add_member("frank", budget_micro_usd=budget)
        r = self.start_team_router()
        self.wait_status(lambda: http_request(r.port, "GET", "/v1/models", None,
                                              [("x-api-key", key)]), 200)
        results = []
        soft = []
        lock = threading.Lock()
        start = threading.Barrier(200)

        def one(i):
            # A client as the SDKs behave: a 429 that may be retried is retried after retry-after;
            # x-should-retry: false (the budget) ends it.
            start.wait()
            resp = None
            for _ in range(60):
                try:
                    # The Messages half answers 50 ms late (the fake reads "fake" from the body
                    # routerd forwards), so reservations are surely in flight while the budget
                    # runs out, whatever the machine's speed.
                    resp = (http_request(r.port, "POST", "/v1/messages",
                                         messages_body(fake={"first_byte_delay_ms": 50}),
                                         self.anthropic_headers(key, False))
                            if i % 2 else self.chat(r, key))
                except Exception as e:  # noqa: BLE001
                    resp = e
                    break
                if resp.status != 429 or resp.header("x-should-retry") == "false":
                    break
                with lock:
                    soft.append(resp)
                time.sleep(float(resp.header("retry-after")) * (0.5 + (i % 10) / 10))
            with lock:
                results.append(resp)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        statuses = [getattr(x, "status", x) for x in results]
        ok = statuses.count(200)
        refused = [x for x in results if getattr(x, "status", 0) == 429]
        self.assertEqual(ok + len(refused), 200, statuses)
        self.assertGreater(len(refused), 0)
        self.assertGreater(len(soft), 0, "no request waited on reservations in flight")
        self.assertEqual(soft[0].header("retry-after"), "1")
        body = refused[0].json()
        msg = body["error"]["message"]
        self.assertIn("frank", msg)
        self.assertIn("$0.030000", msg)
        self.assertRegex(msg, r"resets on \d{4}-\d{2}-01 00:00 UTC")
        self.assertTrue(1 <= int(refused[0].header("retry-after")) <= 32 * 86400)

        rows = self.wait_usage_requests(ok, member="frank")
        time.sleep(0.7)
        rows = self.usage(member="frank")
        spent = rows["total"]["cost_micro_usd"]
        self.assertEqual(spent, ok * COST_SONNET, rows)
        # The budget was reached (the over-budget 429 says so), and overrun by at most what was
        # in flight when it was crossed: one request's reservation (64 output tokens at $15/MTok
        # plus the prompt estimate: under 1500 micro-USD).
        self.assertGreaterEqual(spent, budget)
        self.assertLess(spent, budget + 1500)
        # Over budget stays over budget.
        self.assertEqual(self.messages(r, key).status, 429)
        # A new budget lifts it at once.
        self.ipc.call("member.set", name="frank", budget_micro_usd=budget * 10)
        self.wait_status(lambda: self.messages(r, key), 200)

    def test_rate_limit_429_retry_after(self):
        key = self.add_member("gina", rate_limit_rpm=3)
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, key), 200)
        self.assertEqual(self.messages(r, key).status, 200)
        self.assertEqual(self.chat(r, key).status, 200)
        resp = self.messages(r, key)
        self.assertEqual(resp.status, 429)
        self.assertEqual(resp.json()["error"]["type"], "rate_limit_error")
        retry = int(resp.header("retry-after"))
        self.assertTrue(1 <= retry <= 20, retry)
        self.assertIn("gina", resp.json()["error"]["message"])
        resp = self.chat(r, key)
        self.assertEqual(resp.status, 429)
        self.assertTrue(int(resp.header("retry-after")) >= 1)
        # The bucket refills at 3 per minute: one request after ~20 s; not sooner than told.
        time.sleep(max(0, retry - 1))
        self.wait_status(lambda: self.messages(r, key), 200, timeout=5)

    # --- the real SDKs ---------------------------------------------------------------------------

    SDK_SCRIPT = r"""
const req = require('module').createRequire(process.env.SDK_DIR + '/package.json');
const AnthropicMod = req('@anthropic-ai/sdk');
const OpenAIMod = req('openai');
const Anthropic = AnthropicMod.default || AnthropicMod;
const OpenAI = OpenAIMod.default || OpenAIMod;
const base = process.env.ROUTER_URL, key = process.env.MEMBER_KEY;
const out = {};
async function status(p) { try { await p; return 200; } catch (e) { return e.status || String(e); } }
(async () => {
  const a = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0 });
  const m = await a.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64,
                                      messages: [{ role: 'user', content: 'Hi' }] });
  out.anthropic = m.usage.output_tokens;
  const st = await a.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, stream: true,
                                       messages: [{ role: 'user', content: 'Hi' }] });
  out.anthropic_stream_events = 0;
  for await (const ev of st) out.anthropic_stream_events++;
  const o = new OpenAI({ apiKey: key, baseURL: base + '/v1', maxRetries: 0 });
  const c = await o.chat.completions.create({ model: 'claude-sonnet-4-5',
                                              messages: [{ role: 'user', content: 'Hi' }] });
  out.openai = c.usage.completion_tokens;
  const bad = 'dr-' + 'Z'.repeat(43);
  out.anthropic_wrong = await status(new Anthropic({ apiKey: bad, baseURL: base, maxRetries: 0 })
    .messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }));
  out.openai_wrong = await status(new OpenAI({ apiKey: bad, baseURL: base + '/v1', maxRetries: 0 })
    .chat.completions.create({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }] }));
  out.anthropic_forbidden = await status(a.messages.create({ model: 'claude-opus-4-1', max_tokens: 8,
    messages: [{ role: 'user', content: 'x' }] }));
  out.openai_forbidden = await status(o.chat.completions.create({ model: 'claude-opus-4-1',
    messages: [{ role: 'user', content: 'x' }] }));
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ error: String(e), status: e.status })); });
"""

    def test_real_sdks(self):
        sdk_dir = os.path.join(harness.ROOT, "tests", "sdk")
        node = subprocess.run(["which", "node"], capture_output=True).stdout.decode().strip()
        if not node or not os.path.isdir(os.path.join(sdk_dir, "node_modules", "openai")):
            self.skipTest("node or the SDKs under tests/sdk/node_modules are missing "
                          "(tests/sdk/run.sh installs them)")
        key = self.add_member("jill", models=["claude-sonnet-*"])
        r = self.start_team_router()
        self.wait_status(lambda: self.messages(r, key), 200)
        script = os.path.join(self.workdir, "team-sdk.cjs")
        with open(script, "w") as f:
            f.write(self.SDK_SCRIPT)
        env = dict(os.environ, SDK_DIR=sdk_dir, ROUTER_URL="http://127.0.0.1:%d" % r.port,
                   MEMBER_KEY=key)  # the key goes in the environment, never in argv
        p = subprocess.run([node, script], capture_output=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = json.loads(p.stdout.decode().strip().splitlines()[-1])
        self.assertNotIn("error", out, out)
        self.assertEqual(out["anthropic"], 19)
        self.assertGreater(out["anthropic_stream_events"], 3)
        self.assertEqual(out["openai"], 19)
        self.assertEqual(out["anthropic_wrong"], 401)
        self.assertEqual(out["openai_wrong"], 401)
        self.assertEqual(out["anthropic_forbidden"], 403)
        self.assertEqual(out["openai_forbidden"], 403)
        self.assertNotIn(key, p.stdout.decode() + p.stderr.decode())

    # --- metrics ---------------------------------------------------------------------------------

    def test_metrics_prometheus_format(self):
        parse = prometheus_parser()
        if parse is None:
            self.skipTest("python3-prometheus-client is not installed")
        metrics_key = "metrics-" + "k" * 30
        kf = os.path.join(self.workdir, "metrics.key")
        with open(kf, "w") as f:
            f.write(metrics_key)
        os.chmod(kf, 0o600)
        key = self.add_member("hank")
        r = self.start_team_router("--set", "metrics_key_file=" + kf)
        self.wait_status(lambda: self.messages(r, key), 200)
        self.assertEqual(self.messages(r, key, stream=True).status, 200)
        self.assertEqual(self.chat(r, key).status, 200)
        self.assertEqual(self.messages(r, "dr-" + "B" * 43).status, 401)

        resp = http_request(r.port, "GET", "/metrics")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.header("content-type").startswith("text/plain; version=0.0.4"))
        text = resp.body.decode()
        families = {f.name: f for f in parse(text)}
        for name in ("dualroute_requests", "dualroute_tokens", "dualroute_upstream_errors",
                     "dualroute_request_duration_seconds", "dualroute_first_byte_seconds",
                     "dualroute_open_streams"):
            self.assertIn(name, families, sorted(families))
        req = families["dualroute_requests"]
        ok = [s for s in req.samples if s.labels.get("member") == "hank" and
              s.labels.get("status") == "200" and s.labels.get("endpoint") == "messages"]
        self.assertEqual(sum(s.value for s in ok), 2)
        unauth = [s for s in req.samples if s.labels.get("status") == "401"]
        self.assertEqual(sum(s.value for s in unauth), 1)
        tokens = {s.labels["kind"]: s.value for s in families["dualroute_tokens"].samples
                  if s.labels.get("member") == "hank"}
        self.assertEqual(tokens.get("input"), 3 * 28)
        hist = [s for s in families["dualroute_request_duration_seconds"].samples
                if s.name.endswith("_count") and s.labels.get("endpoint") == "messages"]
        served = sum(s.value for s in req.samples if s.labels.get("endpoint") == "messages")
        self.assertGreaterEqual(served, 3, text)  # 1 + 1 stream + the 401 (and early 503s)
        self.assertEqual(sum(s.value for s in hist), served, text)
        self.assertEqual(families["dualroute_open_streams"].samples[0].value, 0)
        # The exposition never holds a key.
        for k in self.keys:
            self.assertNotIn(k, text)
        if subprocess.run(["which", "promtool"], capture_output=True).returncode == 0:
            p = subprocess.run(["promtool", "check", "metrics"], input=resp.body,
                               capture_output=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_metrics_needs_loopback_or_key(self):
        metrics_key = "metrics-" + "q" * 30
        kf = os.path.join(self.workdir, "metrics2.key")
        with open(kf, "w") as f:
            f.write(metrics_key)
        os.chmod(kf, 0o600)
        self.add_member("ivan")
        ip = os.environ.get("DUALROUTE_IT_NONLOOPBACK") or self.non_loopback_address()
        if not ip:
            self.skipTest("no non-loopback address on this machine")
        r = self.start_team_router("--listen", ip, "--set", "metrics_key_file=" + kf)
        resp = http_request(r.port, "GET", "/metrics", host=ip)
        self.assertEqual(resp.status, 403)
        resp = http_request(r.port, "GET", "/metrics", None,
                            [("authorization", "Bearer " + metrics_key)], host=ip)
        self.assertEqual(resp.status, 200)
        self.assertIn(b"dualroute_requests_total", resp.body)
        resp = http_request(r.port, "GET", "/metrics", None, [("x-api-key", "wrong")], host=ip)
        self.assertEqual(resp.status, 403)

    @staticmethod
    def non_loopback_address():
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            ip = s.getsockname()[0]
        except OSError:
            return None
        finally:
            s.close()
        return None if ip.startswith("127.") else ip

    # --- start-up rules --------------------------------------------------------------------------

    def test_team_mode_needs_authd(self):
        rc, out, err = harness.run_routerd(["-p", "0", "--set", "team_mode=on"])
        self.assertNotEqual(rc, 0)
        self.assertIn("authd_socket", out + err)
        # auto: a non-loopback address turns team mode on, which needs authd too.
        rc, out, err = harness.run_routerd(["-p", "0", "--listen", "0.0.0.0"])
        self.assertNotEqual(rc, 0)
        self.assertIn("authd", out + err)

    def test_single_user_service_mode_records_without_member(self):
        r = self.start_router("--authd-socket", self.authd.socket_path, "--set", "team_mode=off",
                              key=None)
        self.wait_status(lambda: http_request(r.port, "POST", "/v1/messages", messages_body(),
                                              ANTHROPIC_HEADERS), 200)
        rows = self.wait_usage_requests(1)
        self.assertEqual([row["key"] for row in rows["rows"]], [None])


if __name__ == "__main__":
    unittest.main(verbosity=2)

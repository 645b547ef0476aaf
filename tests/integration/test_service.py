#!/usr/bin/env python3
"""Service mode end to end: dualroute-authd holds the accounts and routes, dualroute-routerd
fetches them over authd's socket (--authd-socket), and requests reach the fake upstream with the
right account's credential: an Anthropic API key as x-api-key, a Vertex AI access token (from the
fake Google token endpoint, through a service-account key) as a Bearer token on Vertex's
rawPredict / streamRawPredict URLs. Routes and aliases follow authd without a restart; a revoked
login, a missing route and an unreachable authd each get a 503 that says what to run; routerd keeps
serving from its cache while authd restarts. No secret the tests use appears in any log."""

import json
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from authd_harness import Authd  # noqa: E402
from harness import (ANTHROPIC_HEADERS, FakeOAuth, RouterTestCase, _canary, find_secret_leaks,  # noqa: E402
                     http_request, messages_body, wait_until)

KEY_MAIN = _canary("service-main")
KEY_OTHER = _canary("service-other")
SA_EMAIL = "router@fake-project.iam.gserviceaccount.com"
OPUS = "claude-opus-4-5"
OPUS_VERTEX = "claude-opus-4-5@20251101"


def rsa_key_pair(workdir):
    key = os.path.join(workdir, "sa-key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", key], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], check=True,
                         capture_output=True).stdout.decode()
    with open(key) as f:
        return f.read(), pub


class ServiceModeTest(RouterTestCase):
    # The fake refuses this beta on Vertex routes, as Vertex does: routerd must not send it.
    fake_args = ("--vertex-deny-beta", "effort-2025-11-24")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.oauth = FakeOAuth(cls.workdir).start()
        cls.private_pem, public_pem = rsa_key_pair(cls.workdir)
        cls.oauth.call("POST", "/_fake/service-accounts",
                       {"client_email": SA_EMAIL, "public_key_pem": public_pem,
                        "private_key_id": "kid-1"})

    @classmethod
    def tearDownClass(cls):
        cls.oauth.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.authd = self.start_authd()
        self.ipc = self.authd.client()
        self.addCleanup(self.ipc.close)

    def start_authd(self, state_dir=None):
        a = Authd(args=["--set", "google_token_url=%s/token" % self.oauth.url,
                        "--set", "google_revoke_url=%s/revoke" % self.oauth.url,
                        "--set", "metadata_url=%s" % self.oauth.url],
                  state_dir=state_dir, workdir=tempfile.mkdtemp(dir=self.workdir))
        self.addCleanup(self.check_authd_log, a)
        return a.start()

    def check_authd_log(self, a):
        a.stop()
        log = a.log()
        self.assertEqual(find_secret_leaks(log, self.secrets()), [],
                         "secret(s) leaked into the authd log %s" % a.log_path)
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, log, "sanitizer report in %s" % a.log_path)

    def secrets(self):
        pem_lines = [l for l in self.private_pem.splitlines() if len(l) > 40]
        tokens = [t for t in self.issued_tokens() if len(t) >= 12]
        return [KEY_MAIN, KEY_OTHER] + pem_lines[:3] + tokens + getattr(self, "secrets_extra", [])

    def issued_tokens(self):
        try:
            toks = self.oauth.call("GET", "/_fake/tokens")
        except Exception:
            return []
        toks = toks.get("tokens", toks) if isinstance(toks, dict) else toks
        if isinstance(toks, dict):
            return list(toks.keys())
        return [t.get("access_token") or t.get("token") for t in toks if isinstance(t, dict)]

    def start_service_router(self, *args, socket_path=None):
        r = self.start_router("--authd-socket", socket_path or self.authd.socket_path,
                              "--set", "vertex_base_url=%s/v1" % self.fake.url, *args, key=None)
        return r

    def add_anthropic(self, name, key):
        self.ipc.call("account.add", name=name, provider="anthropic", auth="api_key", api_key=key)

    def add_vertex(self, name, region="us-east5"):
        sa = {"type": "service_account", "project_id": "fake-project", "private_key_id": "kid-1",
              "private_key": self.private_pem, "client_email": SA_EMAIL, "client_id": "1",
              "token_uri": "%s/token" % self.oauth.url}
        self.ipc.call("account.add", name=name, provider="vertex", auth="service_account",
                      service_account_json=json.dumps(sa), project="fake-project", region=region)

    def post(self, router, body, path="/v1/messages", headers=ANTHROPIC_HEADERS):
        return http_request(router.port, "POST", path, body, headers)

    def wait_served(self, router, model="claude-sonnet-4-5", status=200, path="/v1/messages"):
        """Polls until routerd has applied the snapshot that makes model answer status."""
        last = []

        def ok():
            last[:] = [self.post(router, messages_body(model=model), path)]
            return last[0].status == status
        wait_until(ok, 10, interval=0.1, message="routerd answering %d for %s: %r" %
                   (status, model, last))
        return last[0]

    # --- Anthropic accounts ------------------------------------------------------------------

    def test_one_account_serves_both_apis_with_its_key(self):
        self.add_anthropic("main", KEY_MAIN)
        router = self.start_service_router()
        self.wait_served(router)
        self.fake.clear_requests()
        r = self.post(router, messages_body())
        self.assertEqual(r.status, 200, r)
        rec = self.fake.wait_requests(1)[0]
        self.assertEqual(rec["headers"].get("x-api-key"), KEY_MAIN)
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        r = self.post(router, json.dumps(chat).encode(), "/v1/chat/completions",
                      [("content-type", "application/json")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["object"], "chat.completion")
        rec = self.fake.wait_requests(2)[1]
        self.assertEqual(rec["headers"].get("x-api-key"), KEY_MAIN)
        self.assertIn("Service mode", router.log_text())

    def test_routes_and_aliases_follow_authd_without_restart(self):
        self.add_anthropic("main", KEY_MAIN)
        self.add_anthropic("other", KEY_OTHER)
        router = self.start_service_router()
        # Two accounts and no route: nobody serves the model, and the 503 says what to run (once
        # the snapshot is in; before it, the 503 says authd has not answered yet).
        last = []

        def no_route():
            last[:] = [self.post(router, messages_body())]
            return last[0].status == 503 and "No account" in last[0].json()["error"]["message"]
        wait_until(no_route, 10, interval=0.1, message="the no-route 503")
        r = last[0]
        self.assertEqual(r.json()["type"], "error")
        self.assertIn("No account serves model 'claude-sonnet-4-5'", r.json()["error"]["message"])
        self.assertIn("dualroutectl", r.json()["error"]["message"])
        self.assertNoUpstreamCall()

        self.ipc.call("route.set", model="*", account="main")
        self.ipc.call("route.set", model="claude-haiku-*", account="other")
        self.ipc.call("map.set", name="fast", model="claude-haiku-4-5")
        self.wait_served(router, model="fast")
        self.fake.clear_requests()
        self.assertEqual(self.post(router, messages_body(model="fast")).status, 200)
        self.assertEqual(self.post(router, messages_body(model=OPUS)).status, 200)
        recs = self.fake.wait_requests(2)
        # The alias is rewritten in the body (the one rewrite) and routed by its target.
        self.assertEqual(json.loads(recs[0]["body"])["model"], "claude-haiku-4-5")
        self.assertEqual(recs[0]["headers"].get("x-api-key"), KEY_OTHER)
        self.assertEqual(json.loads(recs[1]["body"])["model"], OPUS)
        self.assertEqual(recs[1]["headers"].get("x-api-key"), KEY_MAIN)

        # Removing the account removes its route: haiku falls back to "*".
        self.ipc.call("account.remove", name="other")
        wait_until(lambda: self.post(router, messages_body(model="fast")).status == 200 and
                   self.fake.requests()[-1]["headers"].get("x-api-key") == KEY_MAIN,
                   10, interval=0.1, message="haiku served by 'main' after 'other' went")

    def test_unreachable_authd_is_a_clear_503_in_each_api(self):
        router = self.start_service_router(socket_path=os.path.join(self.workdir, "none.sock"))
        r = self.post(router, messages_body())
        self.assertEqual(r.status, 503, r)
        self.assertIn("not reachable", r.json()["error"]["message"])
        self.assertIn("dualroute-authd", r.json()["error"]["message"])
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        r = self.post(router, json.dumps(chat).encode(), "/v1/chat/completions",
                      [("content-type", "application/json")])
        self.assertEqual(r.status, 503, r)
        self.assertIn("not reachable", r.json()["error"]["message"])
        self.assertIn("type", r.json()["error"])  # OpenAI's shape: no top-level "type"
        self.assertNotIn("type", r.json())
        self.assertNoUpstreamCall()

    def test_router_key_from_environment_is_ignored_in_service_mode(self):
        self.add_anthropic("main", KEY_MAIN)
        router = self.start_router("--authd-socket", self.authd.socket_path)  # env key set
        self.wait_served(router)
        self.assertEqual(self.fake.requests()[-1]["headers"].get("x-api-key"), KEY_MAIN)
        self.assertIn("Ignoring ANTHROPIC_API_KEY", router.log_text())

    def test_authd_restart_while_streaming(self):
        self.add_anthropic("main", KEY_MAIN)
        router = self.start_service_router()
        self.wait_served(router)
        self.fake.clear_requests()
        # A slow stream: events 200 ms apart.
        chunks = harness.sse_transcript(n_deltas=8)
        self.fake.queue({"chunks": [{"data": c, "delay_ms": 200} for c in chunks]})
        result = {}

        def stream():
            result["r"] = self.post(router, messages_body(stream=True))
        t = threading.Thread(target=stream)
        t.start()
        self.fake.wait_requests(1)
        state = self.authd.state_dir
        self.authd.stop()
        # authd is down: the stream goes on, and new requests are served from the cache.
        self.assertEqual(self.post(router, messages_body()).status, 200)
        t.join(30)
        self.assertEqual(result["r"].status, 200)
        self.assertIn(b"message_stop", result["r"].body)
        # Back up: routerd reconnects, and a change made now reaches it.
        self.authd = self.start_authd(state_dir=state)
        ipc = self.authd.client()
        self.addCleanup(ipc.close)
        ipc.call("map.set", name="after-restart", model="claude-haiku-4-5")

        def alias_applied():
            self.assertEqual(self.post(router, messages_body(model="after-restart")).status, 200)
            return json.loads(self.fake.requests()[-1]["body"])["model"] == "claude-haiku-4-5"
        wait_until(alias_applied, 45, interval=0.2, message="the new alias applied after restart")

    # --- Vertex AI ---------------------------------------------------------------------------

    def vertex_router(self):
        self.add_anthropic("main", KEY_MAIN)
        self.add_vertex("gcp")
        self.ipc.call("route.set", model="*", account="main")
        self.ipc.call("route.set", model="claude-opus-*", account="gcp")
        router = self.start_service_router()
        self.wait_served(router, model=OPUS)
        self.fake.clear_requests()
        return router

    def assert_vertex_request(self, rec, verb, model=OPUS_VERTEX):
        v = rec.get("vertex")
        self.assertIsNotNone(v, rec)
        self.assertEqual(v["project"], "fake-project")
        self.assertEqual(v["region"], "us-east5")
        self.assertEqual(v["model"], model)
        self.assertEqual(v["verb"], verb)
        auth = rec["headers"].get("authorization")
        self.assertTrue(auth.startswith("Bearer "), auth)
        self.assertIn(auth[len("Bearer "):], self.issued_tokens())
        self.assertIsNone(rec["headers"].get("x-api-key"))
        body = json.loads(rec["body"])
        self.assertEqual(body["anthropic_version"], "vertex-2023-10-16")
        return body

    def test_vertex_messages_json_stream_and_count_tokens(self):
        router = self.vertex_router()
        betas = "interleaved-thinking-2025-05-14,effort-2025-11-24"
        r = self.post(router, messages_body(model=OPUS),
                      headers=ANTHROPIC_HEADERS + [("anthropic-beta", betas)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["type"], "message")
        rec = self.fake.wait_requests(1)[0]
        body = self.assert_vertex_request(rec, "rawPredict")
        # The beta Vertex refuses is dropped, the others kept; an Anthropic account gets them all.
        self.assertEqual(rec["headers"].get("anthropic-beta"), "interleaved-thinking-2025-05-14")
        self.assertIn("effort-2025-11-24", router.log_text())
        self.assertNotIn("model", body)
        self.assertEqual(body["max_tokens"], messages_body(model=OPUS)["max_tokens"])

        r = self.post(router, messages_body(model=OPUS, stream=True))
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"event: message_stop", r.body)
        self.assert_vertex_request(self.fake.wait_requests(2)[1], "streamRawPredict")

        r = self.post(router, messages_body(model=OPUS), "/v1/messages/count_tokens")
        self.assertEqual(r.status, 200, r)
        body = self.assert_vertex_request(self.fake.wait_requests(3)[2], "rawPredict",
                                          model="count-tokens")
        self.assertEqual(body["model"], OPUS_VERTEX)

        # Other models still go to the Anthropic account.
        self.assertEqual(self.post(router, messages_body()).status, 200)
        rec = self.fake.wait_requests(4)[3]
        self.assertIsNone(rec.get("vertex"))
        self.assertEqual(rec["headers"].get("x-api-key"), KEY_MAIN)

    def test_vertex_through_chat_completions(self):
        router = self.vertex_router()
        chat = {"model": OPUS, "messages": [{"role": "user", "content": "hi"}]}
        hdrs = [("content-type", "application/json")]
        r = self.post(router, json.dumps(chat).encode(), "/v1/chat/completions", hdrs)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["object"], "chat.completion")
        self.assert_vertex_request(self.fake.wait_requests(1)[0], "rawPredict")
        chat["stream"] = True
        r = self.post(router, json.dumps(chat).encode(), "/v1/chat/completions", hdrs)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"data: [DONE]", r.body)
        self.assert_vertex_request(self.fake.wait_requests(2)[1], "streamRawPredict")

    def test_every_vertex_account_kind_serves_requests(self):
        """A gcloud ADC file (refresh_token grant) and the GCE metadata server, beside the service
        account of the other tests: each account's token reaches the upstream for its models."""
        self.oauth.call("POST", "/_fake/clients", {"client_id": "adc-client.apps",
                                                   "client_secret": "adc-client-secret"})
        seeded = self.oauth.call("POST", "/_fake/refresh-tokens", {"client_id": "adc-client.apps"})
        adc = {"type": "authorized_user", "client_id": "adc-client.apps",
               "client_secret": "adc-client-secret", "refresh_token": seeded["refresh_token"]}
        self.ipc.call("account.add", name="adc", provider="vertex", auth="gcloud_adc",
                      adc_json=json.dumps(adc), project="fake-project", region="us-east5")
        self.ipc.call("account.add", name="meta", provider="vertex", auth="metadata",
                      project="fake-project", region="us-east5")
        self.ipc.call("route.set", model="claude-haiku-*", account="adc")
        self.ipc.call("route.set", model="claude-sonnet-*", account="meta")
        accounts = {a["name"]: a for a in self.ipc.call("account.list")["accounts"]}
        self.assertEqual(accounts["adc"]["auth"], "gcloud_adc")
        self.assertEqual(accounts["meta"]["auth"], "metadata")
        self.assertNotIn(seeded["refresh_token"], json.dumps(accounts))

        router = self.start_service_router()
        self.wait_served(router, model="claude-haiku-4-5")
        self.fake.clear_requests()
        self.assertEqual(self.post(router, messages_body(model="claude-haiku-4-5")).status, 200)
        self.assertEqual(self.post(router, messages_body(model="claude-sonnet-4-5")).status, 200)
        recs = self.fake.wait_requests(2)
        self.assert_vertex_request(recs[0], "rawPredict", model="claude-haiku-4-5@20251001")
        self.assert_vertex_request(recs[1], "rawPredict", model="claude-sonnet-4-5@20250929")
        grants = {}
        toks = self.oauth.call("GET", "/_fake/tokens")
        for t in (toks.get("tokens", toks) if isinstance(toks, dict) else toks):
            if isinstance(t, dict):
                grants[t.get("access_token") or t.get("token")] = t.get("grant")
        tok = lambda rec: rec["headers"]["authorization"][len("Bearer "):]  # noqa: E731
        self.assertNotEqual(tok(recs[0]), tok(recs[1]))
        self.assertEqual(grants.get(tok(recs[0])), "refresh_token", grants)
        self.assertEqual(grants.get(tok(recs[1])), "metadata", grants)
        self.secrets_extra = [seeded["refresh_token"], "adc-client-secret"]

    def test_revoked_vertex_login_asks_for_a_new_one(self):
        router = self.vertex_router()
        self.assertEqual(self.post(router, messages_body(model=OPUS)).status, 200)
        # The operator logs out: the grant is revoked, and the upstream refuses the old token.
        reply = self.ipc.call("logout", account="gcp")
        self.assertIn("revoked", reply)
        self.fake._call("POST", "/_fake/vertex/tokens", {"tokens": ["ya29.nothing-valid"]})
        self.addCleanup(self.fake._call, "POST", "/_fake/vertex/tokens", {"tokens": []})
        r = self.post(router, messages_body(model=OPUS))
        self.assertEqual(r.status, 401, r)  # the upstream's answer, relayed
        # routerd dropped the refused token; authd says the account needs a login.
        r = self.post(router, messages_body(model=OPUS))
        self.assertEqual(r.status, 503, r)
        msg = r.json()["error"]["message"]
        self.assertIn("gcp", msg)
        self.assertIn("dualroutectl login", msg)
        status = self.ipc.call("status")
        gcp = [a for a in status["accounts"] if a["name"] == "gcp"][0]
        self.assertEqual(gcp["state"], "needs_login")


if __name__ == "__main__":
    harness.main()

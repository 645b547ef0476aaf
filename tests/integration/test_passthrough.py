#!/usr/bin/env python3
"""Pass-through: what the client sends reaches the upstream unchanged (body byte for byte, query
string, the allowed headers), what routerd must not forward stays behind (cookies, Host,
Accept-Encoding, the client's own non-key credentials), and the upstream's answer comes back with
its status, body and headers for every status a client has to handle."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import ANTHROPIC_HEADERS, ROUTER_KEY, SharedRouterTestCase, messages_body  # noqa: E402

# A body a re-serialising router would change: odd whitespace, key order, escapes, non-ASCII,
# big integers and exotic number spellings.
ODD_BODY = ('{ "z_last_key_first" : 1 ,\n\t"model":"claude-sonnet-4-5",  "max_tokens" :\t64,\r\n'
            '"messages":[ {"role":"user","content":"h\\u00e9llo \u00e9\u6f22\u5b57 \U0001F600 '
            '\\"q\\" \\/ \\n"} ],\n'
            '  "metadata": {"user_id": "u"}, "big": 123456789012345678901234567890,'
            ' "neg": -0.0, "exp": 1.5E+3, "frac": 0.1000000000000000055511151231257827,'
            ' "dup": 1, "dup": 2 }   \n')

# Numbers beyond a double (or an int64): valid JSON the upstream may accept or reject; a byte-for-
# byte router must not answer 400 itself (ARCHITECTURE.md "Parsing": huge numbers must not turn a
# valid body into a 400).
HUGE_BODY = ('{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user",'
             '"content":"x"}],"metadata":{"a":1e400,"b":-1e400,"c":1' + "0" * 400 + '}}')


class PassThroughTest(SharedRouterTestCase):
    def post(self, path, body, headers=ANTHROPIC_HEADERS):
        return self.request(self.router, "POST", path, body, headers)

    def test_body_reaches_upstream_byte_for_byte(self):
        self.fake.queue({"body": {"ok": True}})
        raw = ODD_BODY.encode("utf-8")
        r = self.post("/v1/messages", raw)
        self.assertEqual(r.status, 200, r)
        rec = self.fake.wait_requests(1)[0]
        self.assertEqual(rec["path"], "/v1/messages")
        self.assertEqual(rec["body"].encode("utf-8"), raw)
        self.assertEqual(rec["headers"].get("content-length"), str(len(raw)))

    def test_huge_numbers_are_not_refused(self):
        self.fake.queue({"body": {"ok": True}})
        r = self.post("/v1/messages", HUGE_BODY.encode())
        self.assertEqual(r.status, 200,
                         "routerd refused a body with numbers beyond a double: %r" % r)
        rec = self.fake.wait_requests(1)[0]
        self.assertEqual(rec["body"], HUGE_BODY)

    def test_query_string_kept_exactly(self):
        self.fake.queue({"body": {"ok": True}})
        r = self.post("/v1/messages?beta=true&x=%20y", messages_body())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.fake.wait_requests(1)[0]["path"], "/v1/messages?beta=true&x=%20y")

    def test_forwarded_and_dropped_request_headers(self):
        r = self.post("/v1/messages", messages_body(), headers=[
            ("Content-Type", "application/json"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
            ("anthropic-beta", "output-128k-2025-02-19"),
            ("Accept", "application/json"),
            ("Cookie", "session=abc123"),
            ("Host", "evil.example:8443"),
            ("Accept-Encoding", "gzip, br"),
            ("x-api-key", "not-used"),
            ("X-Forwarded-For", "10.9.8.7"),
            ("x-custom-client-header", "1"),
            ("anthropic-dangerous-direct-browser-access", "true"),
        ])
        self.assertEqual(r.status, 200, r)
        h = self.fake.wait_requests(1)[0]["headers"]
        self.assertEqual(h.get("anthropic-version"), "2023-06-01")
        betas = [b.strip() for b in h.get("anthropic-beta", "").split(",")]
        self.assertEqual(betas, ["prompt-caching-2024-07-31", "output-128k-2025-02-19"], h)
        self.assertEqual(h.get("content-type"), "application/json")
        self.assertEqual(h.get("accept"), "application/json")
        self.assertEqual(h.get("x-api-key"), ROUTER_KEY)
        self.assertNotIn("authorization", h)
        self.assertNotIn("cookie", h)
        self.assertNotIn("accept-encoding", h)
        self.assertNotIn("x-forwarded-for", h)
        self.assertNotIn("x-custom-client-header", h)
        self.assertNotIn("anthropic-dangerous-direct-browser-access", h)
        self.assertEqual(h.get("host"), "127.0.0.1:%d" % self.fake.port)

    def test_client_authorization_not_forwarded(self):
        r = self.post("/v1/messages", messages_body(),
                      headers=ANTHROPIC_HEADERS + [("Authorization", "Bearer not-used")])
        self.assertEqual(r.status, 200, r)
        h = self.fake.wait_requests(1)[0]["headers"]
        self.assertEqual(h.get("x-api-key"), ROUTER_KEY)
        self.assertNotIn("authorization", h)

    def test_default_json_response_unchanged(self):
        r = self.post("/v1/messages", messages_body())
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["usage"]["input_tokens"], 28)
        self.assertEqual(body["model"], "claude-sonnet-4-5")
        self.assertRegex(r.header("request-id") or "", r"^req_fake_\d+$")
        self.assertTrue(r.header("x-dualroute-request-id"), r)
        self.assertEqual(r.header("content-length"), str(len(r.body)))

    def test_status_body_and_headers_come_back(self):
        for status in (200, 400, 401, 429, 500, 529):
            with self.subTest(status=status):
                self.fake.reset()
                body = ('{"type":"error","error":{"type":"x_%d","message":"m\u00e9ssage %d"},'
                        '"request_id":"req_script_%d"}  ' % (status, status, status)).encode()
                headers = {
                    "request-id": "req_script_%d" % status,
                    "anthropic-ratelimit-requests-limit": "50",
                    "anthropic-ratelimit-requests-remaining": "0",
                    "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:00Z",
                    "anthropic-organization-id": "org-1",
                    "x-should-retry": "true" if status >= 429 else "false",
                    "set-cookie": "upstream=secret",
                    "x-upstream-internal": "hidden",
                    "content-type": "application/json",
                }
                if status in (429, 529):
                    headers["retry-after"] = "17"
                    headers["retry-after-ms"] = "17000"
                self.fake.queue({"status": status, "headers": headers,
                                 "body": body.decode()})
                r = self.post("/v1/messages", messages_body())
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.body, body)
                for name, value in headers.items():
                    if name in ("set-cookie", "x-upstream-internal"):
                        self.assertIsNone(r.header(name), "%s leaked to the client" % name)
                    else:
                        self.assertEqual(r.header(name), value, "header %s: %r" % (name, r))
                self.assertEqual(len(self.fake.requests()), 1, "routerd retried")

    def test_count_tokens(self):
        r = self.post("/v1/messages/count_tokens?beta=true",
                      {"model": "claude-sonnet-4-5",
                       "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b'{"input_tokens":42}')
        rec = self.fake.wait_requests(1)[0]
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(rec["path"], "/v1/messages/count_tokens?beta=true")
        self.assertEqual(rec["headers"]["x-api-key"], ROUTER_KEY)

    def test_models_list_and_item(self):
        direct = harness.http_request(self.fake.port, "GET", "/v1/models",
                                      headers=[("x-api-key", "k")])
        self.fake.clear_requests()
        r = self.request(self.router, "GET", "/v1/models?limit=2",
                         headers=[("anthropic-version", "2023-06-01")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, direct.body)
        self.assertEqual([m["id"] for m in r.json()["data"]],
                         ["claude-opus-4-7", "claude-sonnet-4-5", "claude-haiku-4-5"])
        r = self.request(self.router, "GET", "/v1/models/claude-haiku-4-5")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], "claude-haiku-4-5")
        recs = self.fake.wait_requests(2)
        self.assertEqual(recs[0]["method"], "GET")
        self.assertEqual(recs[0]["path"], "/v1/models?limit=2")
        self.assertEqual(recs[0]["headers"].get("anthropic-version"), "2023-06-01")
        self.assertEqual(recs[0]["headers"]["x-api-key"], ROUTER_KEY)
        self.assertEqual(recs[1]["path"], "/v1/models/claude-haiku-4-5")

    def test_unknown_model_is_upstream_404(self):
        r = self.request(self.router, "GET", "/v1/models/claude-nonexistent-9",
                         headers=[("anthropic-version", "2023-06-01")])
        harness.assert_anthropic_error(self, r, 404, "not_found_error")
        recs = self.fake.requests()
        self.assertEqual(len(recs), 1)
        self.assertEqual(r.header("request-id"), "req_fake_%d" % recs[0]["id"])

    def test_invalid_model_id_never_reaches_upstream(self):
        for path in ("/v1/models/a%2F..%2Fb", "/v1/models/..%2F..%2Fv1%2Fmessages",
                     "/v1/models/a%3Fx=1", "/v1/models/a/b", "/v1/models/%20"):
            with self.subTest(path=path):
                r = self.request(self.router, "GET", path,
                                 headers=[("anthropic-version", "2023-06-01")])
                harness.assert_anthropic_error(self, r, 404)
        self.assertNoUpstreamCall()

    def test_model_id_with_nul_is_not_truncated(self):
        # libmicrohttpd decodes %00 into a NUL that ends the C string: "a%00b" must not become a
        # request for model "a".
        r = self.request(self.router, "GET", "/v1/models/claude-haiku-4-5%00evil",
                         headers=[("anthropic-version", "2023-06-01")])
        self.assertEqual(r.status, 404, r)
        self.assertNoUpstreamCall()

    def test_health_exact(self):
        r = self.request(self.router, "GET", "/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"status":"ok","service":"dualroute"}')
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(self.fake.requests(), [])


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""Client keys: a client's own Anthropic key goes upstream for its request (x-api-key or Bearer),
placeholder keys fall back to the router's key, subscription tokens are refused before any upstream
call, and a router without a key says so."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, CLIENT_BEARER_KEY, CLIENT_KEY, ROUTER_KEY,  # noqa: E402
                     SUBSCRIPTION_TOKEN, RouterTestCase, assert_anthropic_error, messages_body)


class KeysTest(RouterTestCase):
    def post(self, router, headers, body=None):
        return self.request(router, "POST", "/v1/messages", body or messages_body(),
                            ANTHROPIC_HEADERS + headers)

    def upstream_key(self):
        rec = self.fake.wait_requests(1)[-1]
        self.assertNotIn("authorization", rec["headers"])
        return rec["headers"].get("x-api-key")

    def test_client_key_in_x_api_key_is_used(self):
        router = self.start_router()
        r = self.post(router, [("x-api-key", CLIENT_KEY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_key(), CLIENT_KEY)
        router.wait_for_log(r"via client key \([0-9a-f]{8}\)")

    def test_client_key_in_bearer_is_used(self):
        router = self.start_router()
        r = self.post(router, [("Authorization", "Bearer " + CLIENT_BEARER_KEY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_key(), CLIENT_BEARER_KEY)

    def test_x_api_key_wins_over_bearer(self):
        router = self.start_router()
        r = self.post(router, [("x-api-key", CLIENT_KEY),
                               ("Authorization", "Bearer " + CLIENT_BEARER_KEY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_key(), CLIENT_KEY)

    def test_placeholder_keys_use_router_key(self):
        router = self.start_router()
        for headers in ([("x-api-key", "not-used")], [("Authorization", "Bearer not-used")],
                        [("x-api-key", "dummy")], [("Authorization", "Basic dXNlcjpwdw==")], []):
            with self.subTest(headers=headers):
                self.fake.reset()
                r = self.post(router, headers)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(self.upstream_key(), ROUTER_KEY)

    def test_passthrough_disabled_uses_router_key(self):
        router = self.start_router("--disable-bearer-passthrough")
        for headers in ([("x-api-key", CLIENT_KEY)],
                        [("Authorization", "Bearer " + CLIENT_BEARER_KEY)]):
            with self.subTest(headers=headers[0][0]):
                self.fake.reset()
                r = self.post(router, headers)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(self.upstream_key(), ROUTER_KEY)

    def test_subscription_token_refused(self):
        router = self.start_router()
        for headers in ([("x-api-key", SUBSCRIPTION_TOKEN)],
                        [("Authorization", "Bearer " + SUBSCRIPTION_TOKEN)]):
            with self.subTest(headers=headers[0][0]):
                r = self.post(router, headers)
                body = assert_anthropic_error(self, r, 401, "authentication_error")
                self.assertIn("subscription", body["error"]["message"].lower())
                self.assertNotIn(SUBSCRIPTION_TOKEN[:20], r.body.decode())
        r = self.request(router, "GET", "/v1/models",
                         headers=[("anthropic-version", "2023-06-01"),
                                  ("x-api-key", SUBSCRIPTION_TOKEN)])
        assert_anthropic_error(self, r, 401, "authentication_error")
        self.assertNoUpstreamCall()

    def test_no_router_key_and_no_client_key(self):
        router = self.start_router(key=None)
        router.wait_for_log(r"No Anthropic API key")
        r = self.post(router, [("x-api-key", "not-used")])
        body = assert_anthropic_error(self, r, 401, "authentication_error")
        msg = body["error"]["message"]
        self.assertIn("ANTHROPIC_API_KEY", msg)
        self.assertIn("x-api-key", msg)
        # An OpenAI-shaped 401 on a shared path without anthropic-version.
        r = self.request(router, "GET", "/v1/models")
        harness.assert_openai_error(self, r, 401)
        self.assertNoUpstreamCall()

    def test_no_router_key_with_client_key(self):
        router = self.start_router(key=None)
        r = self.post(router, [("x-api-key", CLIENT_KEY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_key(), CLIENT_KEY)

    def test_upstream_rejects_client_key(self):
        router = self.start_router()
        r = self.post(router, [("x-api-key", "sk-ant-api03-invalid")])
        body = assert_anthropic_error(self, r, 401, "authentication_error")
        self.assertEqual(body["error"]["message"], "invalid x-api-key")
        self.assertEqual(len(self.fake.requests()), 1)

    def test_models_with_client_key(self):
        router = self.start_router()
        r = self.request(router, "GET", "/v1/models", headers=[("x-api-key", CLIENT_KEY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_key(), CLIENT_KEY)

    def test_keys_do_not_mix_between_requests(self):
        """Alternating client and router keys on one keep-alive connection."""
        router = self.start_router()
        c = harness.RawConnection(router.port)
        self.addCleanup(c.close)
        expected = []
        for i in range(6):
            key = [CLIENT_KEY, "not-used", CLIENT_BEARER_KEY][i % 3]
            hdr = ("Authorization", "Bearer " + key) if i % 2 else ("x-api-key", key)
            r = c.request("POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS + [hdr])
            self.assertEqual(r.status, 200, r)
            expected.append(ROUTER_KEY if key == "not-used" else key)
        recs = self.fake.wait_requests(6)
        self.assertEqual([r["headers"]["x-api-key"] for r in recs], expected)


if __name__ == "__main__":
    harness.main()

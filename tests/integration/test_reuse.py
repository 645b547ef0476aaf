#!/usr/bin/env python3
"""Upstream connection reuse: sequential requests share one upstream connection (with TLS to the
real API, each new connection costs a handshake), whatever the client does with its own
connections."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import ANTHROPIC_HEADERS, RawConnection, RouterTestCase, messages_body  # noqa: E402


class ReuseTest(RouterTestCase):
    def setUp(self):
        super().setUp()
        self.router = self.start_router()

    def connections(self):
        return self.fake.stats()["connections_total"]

    def test_sequential_requests_reuse_one_connection(self):
        before = self.connections()
        for i in range(50):
            # A new client connection each time; the upstream side must still be reused.
            body = messages_body(stream=(i % 2 == 1))
            r = self.request(self.router, "POST", "/v1/messages", body, ANTHROPIC_HEADERS)
            self.assertEqual(r.status, 200)
        self.request(self.router, "GET", "/v1/models")
        self.request(self.router, "POST", "/v1/messages/count_tokens", messages_body(),
                     ANTHROPIC_HEADERS)
        grew = self.connections() - before
        self.assertLessEqual(grew, 2, "50 sequential requests opened %d upstream connections"
                             % grew)
        self.assertGreaterEqual(len(self.fake.requests()), 52)

    def test_reuse_after_errors(self):
        """Error replies (4xx/5xx with a body) do not cost the upstream connection."""
        before = self.connections()
        for status in (400, 401, 404, 429, 500, 529) * 3:
            self.fake.queue({"status": status})
            r = self.request(self.router, "POST", "/v1/messages", messages_body(),
                             ANTHROPIC_HEADERS)
            self.assertEqual(r.status, status)
        self.assertLessEqual(self.connections() - before, 2)

    def test_keepalive_client_and_pool(self):
        before = self.connections()
        c = RawConnection(self.router.port)
        self.addCleanup(c.close)
        for _ in range(20):
            r = c.request("POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
            self.assertEqual(r.status, 200)
        self.assertLessEqual(self.connections() - before, 1)

    def test_parallel_then_sequential(self):
        """10 parallel requests open up to 10 connections; the ones after reuse them."""
        errors = []

        def one():
            try:
                body = messages_body()
                body["fake"] = {"first_byte_delay_ms": 300}
                r = harness.http_request(self.router.port, "POST", "/v1/messages", body,
                                         ANTHROPIC_HEADERS)
                if r.status != 200:
                    errors.append(r)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(errors, [])
        mid = self.connections()
        for _ in range(20):
            r = self.request(self.router, "POST", "/v1/messages", messages_body(),
                             ANTHROPIC_HEADERS)
            self.assertEqual(r.status, 200)
        self.assertLessEqual(self.connections() - mid, 1)


if __name__ == "__main__":
    harness.main()

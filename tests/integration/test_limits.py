#!/usr/bin/env python3
"""Request limits and routing errors: bad bodies get a 400 in the API's error shape without an
upstream call, oversized bodies a 413 before routerd reads them, oversized header blocks an error
from libmicrohttpd (and routerd keeps serving), unknown paths and wrong methods 404/405 in the
shape the client expects, disabled endpoints 404."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, PeerClosed, RawConnection, RouterTestCase,  # noqa: E402
                     SharedRouterTestCase, assert_anthropic_error, assert_openai_error,
                     build_request, chunked_encode, messages_body)

MB = 1024 * 1024


def padded_body(size):
    """A valid Messages body of exactly size bytes (padded with spaces inside the object)."""
    head = b'{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user",' \
           b'"content":"hi"}]'
    pad = size - len(head) - 1
    assert pad >= 0
    return head + b" " * pad + b"}"


class BadBodyTest(SharedRouterTestCase):
    def post(self, body, path="/v1/messages", headers=ANTHROPIC_HEADERS):
        return self.request(self.router, "POST", path, body, headers)

    def check_400(self, body, path="/v1/messages"):
        r = self.post(body, path)
        err = assert_anthropic_error(self, r, 400, "invalid_request_error")
        self.assertEqual(err.get("request_id"), r.header("x-dualroute-request-id"))
        return err

    def test_malformed_json(self):
        for body in (b'{"model": "claude", ', b'{"a":1}}', b"not json", b"{'a':1}",
                     b'{"a":tru}', b""):
            with self.subTest(body=body):
                self.check_400(body)
        self.assertNoUpstreamCall()

    def test_non_object_bodies(self):
        for body in (b"[]", b'[{"model":"x"}]'):
            with self.subTest(body=body):
                err = self.check_400(body)
                self.assertIn("object", err["error"]["message"])
        for body in (b'"string"', b"42", b"null", b"true"):
            with self.subTest(body=body):
                self.check_400(body)
        self.check_400(b"[1,2]", "/v1/messages/count_tokens")
        self.assertNoUpstreamCall()

    def test_invalid_utf8(self):
        for body in (b'{"model":"claude-sonnet-4-5","messages":[{"content":"\xff\xfe"}]}',
                     b'{"model":"\xc3\x28"}', b'{"model":"\xed\xa0\x80"}',  # a surrogate
                     b'{"a":"x\x00y"}'):
            with self.subTest(body=body):
                self.check_400(body)
        self.assertNoUpstreamCall()

    def test_deep_nesting(self):
        for body in (b"[" * 10000 + b"]" * 10000,
                     b'{"model":"m","a":' + b"[" * 10000 + b"]" * 10000 + b"}",
                     b'{"a":' * 10000 + b"1" + b"}" * 10000):
            with self.subTest(len=len(body), start=body[:6]):
                t0 = time.monotonic()
                self.check_400(body)
                self.assertLess(time.monotonic() - t0, 1.0)
        self.assertNoUpstreamCall()
        self.assertEqual(self.request(self.router, "GET", "/health").status, 200)

    def test_unknown_path(self):
        r = self.request(self.router, "GET", "/v2/whatever")
        body = assert_openai_error(self, r, 404)
        self.assertEqual(body["error"]["type"], "not_found_error")
        r = self.request(self.router, "POST", "/v1/complete", b"{}", ANTHROPIC_HEADERS)
        assert_anthropic_error(self, r, 404, "not_found_error")
        r = self.request(self.router, "GET", "/", headers=[("anthropic-version", "2023-06-01")])
        assert_anthropic_error(self, r, 404, "not_found_error")
        r = self.request(self.router, "GET", "/v1/messages/batches")
        self.assertEqual(r.status, 404)
        self.assertNoUpstreamCall()

    def test_method_not_allowed(self):
        cases = [("GET", "/v1/messages", "POST", "anthropic"),
                 ("DELETE", "/v1/messages/count_tokens", "POST", "anthropic"),
                 ("POST", "/health", "GET", None),
                 ("POST", "/v1/models", "GET", None),
                 ("PUT", "/v1/models/claude-haiku-4-5", "GET", None),
                 ("GET", "/v1/chat/completions", "POST", "openai")]
        for method, path, allow, shape in cases:
            with self.subTest(method=method, path=path):
                r = self.request(self.router, method, path, b"{}" if method != "GET" else None,
                                 [("content-type", "application/json")])
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header("allow"), allow)
                if shape == "anthropic":
                    assert_anthropic_error(self, r, 405)
                elif shape == "openai":
                    assert_openai_error(self, r, 405)
        self.assertNoUpstreamCall()

    def test_chat_completions_bad_bodies(self):
        """/v1/chat/completions refuses bad bodies in the OpenAI shape, without an upstream call."""
        for body in (b'{"model": "gpt-4o", ', b"[]", b'{"model":"\xff"}', b"[" * 10000):
            with self.subTest(body=body[:20]):
                r = self.request(self.router, "POST", "/v1/chat/completions", body,
                                 [("content-type", "application/json"),
                                  ("authorization", "Bearer not-used")])
                assert_openai_error(self, r, 400)
        self.assertNoUpstreamCall()

    def test_strict_http_parsing(self):
        """Malformed request lines and headers: an error from libmicrohttpd, no crash."""
        for raw in (b"GET /health HTTP/1.1\r\nHost: x\r\nBadHeaderWithoutColon\r\n\r\n",
                    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
                    b"GET\r\n\r\n",
                    b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"):
            with self.subTest(raw=raw[:40]):
                with RawConnection(self.router.port, timeout=5) as c:
                    c.send(raw)
                    try:
                        status, _ = c.read_head(timeout=5)
                        self.assertGreaterEqual(status, 400)
                    except (PeerClosed, ConnectionResetError):
                        pass
        self.assertEqual(self.request(self.router, "GET", "/health").status, 200)
        self.assertNoUpstreamCall()


class SizeLimitTest(SharedRouterTestCase):
    router_args = ("--set", "max_body_size=1M")

    def test_declared_length_over_limit_refused_before_body(self):
        with RawConnection(self.router.port, timeout=10) as c:
            c.send(build_request("POST", "/v1/messages", None, ANTHROPIC_HEADERS + [
                ("Content-Length", str(2 * MB))]))
            # No body is sent: the answer must come anyway.
            status, headers = c.read_head(timeout=5)
            self.assertEqual(status, 413)
            body = c.read_body(headers, timeout=5, status=status)
            r = harness.Response(status, "", headers, body)
            err = assert_anthropic_error(self, r, 413, "request_too_large")
            self.assertIn("1", err["error"]["message"])
            self.assertIsNotNone(c.wait_closed(5), "connection left open after a 413")
        self.assertNoUpstreamCall()

    def test_expect_100_continue_over_limit(self):
        with RawConnection(self.router.port, timeout=10) as c:
            c.send(build_request("POST", "/v1/messages", None, ANTHROPIC_HEADERS + [
                ("Content-Length", str(5 * MB)), ("Expect", "100-continue")]))
            status, headers = c.read_head(timeout=5)
            self.assertEqual(status, 413, "got %d instead of 413 (a 100 Continue invites the body)"
                             % status)
        self.assertNoUpstreamCall()

    def test_chunked_body_over_limit(self):
        body = padded_body(2 * MB)
        with RawConnection(self.router.port, timeout=15) as c:
            req = build_request("POST", "/v1/messages", None, ANTHROPIC_HEADERS + [
                ("Transfer-Encoding", "chunked")]) + chunked_encode(body, 64 * 1024)
            t = c.send_background(req)
            status, headers = c.read_head(timeout=10)
            t.join(10)
            self.assertEqual(status, 413)
            r = harness.Response(status, "", headers, c.read_body(headers, 5, status))
            assert_anthropic_error(self, r, 413, "request_too_large")
        self.assertNoUpstreamCall()

    def test_boundary(self):
        self.fake.queue({"body": {"ok": True}})
        body = padded_body(MB)
        r = self.request(self.router, "POST", "/v1/messages", body, ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200, r)
        rec = self.fake.wait_requests(1)[0]
        self.assertEqual(len(rec["body"]), MB)
        self.assertEqual(rec["body"].encode(), body)
        self.fake.reset()
        # One byte over: 413. routerd answers before reading the body and closes the connection,
        # so the client must read while it sends (as HTTP clients that watch for an early
        # response do).
        with RawConnection(self.router.port, timeout=15) as c:
            t = c.send_background(build_request("POST", "/v1/messages", padded_body(MB + 1),
                                                ANTHROPIC_HEADERS))
            status, headers = c.read_head(timeout=10)
            r = harness.Response(status, "", headers, c.read_body(headers, 5, status))
            assert_anthropic_error(self, r, 413, "request_too_large")
            c.close()
            t.join(5)
        # Chunked, exactly at the limit: served.
        self.fake.queue({"body": {"ok": True}})
        with RawConnection(self.router.port, timeout=15) as c:
            c.send(build_request("POST", "/v1/messages", None, ANTHROPIC_HEADERS + [
                ("Transfer-Encoding", "chunked")]) + chunked_encode(body, 100000))
            r = c.read_response(timeout=10)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.fake.wait_requests(1)[0]["body"]), MB)

    def test_header_block_over_limit(self):
        big = "a" * (40 * 1024)
        for headers, path in (([("x-big", big)], "/health"),
                              ([("x-h%d" % i, "v" * 20) for i in range(3000)], "/health"),
                              ([], "/health?" + big)):
            with self.subTest(n=len(headers), path=path[:20]):
                with RawConnection(self.router.port, timeout=10) as c:
                    try:
                        c.send(build_request("GET", path, None, headers))
                        status, _ = c.read_head(timeout=5)
                        self.assertGreaterEqual(status, 400)
                        self.assertLess(status, 500)
                    except (PeerClosed, ConnectionResetError, BrokenPipeError):
                        pass
                    except socket.timeout:
                        self.fail("no answer and no close for an oversized header block")
                r = self.request(self.router, "GET", "/health")
                self.assertEqual(r.status, 200)
        # Still serving real requests.
        r = self.request(self.router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)

    def test_header_block_under_limit(self):
        r = self.request(self.router, "POST", "/v1/messages", messages_body(),
                         ANTHROPIC_HEADERS + [("x-pad", "p" * 16000)])
        self.assertEqual(r.status, 200, r)


class DisabledEndpointsTest(RouterTestCase):
    def test_disable_anthropic(self):
        router = self.start_router("--disable-anthropic")
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            r = self.request(router, "POST", path, messages_body(),
                             [("content-type", "application/json")])
            err = assert_anthropic_error(self, r, 404, "not_found_error")
            self.assertIn("disable", err["error"]["message"])
        self.assertNoUpstreamCall()
        # The OpenAI endpoint still works.
        r = self.request(router, "POST", "/v1/chat/completions",
                         {"model": "claude-sonnet-4-5",
                          "messages": [{"role": "user", "content": "hi"}]},
                         [("content-type", "application/json")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("object"), "chat.completion")
        self.assertEqual(self.request(router, "GET", "/health").status, 200)

    def test_disable_openai(self):
        router = self.start_router("--disable-openai")
        r = self.request(router, "POST", "/v1/chat/completions",
                         {"model": "claude-sonnet-4-5",
                          "messages": [{"role": "user", "content": "hi"}]},
                         [("content-type", "application/json"),
                          ("anthropic-version", "2023-06-01")])
        err = assert_openai_error(self, r, 404)
        self.assertIn("disable", err["error"]["message"])
        self.assertNoUpstreamCall()
        r = self.request(router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)

    def test_enable_all_after_disable(self):
        router = self.start_router("--disable-anthropic", "--enable-all-endpoints")
        r = self.request(router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)


if __name__ == "__main__":
    harness.main()

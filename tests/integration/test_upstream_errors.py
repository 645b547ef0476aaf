#!/usr/bin/env python3
"""Upstream failures: unreachable (502), silent (504 at the first-byte timeout), and failures after
the reply started (a cut, a stall, a stream that ends without message_stop), which must end an SSE
stream with an error event the SDKs raise rather than a silent EOF that looks like success."""

import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, PeerClosed, RawConnection, RouterTestCase,  # noqa: E402
                     assert_anthropic_error, assert_openai_error, build_request, messages_body,
                     parse_sse, sse_transcript)


class BadUpstream:
    """A TCP server on 127.0.0.1 that reads a request and then misbehaves: mode "close" closes
    without a byte, "garbage" answers with something that is not HTTP."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    b = conn.recv(65536)
                    if not b:
                        break
                    data += b
                if self.mode == "garbage":
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not http at all\r\n\r\n")
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()


def last_event(body):
    events = parse_sse(body)
    return events[-1][0], json.loads(events[-1][1]) if events else None


class UpstreamErrorTest(RouterTestCase):
    def stream(self, router, script=None, body=None, timeout=15):
        body = body or messages_body(stream=True)
        if script is not None:
            body["fake"] = script
        c = RawConnection(router.port, timeout=timeout)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        return c, status, headers

    def assert_error_event(self, body, expect_prefix=None):
        name, data = last_event(body)
        self.assertEqual(name, "error", "the stream did not end with an error event:\n%s"
                         % body[-600:].decode("utf-8", "replace"))
        self.assertEqual(data["type"], "error")
        self.assertEqual(data["error"]["type"], "api_error")
        self.assertTrue(data["error"]["message"])
        if expect_prefix is not None:
            self.assertTrue(body.startswith(expect_prefix), "the bytes before the error changed")
        self.assertEqual(sum(1 for e, _ in parse_sse(body) if e == "error"), 1)
        return data

    def test_upstream_unreachable(self):
        router = self.start_router(upstream="http://127.0.0.1:%d" % harness.closed_port())
        r = self.request(router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        err = assert_anthropic_error(self, r, 502, "api_error")
        self.assertIn("upstream", err["error"]["message"].lower())
        r = self.request(router, "POST", "/v1/messages", messages_body(stream=True),
                         ANTHROPIC_HEADERS)
        assert_anthropic_error(self, r, 502)
        r = self.request(router, "GET", "/v1/models")
        assert_openai_error(self, r, 502)
        self.assertLess(r.elapsed, 5)
        # The router itself is fine.
        self.assertEqual(self.request(router, "GET", "/health").status, 200)

    def test_upstream_closes_without_answer(self):
        bad = BadUpstream("close")
        self.addCleanup(bad.close)
        router = self.start_router(upstream=bad.url)
        r = self.request(router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        assert_anthropic_error(self, r, 502)
        self.assertEqual(bad.accepted, 1, "routerd retried")

    def test_upstream_speaks_garbage(self):
        bad = BadUpstream("garbage")
        self.addCleanup(bad.close)
        router = self.start_router(upstream=bad.url)
        r = self.request(router, "POST", "/v1/messages", messages_body(stream=True),
                         ANTHROPIC_HEADERS)
        assert_anthropic_error(self, r, 502)

    def test_first_byte_timeout(self):
        router = self.start_router("--set", "upstream_first_byte_timeout=1s")
        for stream in (False, True):
            with self.subTest(stream=stream):
                self.fake.reset()
                body = messages_body(stream=stream)
                body["fake"] = {"hang": True}
                t0 = time.monotonic()
                r = self.request(router, "POST", "/v1/messages", body, ANTHROPIC_HEADERS)
                elapsed = time.monotonic() - t0
                err = assert_anthropic_error(self, r, 504, "timeout_error")
                self.assertIn("1 s", err["error"]["message"])
                self.assertGreater(elapsed, 0.9)
                self.assertLess(elapsed, 2.5)
                # The upstream transfer was ended too.
                rec = self.fake.wait_ended(1, timeout=5)[0]
                self.assertIn(rec["ended"], ("client_abort", "error"))

    def test_slow_first_byte_within_timeout(self):
        router = self.start_router("--set", "upstream_first_byte_timeout=2s")
        body = messages_body(stream=True)
        body["fake"] = {"first_byte_delay_ms": 1000}
        r = self.request(router, "POST", "/v1/messages", body, ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)
        self.assertEqual(parse_sse(r.body)[-1][0], "message_stop")

    def test_cut_mid_stream(self):
        router = self.start_router()
        c, status, headers = self.stream(router, {"cut_after": 5})
        self.assertEqual(status, 200)
        body = c.read_body(headers)  # the response itself must end cleanly
        events = parse_sse(body)
        self.assertEqual([e for e, _ in events[:5]],
                         ["message_start", "ping", "content_block_start", "content_block_delta",
                          "content_block_delta"])
        self.assertEqual(len(events), 6)
        self.assert_error_event(body)
        router.wait_for_log(r"✗ 200 .*Upstream connection lost")

    def test_cut_custom_stream_keeps_bytes(self):
        router = self.start_router()
        ev = sse_transcript(n_deltas=4)
        c, status, headers = self.stream(router, {"chunks": ev, "cut_after": 4})
        body = c.read_body(headers)
        self.assert_error_event(body, "".join(ev[:4]).encode())

    def test_stall_mid_stream(self):
        router = self.start_router("--set", "upstream_idle_timeout=1s")
        c, status, headers = self.stream(router, {"hang_after": 4})
        self.assertEqual(status, 200)
        body = b""
        t_last = t_err = None
        for t, piece in c.iter_body(headers, timeout=10):
            body += piece
            if t_err is None and b"event: error" in body:
                t_err = t
            elif t_err is None:
                t_last = t
        # The loop ended: the response itself was ended cleanly after the error event.
        self.assertIsNotNone(t_err, "no error event:\n%s" % body.decode("utf-8", "replace"))
        gap = t_err - t_last
        self.assertGreater(gap, 0.9)
        self.assertLess(gap, 2.5, "the stall was reported %.1f s after the last byte" % gap)
        self.assertEqual(len(parse_sse(body)), 5)
        data = self.assert_error_event(body)
        self.assertIn("1 s", data["error"]["message"])
        rec = self.fake.wait_ended(1, timeout=5)[0]
        self.assertIn(rec["ended"], ("client_abort", "error"))

    def test_slow_stream_within_idle_timeout(self):
        router = self.start_router("--set", "upstream_idle_timeout=1s")
        ev = sse_transcript(n_deltas=4)
        c, status, headers = self.stream(router, {"chunks": [{"data": e, "delay_ms": 600}
                                                             for e in ev]})
        body = c.read_body(headers)
        self.assertEqual(body, "".join(ev).encode())

    def test_stream_without_message_stop(self):
        router = self.start_router()
        ev = sse_transcript(n_deltas=3, stop=False)
        c, status, headers = self.stream(router, {"chunks": ev})
        body = c.read_body(headers)
        data = self.assert_error_event(body, "".join(ev).encode())
        self.assertIn("message_stop", data["error"]["message"])

    def test_upstream_error_event_passed_as_is(self):
        """An upstream that ends its stream with its own error event: nothing is added."""
        router = self.start_router()
        ev = sse_transcript(n_deltas=2, stop=False)[:4] + [
            'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            '"message":"Overloaded"}}\n\n']
        c, status, headers = self.stream(router, {"chunks": ev})
        body = c.read_body(headers)
        self.assertEqual(body, "".join(ev).encode())

    def test_error_status_stream_not_appended(self):
        """A 529 with an error body (not SSE) comes back as it is."""
        router = self.start_router()
        c, status, headers = self.stream(router, {"status": 529})
        self.assertEqual(status, 529)
        r = harness.Response(status, "", headers, c.read_body(headers, status=status))
        assert_anthropic_error(self, r, 529, "overloaded_error")

    def test_truncated_json_reply_is_not_completed(self):
        router = self.start_router()
        # A JSON reply sent chunked and cut: the client must see a broken response, not a
        # complete one.
        script = {"chunks": ['{"id":"msg_1","type":"message",', '"content":[]', '}'],
                  "headers": {"content-type": "application/json"}, "cut_after": 2}
        body = messages_body()
        body["fake"] = script
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        self.assertEqual(status, 200)
        with self.assertRaises(PeerClosed):
            c.read_body(headers)

    def test_truncated_content_length_reply(self):
        router = self.start_router()
        body = messages_body()
        body["fake"] = {"body": '{"id":"msg_1","type":"message","content":[]}', "cut_after": 0}
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        try:
            status, headers = c.read_head()
        except PeerClosed:
            return  # closed before the head: also a visible failure
        if status == 200:
            with self.assertRaises(PeerClosed):
                c.read_body(headers)
        else:
            self.assertGreaterEqual(status, 500)


if __name__ == "__main__":
    harness.main()

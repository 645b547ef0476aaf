#!/usr/bin/env python3
"""Client disconnects: when a client goes away, routerd ends the upstream transfer within about a
second (so the upstream stops generating tokens that nobody reads), whether the stream was running
or the upstream had not answered yet, and it leaks no file descriptor doing so."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, RawConnection, RouterTestCase, build_request,  # noqa: E402
                     messages_body, now_ms, sse_transcript, wait_until)

# The contract is "within ~1 s". The sweep that watches suspended connections runs every 0.5 s, so
# the delays seen are 0 to 0.55 s, which leaves about 0.45 s for a loaded machine.
DETECT_MS = 1000


def slow_stream_script(n=20, delay_ms=200):
    ev = sse_transcript(n_deltas=n)
    return {"chunks": [ev[0]] + [{"data": e, "delay_ms": delay_ms} for e in ev[1:]]}


class DisconnectTest(RouterTestCase):
    def setUp(self):
        super().setUp()
        self.router = self.start_router()

    def start_stream(self, script):
        body = messages_body(stream=True)
        body["fake"] = script
        c = RawConnection(self.router.port, timeout=15)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        return c

    def assert_upstream_aborted(self, closed_at_ms, n=1):
        recs = self.fake.wait_ended(n, timeout=10)
        rec = recs[-1]
        self.assertEqual(rec["ended"], "client_abort", rec)
        delay = rec["ended_at_ms"] - closed_at_ms
        self.assertLess(delay, DETECT_MS,
                        "the upstream transfer ended %.0f ms after the client left" % delay)
        return delay

    def test_close_mid_stream(self):
        c = self.start_stream(slow_stream_script())
        status, headers = c.read_head()
        self.assertEqual(status, 200)
        got = b""
        for _, piece in c.iter_body(headers, timeout=10):
            got += piece
            if got.count(b"\n\n") >= 3:
                break
        closed = now_ms()
        c.close()
        self.assert_upstream_aborted(closed)
        # Still serving.
        r = self.request(self.router, "GET", "/health")
        self.assertEqual(r.status, 200)

    def test_reset_mid_stream(self):
        c = self.start_stream(slow_stream_script())
        status, headers = c.read_head()
        next(c.iter_body(headers, timeout=10))
        time.sleep(0.3)
        closed = now_ms()
        c.abort()
        self.assert_upstream_aborted(closed)

    def test_close_while_upstream_thinks(self):
        """The upstream has not sent a byte (first_byte_delay): the client leaves."""
        c = self.start_stream({"first_byte_delay_ms": 20000})
        self.fake.wait_requests(1)
        time.sleep(0.7)  # past at least one sweep, so the connection is suspended and watched
        closed = now_ms()
        c.close()
        self.assert_upstream_aborted(closed)

    def test_close_while_upstream_hangs(self):
        c = self.start_stream({"hang": True})
        self.fake.wait_requests(1)
        closed = now_ms()
        c.close()
        self.assert_upstream_aborted(closed)

    def test_close_while_json_reply_pending(self):
        body = messages_body()
        body["fake"] = {"first_byte_delay_ms": 20000}
        c = RawConnection(self.router.port, timeout=15)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        self.fake.wait_requests(1)
        closed = now_ms()
        c.close()
        self.assert_upstream_aborted(closed)

    def assert_logged_as_disconnect(self):
        """The request's outcome line (normal log mode) reports the disconnect, not a success."""
        m = self.router.wait_for_log(r"\[(rq_[0-9a-f]+)\] [✓✗] ")
        line = m.string
        self.assertIn("✗", line, "a request the client abandoned was logged as a success")
        self.assertIn("client disconnected", line)

    def test_log_mid_stream_disconnect(self):
        # A long pause after the first events: routerd writes nothing between the close and the
        # moment it notices it, as with a model that thinks between blocks.
        ev = sse_transcript(n_deltas=3)
        c = self.start_stream({"chunks": ev[:2] + [{"data": e, "delay_ms": 5000} for e in ev[2:]]})
        status, headers = c.read_head()
        next(c.iter_body(headers, timeout=10))
        c.close()
        self.fake.wait_ended(1)
        self.assert_logged_as_disconnect()

    def test_log_disconnect_before_first_byte(self):
        c = self.start_stream({"hang": True})
        self.fake.wait_requests(1)
        c.close()
        self.fake.wait_ended(1)
        self.assert_logged_as_disconnect()

    def test_half_closed_client_never_gets_a_clean_truncated_stream(self):
        """A client that shuts down its sending side after the request (allowed by HTTP/1.1) may
        be treated as gone, but what it receives must then be visibly broken (no terminating
        chunk) or complete: never a cleanly ended stream that silently lacks its end."""
        ev = sse_transcript(n_deltas=3)
        body = messages_body(stream=True)
        body["fake"] = {"chunks": [ev[0]] + [{"data": e, "delay_ms": 300} for e in ev[1:]]}
        c = RawConnection(self.router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        c.sock.shutdown(socket.SHUT_WR)
        try:
            status, headers = c.read_head()
            data = c.read_body(headers)
        except harness.PeerClosed:
            return  # visibly broken: fine
        self.assertEqual(status, 200)
        self.assertEqual(data, "".join(ev).encode(),
                         "the stream ended cleanly (terminating chunk sent) but incomplete")

    def test_no_fd_leak_after_50_disconnects(self):
        try:
            self.router.fd_count()
        except PermissionError:
            self.skipTest("cannot read /proc/%d/fd of routerd (non-dumpable, not root)"
                          % self.router.pid)
        # Warm up: an upstream connection in curl's pool, MHD's first client.
        r = self.request(self.router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)
        base = self.router.fd_count()
        self.fake.reset()
        n = 50
        for i in range(n):
            if i % 2 == 0:
                c = self.start_stream(slow_stream_script(n=10, delay_ms=100))
                status, headers = c.read_head()
                self.assertEqual(status, 200)
                next(c.iter_body(headers, timeout=10))
            else:
                c = self.start_stream({"hang": True})
                wait_until(lambda: len(self.fake.requests()) > i, 10, 0.01, "request %d" % i)
            if i % 3 == 0:
                c.abort()
            else:
                c.close()
        recs = self.fake.wait_ended(n, timeout=15)
        self.assertEqual([r["ended"] for r in recs], ["client_abort"] * n)
        # Connections and upstream handles wind down; allow curl's pool its usual couple of idle
        # connections.
        try:
            wait_until(lambda: self.router.fd_count() <= base + 2, 5, 0.1, "fd count to return")
        except AssertionError:
            self.fail("routerd has %d fds after %d disconnects, %d before: leak\n%s" % (
                self.router.fd_count(), n, base,
                "\n".join(sorted(os.readlink("/proc/%d/fd/%s" % (self.router.pid, f))
                                 for f in os.listdir("/proc/%d/fd" % self.router.pid)))))
        # Still serving, and a stream still works end to end.
        r = self.request(self.router, "POST", "/v1/messages", messages_body(stream=True),
                         ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)
        self.assertIn(b"event: message_stop", r.body)


if __name__ == "__main__":
    harness.main()

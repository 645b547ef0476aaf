#!/usr/bin/env python3
"""SIGTERM: routerd stops accepting at once, lets in-flight requests (streams too) finish up to
drain_timeout, then exits 0; past drain_timeout the streams left get an SSE error saying it is
shutting down. It tells systemd READY=1 once listening and STOPPING=1 on the drain."""

import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, RawConnection, RouterTestCase,  # noqa: E402
                     assert_anthropic_error, build_request, messages_body, parse_sse,
                     sse_transcript)


def paced_stream(total_s, n=6):
    ev = sse_transcript(n_deltas=n)
    delay = int(total_s * 1000 / (len(ev) - 1))
    return ev, {"chunks": [ev[0]] + [{"data": e, "delay_ms": delay} for e in ev[1:]]}


class DrainTest(RouterTestCase):
    def open_stream(self, router, script):
        body = messages_body(stream=True)
        body["fake"] = script
        c = RawConnection(router.port, timeout=20)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        self.assertEqual(status, 200)
        return c, headers

    def assert_refuses_soon(self, port, within=1.0):
        deadline = time.monotonic() + within
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
                s.close()
            except (ConnectionRefusedError, ConnectionResetError):
                # Refused, or reset: a connect that reached the accept queue just before the
                # listening socket closed is reset by the kernel. Either way, not accepted.
                return
            self.assertLess(time.monotonic(), deadline,
                            "routerd still accepts connections %.1f s after SIGTERM" % within)
            time.sleep(0.05)

    def test_stream_completes_during_drain(self):
        router = self.start_router()
        ev, script = paced_stream(3.0)
        c, headers = self.open_stream(router, script)
        it = c.iter_body(headers, timeout=10)
        first = next(it)[1]
        t_term = time.monotonic()
        router.send_signal(signal.SIGTERM)
        self.assert_refuses_soon(router.port)
        body = first + b"".join(p for _, p in it)
        self.assertEqual(body, "".join(ev).encode(), "the stream was not completed in the drain")
        rc = router.wait(10)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t_term, 6.0)
        router.wait_for_log(r"All requests finished, exiting")

    def test_keepalive_request_during_drain(self):
        """A client sends a new request on a pooled connection while routerd drains: it is
        served with Connection: close, or the connection is closed (the client retries); it never
        hangs."""
        router = self.start_router()
        ev, script = paced_stream(2.0)
        c, headers = self.open_stream(router, script)
        it = c.iter_body(headers, timeout=10)
        next(it)
        idle = RawConnection(router.port, timeout=5)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/health").status, 200)
        router.send_signal(signal.SIGTERM)
        self.assert_refuses_soon(router.port)
        try:
            r = idle.request("POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        except (harness.PeerClosed, ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            self.fail("a request on a kept-alive connection hung during the drain")
        else:
            self.assertEqual(r.status, 200)
            self.assertEqual((r.header("connection") or "").lower(), "close")
        b"".join(p for _, p in it)
        self.assertEqual(router.wait(10), 0)

    def test_drain_timeout_ends_streams_with_error(self):
        router = self.start_router("--set", "drain_timeout=1s")
        ev, script = paced_stream(10.0)
        c, headers = self.open_stream(router, script)
        it = c.iter_body(headers, timeout=10)
        next(it)
        t_term = time.monotonic()
        router.send_signal(signal.SIGTERM)
        body = b"".join(p for _, p in it)
        events = parse_sse(body)
        self.assertEqual(events[-1][0], "error", body)
        err = json.loads(events[-1][1])
        self.assertEqual(err["type"], "error")
        self.assertIn("shutting down", err["error"]["message"])
        rc = router.wait(5)
        took = time.monotonic() - t_term
        self.assertIsNotNone(rc, "routerd did not exit after the drain timeout")
        self.assertEqual(rc, 0)
        self.assertLess(took, 3.5, "exit %.1f s after SIGTERM with drain_timeout=1s" % took)
        self.fake.wait_ended(1, timeout=5)

    def test_drain_timeout_before_first_byte(self):
        router = self.start_router("--set", "drain_timeout=1s")
        body = messages_body()
        body["fake"] = {"hang": True}
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        self.fake.wait_requests(1)
        router.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=5)
        err = assert_anthropic_error(self, r, 503)
        self.assertIn("shutting down", err["error"]["message"])
        self.assertEqual(router.wait(5), 0)

    def test_idle_exit_is_quick(self):
        router = self.start_router()
        # An idle keep-alive connection must not hold the exit up.
        c = RawConnection(router.port)
        self.addCleanup(c.close)
        self.assertEqual(c.request("GET", "/health").status, 200)
        t0 = time.monotonic()
        router.send_signal(signal.SIGTERM)
        self.assertEqual(router.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_second_signal_exits_at_once(self):
        router = self.start_router(check_exit=False)
        ev, script = paced_stream(10.0)
        c, headers = self.open_stream(router, script)
        next(c.iter_body(headers, timeout=10))
        router.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        t0 = time.monotonic()
        router.send_signal(signal.SIGINT)
        rc = router.wait(5)
        self.assertIsNotNone(rc, "a second signal did not stop routerd")
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_sd_notify(self):
        path = os.path.join(self.workdir, "notify.%d.sock" % os.getpid())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self.addCleanup(os.unlink, path)
        self.addCleanup(s.close)
        s.settimeout(5)
        router = self.start_router(env={"NOTIFY_SOCKET": path})
        msgs = []

        def wait_for(word):
            deadline = time.monotonic() + 5
            while not any(word in m for m in msgs):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    msgs.append(s.recv(4096).decode())
                except socket.timeout:
                    self.fail("no %s from routerd; got %r" % (word, msgs))
        wait_for("READY=1")
        ready = [m for m in msgs if "READY=1" in m][0]
        self.assertIn("STATUS=", ready)
        self.assertNotIn("STOPPING=1", "".join(msgs))
        router.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        self.assertEqual(router.wait(5), 0)


if __name__ == "__main__":
    harness.main()

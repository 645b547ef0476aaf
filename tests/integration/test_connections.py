#!/usr/bin/env python3
"""Client connections: the per-IP and global connection limits refuse the excess while the
admitted connections keep working, slow clients (slowloris: headers or body one byte a second) are
cut at client_request_timeout, idle keep-alive connections at client_idle_timeout, and a long
stream is not mistaken for an idle client."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, PeerClosed, RawConnection, RouterTestCase,  # noqa: E402
                     build_request, messages_body, parse_sse, sse_transcript)


def trickle(conn, data, interval, stop):
    """Sends data one byte per interval until done, stopped, or the connection breaks."""
    for b in data:
        if stop.is_set():
            return
        try:
            conn.sock.sendall(bytes([b]))
        except OSError:
            return
        stop.wait(interval)


def connect_from(port, source_ip, timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source_ip, 0))
    s.connect(("127.0.0.1", port))
    c = RawConnection.__new__(RawConnection)
    c.sock, c.timeout, c.buf, c.eof = s, timeout, b"", False
    return c


class ConnectionLimitTest(RouterTestCase):
    def open_idle(self, router, n):
        conns = []
        for _ in range(n):
            c = RawConnection(router.port, timeout=5)
            self.addCleanup(c.close)
            conns.append(c)
        time.sleep(0.3)  # let MHD accept them
        return conns

    def assert_refused(self, router, source="127.0.0.1"):
        try:
            c = connect_from(router.port, source)
        except (ConnectionRefusedError, ConnectionResetError):
            return
        self.addCleanup(c.close)
        try:
            c.send(build_request("GET", "/health"))
            status, _ = c.read_head(timeout=3)
        except (PeerClosed, ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            self.fail("a connection over the limit was neither closed nor answered")
        self.fail("a connection over the limit was served (status %d)" % status)

    def test_per_ip_limit(self):
        router = self.start_router("--set", "max_connections_per_ip=5")
        conns = self.open_idle(router, 5)
        self.assert_refused(router)
        # The five admitted connections work, each for several requests.
        for _ in range(2):
            for c in conns:
                r = c.request("GET", "/health")
                self.assertEqual(r.status, 200)
        r = conns[0].request("POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)
        # Another address is not affected.
        c = connect_from(router.port, "127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.request("GET", "/health").status, 200)
        # When one leaves, a new connection gets in.
        conns[0].close()
        deadline = time.monotonic() + 3
        while True:
            try:
                with RawConnection(router.port, timeout=3) as c2:
                    if c2.request("GET", "/health").status == 200:
                        break
            except (PeerClosed, ConnectionResetError, BrokenPipeError, socket.timeout):
                pass
            self.assertLess(time.monotonic(), deadline, "the freed slot was never reused")
            time.sleep(0.1)

    def test_global_limit(self):
        """Over max_connections, libmicrohttpd stops accepting: the excess connection waits in the
        listen backlog, unanswered, and is served as soon as a slot frees up."""
        router = self.start_router("--set", "max_connections=4", "--set",
                                   "max_connections_per_ip=0")
        conns = self.open_idle(router, 4)
        extra = connect_from(router.port, "127.0.0.3")
        self.addCleanup(extra.close)
        extra.send(build_request("GET", "/health"))
        with self.assertRaises(socket.timeout):
            extra.read_head(timeout=1.0)
        for c in conns[1:]:
            self.assertEqual(c.request("GET", "/health").status, 200)
        conns[0].close()
        # Nothing else happens on the other connections: the freed slot alone must let the
        # waiting client in.
        try:
            status, headers = extra.read_head(timeout=3)
        except socket.timeout:
            self.fail("a slot was freed but the waiting connection was never accepted")
        self.assertEqual(status, 200)

    def test_serves_again_after_reaching_global_limit(self):
        router = self.start_router("--set", "max_connections=4", "--set",
                                   "max_connections_per_ip=0")
        conns = self.open_idle(router, 4)
        for c in conns:
            self.assertEqual(c.request("GET", "/health").status, 200)
        # One client leaves, and nothing else happens on the others.
        conns[0].close()
        time.sleep(0.5)
        try:
            with RawConnection(router.port, timeout=3) as c:
                self.assertEqual(c.request("GET", "/health").status, 200)
        except socket.timeout:
            self.fail("routerd no longer accepts connections after it once reached "
                      "max_connections, although a connection has closed since")

class SlowClientTest(RouterTestCase):
    def slow_send(self, router, data, interval=1.0):
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        stop = threading.Event()
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        threading.Thread(target=trickle, args=(c, data, interval, stop), daemon=True).start()
        took = c.wait_closed(8)
        stop.set()
        self.assertIsNotNone(took, "a client trickling bytes was never cut off")
        return time.monotonic() - t0

    def test_slow_headers(self):
        router = self.start_router("--set", "client_request_timeout=2s")
        req = build_request("GET", "/health", None, [("x-slow", "a" * 40)])
        took = self.slow_send(router, req)
        self.assertGreater(took, 1.8)
        self.assertLess(took, 3.5, "cut after %.1f s with a 2 s client_request_timeout" % took)
        self.assertEqual(self.request(router, "GET", "/health").status, 200)

    def test_silent_connection(self):
        router = self.start_router("--set", "client_request_timeout=2s")
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        took = c.wait_closed(8)
        self.assertIsNotNone(took, "a connection that never sends a byte stays open")
        self.assertLess(took, 3.5)

    def test_slow_body(self):
        router = self.start_router("--set", "client_request_timeout=2s")
        body = b'{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}'
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", None, ANTHROPIC_HEADERS + [
            ("Content-Length", str(len(body)))]))
        stop = threading.Event()
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        threading.Thread(target=trickle, args=(c, body, 0.5, stop), daemon=True).start()
        took = c.wait_closed(8)
        stop.set()
        self.assertIsNotNone(took, "a client trickling its body was never cut off")
        self.assertLess(time.monotonic() - t0, 3.5)
        self.assertNoUpstreamCall()

    def test_many_slow_clients_do_not_block_others(self):
        router = self.start_router("--set", "client_request_timeout=3s")
        stop = threading.Event()
        self.addCleanup(stop.set)
        for _ in range(50):
            c = RawConnection(router.port, timeout=10)
            self.addCleanup(c.close)
            threading.Thread(target=trickle, args=(c, b"GET /health HTTP/1.1\r\n", 0.5, stop),
                             daemon=True).start()
        for _ in range(10):
            r = self.request(router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS,
                             timeout=5)
            self.assertEqual(r.status, 200)
            self.assertLess(r.elapsed, 1.0)

    def test_idle_keepalive_connection_closed(self):
        router = self.start_router("--set", "client_idle_timeout=2s")
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        self.assertEqual(c.request("GET", "/health").status, 200)
        took = c.wait_closed(8)
        self.assertIsNotNone(took, "an idle keep-alive connection stays open")
        self.assertGreater(took, 1.5)
        self.assertLess(took, 4.0)

    def test_active_keepalive_connection_survives(self):
        router = self.start_router("--set", "client_idle_timeout=2s", "--set",
                                   "client_request_timeout=2s")
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            self.assertEqual(c.request("GET", "/health").status, 200)
            time.sleep(0.5)

    def test_long_stream_not_cut_by_client_timeouts(self):
        router = self.start_router("--set", "client_idle_timeout=1s", "--set",
                                   "client_request_timeout=1s")
        ev = sse_transcript(n_deltas=2)
        body = messages_body(stream=True)
        # Silences longer than both timeouts: before the first byte, and between two events.
        body["fake"] = {"first_byte_delay_ms": 1600,
                        "chunks": [ev[0], {"data": ev[1], "delay_ms": 1600}] + ev[2:]}
        c = RawConnection(router.port, timeout=10)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        self.assertEqual(status, 200)
        data = c.read_body(headers)
        self.assertEqual(data, "".join(ev).encode())
        self.assertEqual(parse_sse(data)[-1][0], "message_stop")


if __name__ == "__main__":
    harness.main()

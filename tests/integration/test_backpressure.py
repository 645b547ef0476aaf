#!/usr/bin/env python3
"""Back-pressure: a client that reads slowly does not make routerd buffer the upstream's reply.

The fake sends a ~20 MB reply as fast as loopback allows; the client first reads nothing for 1.5
seconds, then reads in small pieces through a small receive buffer. routerd pauses the upstream
transfer when its per-request buffer is full (proxy.c: ~80 KiB), so its RSS stays flat; without
back-pressure it would hold most of the reply. The bound (10 MB, half the reply) is tighter than
the 30 MB of the test plan because a 30 MB bound could not tell a 20 MB buffer from none. All bytes
must arrive intact (SHA-256)."""

import base64
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, RawConnection, RouterTestCase, build_request,  # noqa: E402
                     messages_body, sse_event, sse_transcript)

MB = 1024 * 1024


def big_stream(total, chunk=64 * 1024):
    """An SSE transcript of about total bytes in chunks of about chunk bytes."""
    head = sse_transcript(n_deltas=0, stop=False)[:2]
    tail = sse_transcript(n_deltas=0)[2:]
    rnd = base64.b64encode(os.urandom(total * 3 // 4)).decode()
    chunks = list(head)
    i = 0
    while i < len(rnd):
        text = rnd[i:i + chunk]
        i += chunk
        chunks.append(sse_event("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}}))
    return chunks + tail


class RssSampler(threading.Thread):
    def __init__(self, router, interval=0.05):
        super().__init__(daemon=True)
        self.router = router
        self.interval = interval
        self.peak = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.peak = max(self.peak, self.router.rss_kb())
            except (OSError, AttributeError, ValueError):
                return
            time.sleep(self.interval)

    def finish(self):
        self.stop_event.set()
        self.join(5)
        return self.peak


class BackPressureTest(RouterTestCase):
    def setUp(self):
        super().setUp()
        self.router = self.start_router("-m")
        # Warm up: one small stream and one JSON reply, so allocator pools exist.
        r = self.request(self.router, "POST", "/v1/messages", messages_body(stream=True),
                         ANTHROPIC_HEADERS)
        self.assertEqual(r.status, 200)
        self.request(self.router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.fake.reset()
        self.limit_kb = 10 * 1024
        if harness.routerd_sanitized():
            # ASan keeps freed memory in quarantine and adds redzones; the reply still must not
            # be held whole.
            self.limit_kb = 20 * 1024

    def slow_read(self, script, expect_sha, expect_len, stall=1.5):
        self.fake.queue(script)
        base = self.router.rss_kb()
        sampler = RssSampler(self.router)
        sampler.start()
        c = RawConnection(self.router.port, timeout=30, rcvbuf=16384)
        self.addCleanup(c.close)
        c.send(build_request("POST", "/v1/messages", messages_body(stream=True),
                             ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        self.assertEqual(status, 200)
        time.sleep(stall)  # the fake keeps sending; nothing is read
        stalled_rss = self.router.rss_kb()
        h = hashlib.sha256()
        n = 0
        reads = 0
        for _, piece in c.iter_body(headers, timeout=30, max_recv=16 * 1024):
            h.update(piece)
            n += len(piece)
            reads += 1
            if reads % 64 == 0:
                time.sleep(0.002)
        peak = max(sampler.finish(), stalled_rss)
        self.assertEqual(n, expect_len)
        self.assertEqual(h.hexdigest(), expect_sha, "the reply arrived corrupted")
        growth = peak - base
        self.assertLess(growth, self.limit_kb,
                        "routerd RSS grew by %d KiB (from %d KiB; %d KiB after a %.0f s stall) "
                        "for a %d KiB reply read slowly: no back-pressure"
                        % (growth, base, stalled_rss, stall, expect_len // 1024))
        rec = self.fake.wait_ended(1)[0]
        self.assertEqual(rec["ended"], "complete")
        return growth

    def test_slow_reader_of_big_stream(self):
        chunks = big_stream(20 * MB)
        whole = "".join(chunks).encode()
        self.slow_read({"chunks": chunks}, hashlib.sha256(whole).hexdigest(), len(whole))
        self.router.wait_for_log(r"\[Anthropic\] ✓ 200")

    def test_slow_reader_of_big_json(self):
        body = '{"type":"message","content":[{"type":"text","text":"%s"}]}' % (
            base64.b64encode(os.urandom(6 * MB)).decode())
        raw = body.encode()
        self.slow_read({"body": body}, hashlib.sha256(raw).hexdigest(), len(raw))


if __name__ == "__main__":
    harness.main()

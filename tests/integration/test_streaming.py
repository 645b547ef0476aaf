#!/usr/bin/env python3
"""Streaming: SSE replies reach the client as the upstream sends them, in order, byte for byte,
whatever the chunk boundaries, and a complete stream gets nothing appended."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, RawConnection, RouterTestCase, build_request,  # noqa: E402
                     messages_body, parse_sse, sse_transcript)


class StreamingTest(RouterTestCase):
    def setUp(self):
        super().setUp()
        self.router = self.start_router()

    def open_stream(self, body=None, path="/v1/messages"):
        c = RawConnection(self.router.port, timeout=15)
        self.addCleanup(c.close)
        c.send(build_request("POST", path, body or messages_body(stream=True),
                             ANTHROPIC_HEADERS))
        status, headers = c.read_head()
        return c, status, headers

    def test_default_stream_relayed_in_order(self):
        c, status, headers = self.open_stream()
        self.assertEqual(status, 200)
        self.assertEqual(c._hget(headers, "content-type"), "text/event-stream")
        self.assertRegex(c._hget(headers, "request-id") or "", r"^req_fake_\d+$")
        body = c.read_body(headers)
        events = parse_sse(body)
        names = [e for e, _ in events]
        self.assertEqual(len(events), 36, names)
        self.assertEqual(names[:3], ["message_start", "ping", "content_block_start"])
        self.assertEqual(names[-3:], ["content_block_stop", "message_delta", "message_stop"])
        self.assertEqual(set(names[3:-3]), {"content_block_delta"})
        text = "".join(json.loads(d)["delta"]["text"] for e, d in events
                       if e == "content_block_delta")
        self.assertTrue(text.startswith("Sure! Here is a short overview"), text)
        self.assertNotIn("error", names)
        # The same text as the non-streaming reply of the fake.
        r = self.request(self.router, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(r.json()["content"][0]["text"], text)

    def test_chunks_arrive_as_sent(self):
        chunks = sse_transcript(n_deltas=3)  # 7 events
        script = [{"data": chunks[0]}]
        # Five chunks 300 ms apart, then the rest at once.
        for ev in chunks[1:5]:
            script.append({"data": ev, "delay_ms": 300})
        script.append({"data": "".join(chunks[5:]), "delay_ms": 300})
        self.fake.queue({"chunks": script})
        c, status, headers = self.open_stream()
        self.assertEqual(status, 200)
        arrivals = list(c.iter_body(headers, timeout=10))
        data = b"".join(p for _, p in arrivals)
        self.assertEqual(data, "".join(chunks).encode())
        # Group the pieces into bursts: a gap of more than 150 ms starts a new one.
        bursts = []
        last = None
        for t, p in arrivals:
            if last is None or t - last > 0.15:
                bursts.append([t, b""])
            bursts[-1][1] += p
            last = t
        self.assertEqual([b for _, b in bursts], [s["data"].encode() for s in script],
                         "the chunks did not arrive one by one")
        spread = bursts[-1][0] - bursts[0][0]
        self.assertGreater(spread, 0.9, "the first chunk arrived only %.2f s before the last; "
                           "routerd buffered the stream" % spread)

    def test_events_split_anywhere(self):
        whole = "".join(sse_transcript(n_deltas=4, text="caf\u00e9 \u6f22\u5b57"))
        raw = whole.encode("utf-8")
        # Cut points inside "event:", inside the JSON, between the two newlines, and inside a
        # multi-byte character are all fine for SSE only at the byte level; the fake's chunks are
        # strings, so the cuts are on characters, which still splits every structure.
        cuts = [3, 9, 21, 22, 40, 41, 120, len(whole) // 2, len(whole) - 30, len(whole) - 1]
        pieces, prev = [], 0
        for cut in sorted(set(cuts)):
            pieces.append(whole[prev:cut])
            prev = cut
        pieces.append(whole[prev:])
        self.fake.queue({"chunks": [{"data": p, "delay_ms": 20} for p in pieces]})
        c, status, headers = self.open_stream()
        self.assertEqual(status, 200)
        body = c.read_body(headers)
        self.assertEqual(body, raw)
        # Usage was read from the split stream (normal log mode prints it).
        self.router.wait_for_log(r"Tokens: input=28, output=19")

    def test_single_chunk_whole_stream(self):
        whole = "".join(sse_transcript(n_deltas=50))
        self.fake.queue({"chunks": [whole]})
        c, status, headers = self.open_stream()
        self.assertEqual(c.read_body(headers), whole.encode())

    def test_large_event(self):
        big = "x" * (300 * 1024)
        ev = sse_transcript(n_deltas=1, text=big)
        self.fake.queue({"chunks": ev})
        c, status, headers = self.open_stream()
        body = c.read_body(headers)
        self.assertEqual(body, "".join(ev).encode())
        self.assertEqual([e for e, _ in parse_sse(body)][-1], "message_stop")

    def test_stream_with_keepalive_connection_reused(self):
        """A client keeps its connection after a stream: a second request on it works."""
        c, status, headers = self.open_stream()
        c.read_body(headers)
        c.send(build_request("GET", "/health"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"status":"ok","service":"dualroute"}')

    def test_concurrent_streams_do_not_mix(self):
        conns = []
        for i in range(8):
            ev = sse_transcript(n_deltas=6, text="stream%d" % i)
            body = messages_body(stream=True)
            body["fake"] = {"chunks": [{"data": e, "delay_ms": 30} for e in ev]}
            c = RawConnection(self.router.port, timeout=15)
            self.addCleanup(c.close)
            c.send(build_request("POST", "/v1/messages", body, ANTHROPIC_HEADERS))
            conns.append((c, "".join(ev).encode()))
        t0 = time.monotonic()
        for c, expect in conns:
            status, headers = c.read_head()
            self.assertEqual(status, 200)
            self.assertEqual(c.read_body(headers), expect)
        # 8 streams of ~300 ms each, run concurrently.
        self.assertLess(time.monotonic() - t0, 2.0, "streams were served one after the other")


if __name__ == "__main__":
    harness.main()

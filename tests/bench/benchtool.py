#!/usr/bin/env python3
"""benchtool.py: the Python half of run-bench.sh (standard library only).

Subcommands:
  freeport             print a free TCP port on 127.0.0.1
  body KIND            print a ~1 KB request body: json|sse (Messages), hold (an SSE request
                       whose fake script sends one event, then holds the stream open; see
                       --hold-ms), chat|chat-sse (an OpenAI Chat Completions request) and
                       chat-anthropic|chat-sse-anthropic (the Messages request routerd makes of it)
  ttfb                 sequential requests over one keep-alive connection; time to the first
                       body byte and to the whole response, p50/p99, as JSON
  probe                one request; checks the answer's shape and counts its SSE events (the
                       fake's default stream, routerd's translated chunks), as JSON
  streams              open N keep-alive connections, each with a held-open streaming request,
                       read the target's VmRSS while all are open, close them, read it again
  report               turn the run's cells.jsonl into the table, the target checks and the
                       results JSON

The clients speak raw HTTP/1.1 on sockets so the client adds as little as it can to what is
measured; they only talk to 127.0.0.1.
"""
import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import sys
import time

HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------------
# Request bodies


CHAT_SYSTEM = "You are a concise assistant. Answer in plain prose, without lists or headings."
CHAT_USER = ("Please summarise the following paragraph in two sentences. A router for language "
             "model APIs accepts requests in one wire format, checks credentials, forwards them "
             "to the chosen upstream and relays the reply, streaming it when the client asks for "
             "server-sent events. It translates between the OpenAI Chat Completions format and "
             "Anthropic's Messages format field by field: system and developer messages, tools "
             "and tool choices, images, stop sequences, response formats and reasoning effort. "
             "Errors keep their status and get the error shape the client understands, and "
             "streamed replies are turned into chat.completion.chunk events one upstream event "
             "at a time, so the first token reaches the client as soon as the upstream sends it. "
             "Limits on body size, header size and time keep one slow client from starving the "
             "rest.")


def make_chat_body(kind):
    """Returns a ~1 KB OpenAI Chat Completions request (kind chat or chat-sse), or, for
    chat-anthropic and chat-sse-anthropic, the Messages request that routerd makes of it: the same
    fields in the order and shape routerd writes them (a system block list, text block content),
    so the direct and nginx baselines give the fake exactly the work that routerd's request does."""
    stream = kind in ("chat-sse", "chat-sse-anthropic")
    if kind in ("chat", "chat-sse"):
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [
                {"role": "system", "content": CHAT_SYSTEM},
                {"role": "user", "content": CHAT_USER},
            ],
        }
    else:
        body = {
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": [{"type": "text", "text": CHAT_USER}]}],
            "max_tokens": 1024,
            "system": [{"type": "text", "text": CHAT_SYSTEM}],
        }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


BODY_KINDS = ("json", "sse", "hold", "chat", "chat-sse", "chat-anthropic", "chat-sse-anthropic")


def make_body(kind, hold_ms=60000):
    """Returns the body bytes for kind: a ~1 KB Messages request, like a short chat turn (or, for
    the chat kinds, see make_chat_body)."""
    if kind.startswith("chat"):
        return make_chat_body(kind)
    text = ("Please summarise the following paragraph in two sentences. A router for language "
            "model APIs accepts requests in one wire format, checks credentials, forwards them to "
            "the chosen upstream and relays the reply, streaming it when the client asks for "
            "server-sent events. ")
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are a concise assistant.",
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Sure, send the paragraph."},
            {"role": "user", "content": text + text[:180]},
        ],
        "metadata": {"user_id": "bench-user-0001"},
    }
    if kind in ("sse", "hold"):
        body["stream"] = True
    if kind == "hold":
        body["fake"] = {"chunks": [
            {"data": "event: ping\ndata: {\"type\": \"ping\"}\n\n"},
            {"data": "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
             "delay_ms": hold_ms},
        ]}
    return json.dumps(body, separators=(",", ":")).encode()


def first_event_script():
    """Returns fake chunks for a stream like the default one whose first event goes out at once
    and the rest 1 ms later, as a model's first token would. The first-byte timing needs the gap:
    when the fake writes all 36 events back to back, a proxy on the same cpu only gets to run once
    the fake is done, and its "first byte" is really its last."""
    def ev(name, data):
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
    start = ev("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 28, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "output_tokens": 1}}})
    rest = [ev("ping", {"type": "ping"}),
            ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]
    rest += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta",
                                                  "text": f" token number {i} of the reply"}})
             for i in range(30)]
    rest += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
             ev("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": 19}}),
             ev("message_stop", {"type": "message_stop"})]
    return [{"data": start}, {"data": "".join(rest), "delay_ms": 1}]


def make_request(port, body, api="anthropic"):
    """Returns the request bytes: a POST of body to /v1/messages with Anthropic's headers, or
    (api "openai") to /v1/chat/completions with a bearer key as the OpenAI SDK sends it. Either
    key is "not-used": the fake wants one, routerd ignores a key that is not sk-ant-..."""
    if api == "openai":
        head = ("POST /v1/chat/completions HTTP/1.1\r\n"
                f"Host: {HOST}:{port}\r\n"
                "content-type: application/json\r\n"
                "authorization: Bearer not-used\r\n"
                f"Content-Length: {len(body)}\r\n"
                "\r\n")
        return head.encode() + body
    head = ("POST /v1/messages HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            "content-type: application/json\r\n"
            "anthropic-version: 2023-06-01\r\n"
            "x-api-key: not-used\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n")
    return head.encode() + body


def chat_body_for(kind, api):
    """The body of a chat-kind request: OpenAI's to routerd, the Anthropic equivalent elsewhere."""
    return make_body(kind if api == "openai" else kind + "-anthropic")


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 response reader


class ResponseError(Exception):
    pass


def parse_head(buf):
    """Returns (status, headers dict, header length) or None while the head is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ResponseError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, end + 4


def body_complete(headers, body):
    """Returns True once body (the bytes after the head) holds the whole response body."""
    if "content-length" in headers:
        return len(body) >= int(headers["content-length"])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        pos = 0
        while True:
            eol = body.find(b"\r\n", pos)
            if eol < 0:
                return False
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                return body.find(b"\r\n", eol + 2) >= 0  # no trailers expected
            pos = eol + 2 + size + 2
            if pos > len(body):
                return False
    raise ResponseError("response without Content-Length or chunked encoding")


# ---------------------------------------------------------------------------------------------
# ttfb: sequential requests on one keep-alive connection


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def cmd_ttfb(args):
    if args.kind == "chat":
        req = make_request(args.port, chat_body_for("chat", args.api), args.api)
    elif args.kind == "chat-sse-first":
        req = make_request(args.port, chat_body_for("chat-sse", args.api), args.api)
    else:
        body = make_body("json" if args.kind == "json" else "sse")
        req = make_request(args.port, body)
    if args.kind in ("sse-first", "chat-sse-first"):
        # One script per request, queued at the fake, so the request stays the ~1 KB body.
        if not args.fake_port:
            sys.exit("benchtool: ttfb --kind sse-first needs --fake-port")
        fake_call(args.fake_port, "DELETE", "/_fake/queue")
        script = {"chunks": first_event_script()}
        n = args.warmup + args.requests
        status, _ = fake_call(args.fake_port, "POST", "/_fake/queue",
                              json.dumps([script] * n, separators=(",", ":")).encode())
        if status // 100 != 2:
            sys.exit(f"benchtool: the fake refused the queued scripts ({status})")
    sock = socket.create_connection((HOST, args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first, total, heads = [], [], []
    statuses = {}
    clock = time.perf_counter_ns
    gc.disable()
    for i in range(args.warmup + args.requests):
        t0 = clock()
        sock.sendall(req)
        buf = b""
        t_first = t_head = None
        head = None
        while True:
            data = sock.recv(65536)
            now = clock()
            if not data:
                raise ResponseError("connection closed by the server")
            buf += data
            if head is None:
                head = parse_head(buf)
                if head is None:
                    continue
                t_head = now
            if t_first is None and len(buf) > head[2]:
                t_first = now
            if t_first is not None and body_complete(head[1], buf[head[2]:]):
                break
        if i >= args.warmup:
            first.append((t_first - t0) / 1000.0)
            heads.append((t_head - t0) / 1000.0)
            total.append((now - t0) / 1000.0)
            statuses[head[0]] = statuses.get(head[0], 0) + 1
    sock.close()
    if args.kind in ("sse-first", "chat-sse-first"):
        fake_call(args.fake_port, "DELETE", "/_fake/queue")
    first.sort()
    total.sort()
    heads.sort()
    out = {
        "kind": args.kind, "requests": len(first), "statuses": statuses,
        "first_byte_us": {"p50": percentile(first, 50), "p90": percentile(first, 90),
                          "p99": percentile(first, 99), "min": first[0]},
        "head_us": {"p50": percentile(heads, 50), "p99": percentile(heads, 99)},
        "total_us": {"p50": percentile(total, 50), "p90": percentile(total, 90),
                     "p99": percentile(total, 99), "min": total[0]},
    }
    if args.kind.startswith("chat"):
        out["api"] = args.api
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# probe: one request, its answer checked and its SSE events counted


def read_response(sock):
    """Reads one whole response from sock; returns (status, headers, decoded body bytes)."""
    buf = b""
    head = None
    while True:
        data = sock.recv(65536)
        if not data:
            raise ResponseError("connection closed by the server")
        buf += data
        if head is None:
            head = parse_head(buf)
            if head is None:
                continue
        if body_complete(head[1], buf[head[2]:]):
            break
    body = buf[head[2]:]
    if "chunked" in head[1].get("transfer-encoding", "").lower():
        out, pos = b"", 0
        while True:
            eol = body.index(b"\r\n", pos)
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            out += body[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
        body = out
    return head[0], head[1], body


def sse_blocks(text):
    """Splits an SSE body into events: a list of (event name or None, data or None), one per
    blank-line-terminated block; a block of comments only has data None."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data) if data else None))
    return events


def cmd_probe(args):
    """One request of kind (json, sse, chat, chat-sse) in api's format; checks that the answer
    has the shape it should and counts its SSE events. Exit 1 (with the JSON still printed) when
    the answer is wrong: a benchmark of a 200 that is not a real translation would mean nothing."""
    if args.kind.startswith("chat"):
        req = make_request(args.port, chat_body_for(args.kind, args.api), args.api)
    else:
        req = make_request(args.port, make_body(args.kind))
    with socket.create_connection((HOST, args.port), timeout=10) as sock:
        sock.sendall(req)
        status, headers, body = read_response(sock)
    out = {"kind": args.kind, "api": args.api, "status": status,
           "content_type": headers.get("content-type"), "body_bytes": len(body)}
    problems = []
    if status != 200:
        problems.append(f"status {status}: {body[:300]!r}")
    stream = args.kind in ("sse", "chat-sse")
    text = body.decode("utf-8", "replace")
    if status == 200 and not stream:
        try:
            msg = json.loads(text)
        except ValueError as e:
            msg = None
            problems.append(f"the body is not JSON: {e}")
        if args.api == "openai" and msg is not None:
            content = ((msg.get("choices") or [{}])[0].get("message") or {}).get("content")
            if msg.get("object") != "chat.completion" or not content:
                problems.append("not a chat.completion with content")
            out["content_chars"] = len(content or "")
        elif msg is not None:
            if msg.get("type") != "message":
                problems.append("not a Message")
    elif status == 200:
        if not (headers.get("content-type") or "").startswith("text/event-stream"):
            problems.append(f"content-type {headers.get('content-type')!r}, not text/event-stream")
        blocks = sse_blocks(text)
        data_events = [(n, d) for n, d in blocks if d is not None]
        out["comments"] = len(blocks) - len(data_events)
        if args.api == "openai":
            chunks = [d for _, d in data_events if d != "[DONE]"]
            out["chunks"] = len(chunks)
            out["done"] = any(d == "[DONE]" for _, d in data_events)
            content = []
            for d in chunks:
                try:
                    c = json.loads(d)
                except ValueError:
                    problems.append(f"a chunk is not JSON: {d[:100]!r}")
                    break
                if c.get("object") != "chat.completion.chunk":
                    problems.append(f"not a chat.completion.chunk: {d[:100]!r}")
                    break
                for choice in c.get("choices") or []:
                    content.append((choice.get("delta") or {}).get("content") or "")
            out["content_chars"] = len("".join(content))
            if not out["done"] or data_events[-1][1] != "[DONE]":
                problems.append("the stream does not end with [DONE]")
            if not out["content_chars"]:
                problems.append("the stream carries no content")
        else:
            types = {}
            for _, d in data_events:
                try:
                    t = json.loads(d).get("type")
                except ValueError:
                    t = "?"
                types[t] = types.get(t, 0) + 1
            out["events"] = len(data_events)
            out["types"] = types
            if not data_events or json.loads(data_events[-1][1]).get("type") != "message_stop":
                problems.append("the stream does not end with message_stop")
    if problems:
        out["problems"] = problems
    print(json.dumps(out))
    if problems:
        for msg in problems:
            print(f"benchtool: probe {args.kind}/{args.api} on port {args.port}: {msg}",
                  file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# streams: many held-open streams through one target


def read_status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fake_call(port, method, path, body=b""):
    """One request to the fake's control API on a fresh connection; returns (status, body)."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                  f"content-type: application/json\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n".encode() + body)
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    head = parse_head(buf)
    if head is None:
        raise ResponseError("no response head")
    body = buf[head[2]:]
    if "chunked" in head[1].get("transfer-encoding", "").lower():
        out, pos = b"", 0
        while True:
            eol = body.index(b"\r\n", pos)
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            out += body[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
        body = out
    return head[0], body


def fake_stats(port):
    try:
        status, body = fake_call(port, "GET", "/_fake/stats")
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError, ResponseError):
        return None


async def open_stream(port, req, sem, deadline):
    """Returns (reader, writer) once the response head and the first event arrived."""
    async with sem:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                                deadline - time.monotonic())
        writer.write(req)
        buf = b""
        while b"event: ping" not in buf:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not data:
                raise ResponseError("connection closed before the first event")
            buf += data
        head = parse_head(buf)
        if head is None or head[0] != 200:
            raise ResponseError(f"status {head[0] if head else '?'}")
        return reader, writer


async def streams_main(args):
    req = make_request(args.port, make_body("hold", args.hold_ms))
    sem = asyncio.Semaphore(args.parallel)
    deadline = time.monotonic() + args.timeout
    baseline = None
    if args.fake_port:
        st = fake_stats(args.fake_port)
        baseline = st.get("open_connections") if st else None
    t0 = time.monotonic()
    results = await asyncio.gather(*(open_stream(args.port, req, sem, deadline)
                                     for _ in range(args.n)), return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    errors = {}
    for r in results:
        if isinstance(r, BaseException):
            key = type(r).__name__ + (f": {r}" if str(r) else "")
            errors[key] = errors.get(key, 0) + 1
    open_s = time.monotonic() - t0
    await asyncio.sleep(args.settle)
    out = {
        "fake_open_before": baseline,
        "n": args.n, "opened": len(opened), "errors": errors, "open_seconds": round(open_s, 2),
        "rss_kb_open": read_status_kb(args.pid, "VmRSS"),
        "hwm_kb_open": read_status_kb(args.pid, "VmHWM"),
        "fds_open": count_fds(args.pid),
    }
    if args.fake_port:
        out["fake_stats_open"] = fake_stats(args.fake_port)
    if args.fake_pid:
        out["fake_rss_kb_open"] = read_status_kb(args.fake_pid, "VmRSS")
    for _, writer in opened:
        writer.close()
    for _, writer in opened:
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError):
            pass
    # routerd notices a client that left within about a second; wait for the upstream side too.
    end = time.monotonic() + args.drain_wait
    while time.monotonic() < end:
        st = fake_stats(args.fake_port) if args.fake_port else None
        if st is None or baseline is None or st.get("open_connections", 0) <= baseline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    out["rss_kb_after"] = read_status_kb(args.pid, "VmRSS")
    out["fds_after"] = count_fds(args.pid)
    if args.fake_port:
        out["fake_stats_after"] = fake_stats(args.fake_port)
    print(json.dumps(out))


def cmd_streams(args):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    asyncio.run(streams_main(args))


# ---------------------------------------------------------------------------------------------
# report


TARGETS = ("direct", "nginx", "dualroute")
CHAT_MODES = ("chat", "chat-sse")
CHAT_TTFB_KINDS = ("chat", "chat-sse-first")
# other% from which a chat target mark says its cells were disturbed (quiet cells show 0-5 %).
DISTURBED_PCT = 15


def fmt(v, spec="{:.0f}", none="-"):
    return none if v is None else spec.format(v)


def signed(v):
    return "-" if v is None else f"{v:+.0f}"


def pct(a, b):
    return None if a is None or not b else 100.0 * a / b


def cmd_report(args):
    meta = json.load(open(args.meta))
    cells, ttfb, streams, rss, probes = [], {}, None, {}, {}
    with open(args.cells) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            kind = rec.pop("record")
            if kind == "cell":
                cells.append(rec)
            elif kind == "ttfb":
                ttfb[(rec["target"], rec["kind"])] = rec
            elif kind == "streams":
                streams = rec
            elif kind == "probe":
                probes[(rec["target"], rec["kind"])] = rec
            elif kind == "load":
                meta["loadavg_end"] = rec["loadavg_end"]
            elif kind == "rss":
                rss.setdefault(rec["target"], {})[rec["when"]] = rec["kb"]

    by = {(c["mode"], c["conns"], c["target"]): c for c in cells}
    for c in cells:
        w = c["wrk"]
        secs = w["duration_us"] / 1e6 if w["duration_us"] else None
        c["rps"] = w["requests"] / secs if secs else None
        c["p50_us"] = w["latency_us"]["p50"]
        c["p99_us"] = w["latency_us"]["p99"]
        c["errors"] = sum(w["errors"].values())
        c["cpu_us_per_req"] = (c["cpu_ticks"] * 1e6 / meta["clk_tck"] / w["requests"]
                               if w["requests"] else None)
        c["fake_cpu_us_per_req"] = (c["fake_cpu_ticks"] * 1e6 / meta["clk_tck"] / w["requests"]
                                    if w["requests"] else None)
        total = c.get("server_cpu_total_ticks") or 0
        own = c["cpu_ticks"] + (c["fake_cpu_ticks"] if c["target"] != "direct" else 0)
        c["server_cpu_busy_pct"] = 100.0 * c["server_cpu_busy_ticks"] / total if total else None
        c["server_cpu_other_pct"] = (100.0 * max(0, c["server_cpu_busy_ticks"] - own) / total
                                     if total else None)
    for c in cells:
        d = by.get((c["mode"], c["conns"], "direct"))
        n = by.get((c["mode"], c["conns"], "nginx"))
        c["added_p50_us"] = c["p50_us"] - d["p50_us"] if d and c["target"] != "direct" else None
        c["added_p99_us"] = c["p99_us"] - d["p99_us"] if d and c["target"] != "direct" else None
        c["rps_pct_direct"] = pct(c["rps"], d["rps"]) if d else None
        c["rps_pct_nginx"] = pct(c["rps"], n["rps"]) if n else None
    # Chat streams: CPU per event the upstream sent, counted on the fake's default stream.
    up_events = (probes.get(("direct", "chat-sse")) or {}).get("events")
    out_chunks = (probes.get(("dualroute", "chat-sse")) or {}).get("chunks")
    for c in cells:
        if c["mode"] == "chat-sse":
            c["upstream_events"] = up_events
            c["cpu_us_per_event"] = (c["cpu_us_per_req"] / up_events
                                     if up_events and c["cpu_us_per_req"] is not None else None)
    classic = [c for c in cells if c["mode"] in ("json", "sse")]
    chat_cells = [c for c in cells if c["mode"] in CHAT_MODES]

    lines = []
    p = lines.append
    p(f"dualroute benchmark  {meta['started']}  {'SMOKE (1 s cells, numbers not meaningful)' if meta['smoke'] else ''}")
    p(f"host {meta['host']}, {meta['ncpu']} cpus; servers on cpu {meta['server_cpu']}, "
      f"clients on cpu {meta['client_cpu']}; {meta['seconds']} s per cell, wrk -t1; "
      f"body {meta['body_bytes']['json']} B (json) / {meta['body_bytes']['sse']} B (sse)")
    p(f"load average at start {meta.get('loadavg')}, at end {meta.get('loadavg_end', '?')}")
    p("")
    hdr = (f"{'mode':<5}{'conns':>6} {'target':<10}{'RPS':>9}{'p50 µs':>9}{'p99 µs':>9}"
           f"{'+p50':>8}{'+p99':>8}{'%direct':>9}{'%nginx':>8}{'CPU µs/req':>12}"
           f"{'fake µs/req':>13}{'srv%':>7}{'other%':>7}{'errors':>7}")
    if classic:
        p(hdr)
        p("-" * len(hdr.replace("µ", "u")))
    for mode in ("json", "sse"):
        for conns in sorted({c["conns"] for c in cells if c["mode"] == mode}):
            for t in TARGETS:
                c = by.get((mode, conns, t))
                if not c:
                    continue
                p(f"{mode:<5}{conns:>6} {t:<10}{fmt(c['rps']):>9}{fmt(c['p50_us']):>9}"
                  f"{fmt(c['p99_us']):>9}{signed(c['added_p50_us']):>8}"
                  f"{signed(c['added_p99_us']):>8}{fmt(c['rps_pct_direct'], '{:.0f}%'):>9}"
                  f"{fmt(c['rps_pct_nginx'], '{:.0f}%'):>8}"
                  f"{fmt(c['cpu_us_per_req'], '{:.1f}'):>12}"
                  f"{fmt(c['fake_cpu_us_per_req'], '{:.1f}'):>13}"
                  f"{fmt(c['server_cpu_busy_pct']):>7}{fmt(c['server_cpu_other_pct']):>7}"
                  f"{c['errors']:>7}")
        if not chat_cells or any(c["mode"] == mode for c in classic):
            p("")
    if chat_cells:
        chat_table(p, meta, by, chat_cells, up_events, out_chunks)
    p("CPU µs/req: user+system time of the target process alone (direct: the fake; nginx: its one")
    p("worker) over the cell, divided by completed requests. fake µs/req: the fake upstream's own.")
    p("srv%: how busy the server cpu was; other%: the part of it that is neither the target nor")
    p("the fake (interrupts, and other processes: a high figure means the cell was disturbed).")
    p("")

    if any(kind in ("sse-first", "sse", "json") for _, kind in ttfb):
        p("Sequential requests on one keep-alive connection (Python client), µs. sse-first: the")
        p("first event alone, the rest 1 ms later; sse: the default 36-event burst; json: the Message.")
        p(f"{'kind':<10} {'target':<10}{'n':>6}{'first byte p50':>16}{'p99':>8}{'+p50':>8}"
          f"{'+p99':>8}{'head p50':>10}{'whole p50':>11}{'p99':>8}")
        for kind in ("sse-first", "sse", "json"):
            d = ttfb.get(("direct", kind))
            for t in TARGETS:
                r = ttfb.get((t, kind))
                if not r:
                    continue
                fb, tot = r["first_byte_us"], r["total_us"]
                add50 = fb["p50"] - d["first_byte_us"]["p50"] if d and t != "direct" else None
                add99 = fb["p99"] - d["first_byte_us"]["p99"] if d and t != "direct" else None
                r["added_first_byte_p50_us"], r["added_first_byte_p99_us"] = add50, add99
                p(f"{kind:<10} {t:<10}{r['requests']:>6}{fmt(fb['p50']):>16}{fmt(fb['p99']):>8}"
                  f"{signed(add50):>8}{signed(add99):>8}{fmt(r['head_us']['p50']):>10}"
                  f"{fmt(tot['p50']):>11}{fmt(tot['p99']):>8}")
        p("")

    if any(kind in CHAT_TTFB_KINDS for _, kind in ttfb):
        chat_ttfb_table(p, ttfb)

    p("RSS (VmRSS, MB):")
    for t in TARGETS:
        r = rss.get(t, {})
        p(f"  {t:<10} idle at start {fmt(mb(r.get('idle')), '{:.1f}'):>6}   "
          f"after the runs {fmt(mb(r.get('after_runs')), '{:.1f}'):>6}")
    if streams:
        s = streams
        per = None
        base = rss.get("dualroute", {}).get("after_runs")
        if s.get("rss_kb_open") and base and s["opened"]:
            per = (s["rss_kb_open"] - base) / s["opened"]
        s["kb_per_stream"] = per
        p(f"  dualroute with {s['opened']}/{s['n']} open streams: "
          f"{fmt(mb(s.get('rss_kb_open')), '{:.1f}')} MB "
          f"(~{fmt(per, '{:.1f}')} KB per stream; fds {s.get('fds_open')}; "
          f"upstream conns open at the fake {(s.get('fake_stats_open') or {}).get('open_connections')}; "
          f"opened in {s['open_seconds']} s); after closing them "
          f"{fmt(mb(s.get('rss_kb_after')), '{:.1f}')} MB")
        if s["errors"]:
            p(f"  stream errors: {s['errors']}")
    p("")

    checks = []

    def check(name, value, limit, unit, ok):
        checks.append({"name": name, "value": value, "limit": limit, "unit": unit,
                       "pass": None if value is None else ok(value)})

    dj1 = by.get(("json", 1, "dualroute"))
    check("added p50, JSON, 1 conn", dj1 and dj1["added_p50_us"], 50, "µs", lambda v: v <= 50)
    sse_fb = ttfb.get(("dualroute", "sse-first"))
    check("added p50, first SSE byte, 1 conn", sse_fb and sse_fb.get("added_first_byte_p50_us"),
          50, "µs", lambda v: v <= 50)
    for mode in ("json", "sse"):
        c = by.get((mode, 16, "dualroute"))
        if c or mode == "json":
            check(f"RPS at 16 conns, {mode.upper()}, % of direct", c and c["rps_pct_direct"], 45,
                  "%", lambda v: v >= 45)
    for mode in ("json", "sse"):
        c = by.get((mode, 16, "dualroute"))
        if c or mode == "json":
            check(f"CPU per request, {mode.upper()}, 16 conns", c and c["cpu_us_per_req"], 40,
                  "µs", lambda v: v <= 40)
    r = rss.get("dualroute", {})
    idle = max([v for v in (r.get("idle"), r.get("after_runs")) if v is not None], default=None)
    check("RSS idle (max of start / after the runs)", mb(idle), 20, "MB", lambda v: v <= 20)
    if streams:
        check(f"RSS with {streams['n']} open streams", mb(streams.get("rss_kb_open"))
              if streams["opened"] == streams["n"] else None, 100, "MB", lambda v: v <= 100)

    # Issue 4's goals for the OpenAI route, in their own block, only when a chat mode ran.
    chat_checks = []
    if chat_cells:
        n_before = len(checks)
        c = by.get(("chat", 1, "dualroute"))
        check("added p50, chat JSON (1 KB), 1 conn", c and c["added_p50_us"], 80, "µs",
              lambda v: v <= 80)
        c = by.get(("chat-sse", 16, "dualroute"))
        check("CPU per upstream event, chat-sse, 16 conns", c and c.get("cpu_us_per_event"), 5,
              "µs", lambda v: v <= 5)
        for mode in CHAT_MODES:
            c = by.get((mode, 16, "dualroute"))
            if c or mode == "chat":
                check(f"RPS at 16 conns, {mode}, % of direct", c and c["rps_pct_direct"], 40, "%",
                      lambda v: v >= 40)
        chat_checks = checks[n_before:]
        # Each mark rests on routerd's cell and direct's; name a cell that was disturbed (other%:
        # cpu time on the server cpu that is neither the target nor the fake).
        basis = [("chat", 1), ("chat-sse", 16)] + [(m, 16) for m in CHAT_MODES]
        for c, (mode, conns) in zip(chat_checks, basis):
            c["group"] = "chat (issue 4)"
            c["disturbed"] = [f"{mode}/{conns}/{t} other% {x['server_cpu_other_pct']:.0f}"
                              for t in ("direct", "dualroute")
                              for x in [by.get((mode, conns, t))]
                              if x and (x["server_cpu_other_pct"] or 0) >= DISTURBED_PCT]

    def print_checks(title, group):
        p(title)
        for c in group:
            mark = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
            op = "≥" if c["unit"] == "%" else "≤"
            p(f"  [{mark}] {c['name']:<44} {fmt(c['value'], '{:.1f}'):>8} {c['unit']:<3}"
              f"(target {op} {c['limit']} {c['unit']})"
              + (f"  disturbed: {', '.join(c['disturbed'])}" if c.get("disturbed") else ""))
        if meta["smoke"]:
            p("  (smoke run: 1 s cells on a shared machine; these marks mean nothing)")

    print_checks("Targets (dualroute):", [c for c in checks if c not in chat_checks])
    if chat_checks:
        p("")
        print_checks("Targets (dualroute, OpenAI chat, issue 4):", chat_checks)

    text = "\n".join(lines)
    print(text)
    results = {
        "meta": meta, "cells": cells,
        "ttfb": [v for v in ttfb.values()], "rss_kb": rss, "streams": streams,
        **({"chat": {"probes": list(probes.values()), "upstream_events_per_stream": up_events,
                     "chunks_per_stream": out_chunks}} if probes else {}),
        "checks": checks, "table": text,
    }
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # Sanity for the smoke test: every cell completed requests without errors, every client ran.
    problems = []
    for c in cells:
        if not c["wrk"]["requests"]:
            problems.append(f"{c['mode']}/{c['conns']}/{c['target']}: no requests")
        if c["errors"]:
            problems.append(f"{c['mode']}/{c['conns']}/{c['target']}: {c['errors']} errors "
                            f"{c['wrk']['errors']}")
    for (t, kind), r in ttfb.items():
        if r["statuses"] != {"200": r["requests"]} and r["statuses"] != {200: r["requests"]}:
            problems.append(f"ttfb {t}/{kind}: statuses {r['statuses']}")
    if streams and streams["opened"] != streams["n"]:
        problems.append(f"streams: {streams['opened']} of {streams['n']} opened "
                        f"({streams['errors']})")
    for msg in problems:
        print(f"benchtool: problem: {msg}", file=sys.stderr)
    failed = [c for c in checks if c["pass"] is False]
    if problems:
        sys.exit(1)
    if args.strict and failed:
        sys.exit(3)


def chat_table(p, meta, by, chat_cells, up_events, out_chunks):
    """The OpenAI chat modes' table: like the main one, plus CPU per upstream event."""
    bb = meta.get("body_bytes", {})
    p("OpenAI chat: dualroute gets POST /v1/chat/completions, "
      f"{bb.get('chat', '?')} B ({bb.get('chat-sse', '?')} B streaming); direct and nginx get")
    p("the Messages request routerd makes of it, POST /v1/messages, "
      f"{bb.get('chat-anthropic', '?')} B ({bb.get('chat-sse-anthropic', '?')} B): nginx cannot "
      "translate, it is the")
    p("reference cost of a proxy hop. chat-sse: the fake's default stream, "
      f"{fmt(up_events)} events (counted), which routerd")
    p(f"turns into {fmt(out_chunks)} chat.completion.chunk events and [DONE]. "
      "µs/event: CPU µs/req / upstream events.")
    hdr = (f"{'mode':<9}{'conns':>6} {'target':<10}{'RPS':>9}{'p50 µs':>9}{'p99 µs':>9}"
           f"{'+p50':>8}{'+p99':>8}{'%direct':>9}{'%nginx':>8}{'CPU µs/req':>12}{'µs/event':>10}"
           f"{'fake µs/req':>13}{'srv%':>7}{'other%':>7}{'errors':>7}")
    p(hdr)
    p("-" * len(hdr.replace("µ", "u")))
    for mode in CHAT_MODES:
        conns_list = sorted({c["conns"] for c in chat_cells if c["mode"] == mode})
        for conns in conns_list:
            for t in TARGETS:
                c = by.get((mode, conns, t))
                if not c:
                    continue
                p(f"{mode:<9}{conns:>6} {t:<10}{fmt(c['rps']):>9}{fmt(c['p50_us']):>9}"
                  f"{fmt(c['p99_us']):>9}{signed(c['added_p50_us']):>8}"
                  f"{signed(c['added_p99_us']):>8}{fmt(c['rps_pct_direct'], '{:.0f}%'):>9}"
                  f"{fmt(c['rps_pct_nginx'], '{:.0f}%'):>8}"
                  f"{fmt(c['cpu_us_per_req'], '{:.1f}'):>12}"
                  f"{fmt(c.get('cpu_us_per_event'), '{:.2f}'):>10}"
                  f"{fmt(c['fake_cpu_us_per_req'], '{:.1f}'):>13}"
                  f"{fmt(c['server_cpu_busy_pct']):>7}{fmt(c['server_cpu_other_pct']):>7}"
                  f"{c['errors']:>7}")
        if conns_list:
            p("")


def chat_ttfb_table(p, ttfb):
    """First-byte timings of the chat kinds (dualroute: the OpenAI request; others: Messages)."""
    p("Sequential chat requests on one keep-alive connection (Python client), µs; dualroute gets")
    p("the OpenAI request, direct and nginx the Messages one. chat: the JSON answer;")
    p("chat-sse-first: a stream whose first event goes out at once, the rest 1 ms later (for")
    p("dualroute the first byte is the role chunk it makes of message_start).")
    p(f"{'kind':<15} {'target':<10}{'n':>6}{'first byte p50':>16}{'p99':>8}{'+p50':>8}"
      f"{'+p99':>8}{'head p50':>10}{'whole p50':>11}{'p99':>8}")
    for kind in CHAT_TTFB_KINDS:
        d = ttfb.get(("direct", kind))
        for t in TARGETS:
            r = ttfb.get((t, kind))
            if not r:
                continue
            fb, tot = r["first_byte_us"], r["total_us"]
            add50 = fb["p50"] - d["first_byte_us"]["p50"] if d and t != "direct" else None
            add99 = fb["p99"] - d["first_byte_us"]["p99"] if d and t != "direct" else None
            r["added_first_byte_p50_us"], r["added_first_byte_p99_us"] = add50, add99
            p(f"{kind:<15} {t:<10}{r['requests']:>6}{fmt(fb['p50']):>16}{fmt(fb['p99']):>8}"
              f"{signed(add50):>8}{signed(add99):>8}{fmt(r['head_us']['p50']):>10}"
              f"{fmt(tot['p50']):>11}{fmt(tot['p99']):>8}")
    p("")


def mb(kb):
    return None if kb is None else kb / 1024.0


# ---------------------------------------------------------------------------------------------


def cmd_freeport(args):
    with socket.socket() as s:
        s.bind((HOST, 0))
        print(s.getsockname()[1])


def cmd_body(args):
    sys.stdout.buffer.write(make_body(args.kind, args.hold_ms))


def cmd_meta(args):
    """Prints a JSON object from KEY=VALUE words; integers and true/false are converted."""
    out = {"host": platform.node(), "python": platform.python_version(),
           "kernel": platform.release()}
    for word in args.pairs:
        key, _, value = word.partition("=")
        if value.lstrip("-").isdigit():
            out[key] = int(value)
        elif value in ("true", "false"):
            out[key] = value == "true"
        else:
            out[key] = value
    out["body_bytes"] = {"json": len(make_body("json")), "sse": len(make_body("sse"))}
    for kind in ("chat", "chat-sse", "chat-anthropic", "chat-sse-anthropic"):
        out["body_bytes"][kind] = len(make_body(kind))
    print(json.dumps(out))


def cmd_wait(args):
    """Waits until the port answers an HTTP request with any status line; exit 1 on timeout."""
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, args.port), timeout=1) as s:
                s.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {HOST}:{args.port}\r\n"
                          "Connection: close\r\n\r\n".encode())
                s.settimeout(2)
                if s.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    print(f"benchtool: nothing answers HTTP on {HOST}:{args.port}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport").set_defaults(fn=cmd_freeport)
    b = sub.add_parser("body")
    b.add_argument("kind", choices=BODY_KINDS)
    b.add_argument("--hold-ms", type=int, default=60000)
    b.set_defaults(fn=cmd_body)
    t = sub.add_parser("ttfb")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--kind", choices=("json", "sse", "sse-first", "chat", "chat-sse-first"),
                   default="sse")
    t.add_argument("--api", choices=("anthropic", "openai"), default="anthropic",
                   help="chat kinds: openai for routerd's /v1/chat/completions, anthropic for the "
                        "equivalent Messages request to the others")
    t.add_argument("--requests", type=int, default=2000)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--fake-port", type=int,
                   help="the fake's port, for --kind sse-first and chat-sse-first")
    t.set_defaults(fn=cmd_ttfb)
    pr = sub.add_parser("probe")
    pr.add_argument("--port", type=int, required=True)
    pr.add_argument("--kind", choices=("json", "sse", "chat", "chat-sse"), required=True)
    pr.add_argument("--api", choices=("anthropic", "openai"), default="anthropic")
    pr.set_defaults(fn=cmd_probe)
    s = sub.add_parser("streams")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--pid", type=int, required=True, help="process whose VmRSS is read")
    s.add_argument("--fake-port", type=int)
    s.add_argument("--fake-pid", type=int)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--parallel", type=int, default=100, help="connections being opened at once")
    s.add_argument("--hold-ms", type=int, default=60000)
    s.add_argument("--timeout", type=float, default=60.0)
    s.add_argument("--settle", type=float, default=1.0)
    s.add_argument("--drain-wait", type=float, default=5.0)
    s.set_defaults(fn=cmd_streams)
    r = sub.add_parser("report")
    r.add_argument("--cells", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--strict", action="store_true", help="exit 3 when a target check fails")
    r.set_defaults(fn=cmd_report)
    m = sub.add_parser("meta")
    m.add_argument("pairs", nargs="*")
    m.set_defaults(fn=cmd_meta)
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--path", default="/")
    w.add_argument("--timeout", type=float, default=10.0)
    w.set_defaults(fn=cmd_wait)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()

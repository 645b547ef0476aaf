#!/usr/bin/env python3
"""Request logs: the line formats of the minimal, normal, verbose and quiet modes, and no key in
any log (full, or any 12-character piece), nor in routerd's /proc/PID/environ."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, BODY_KEY, CLIENT_BEARER_KEY, CLIENT_KEY,  # noqa: E402
                     ROUTER_KEY, SUBSCRIPTION_TOKEN, RouterTestCase, find_secret_leaks,
                     messages_body)

# Log lines start with a [HH:MM:SS] stamp.
STAMP = r"^\[\d\d:\d\d:\d\d\] "


class LoggingTest(RouterTestCase):
    def post(self, router, body=None, headers=()):
        return self.request(router, "POST", "/v1/messages", body or messages_body(),
                            ANTHROPIC_HEADERS + list(headers))

    def test_minimal_line(self):
        router = self.start_router("-m")
        mark = router.log_mark()
        self.assertEqual(self.post(router).status, 200)
        router.wait_for_log(STAMP + r"\[Anthropic\] ✓ 200 claude-sonnet-4-5 \(in:28 out:19\)$",
                            start=mark)
        mark = router.log_mark()
        self.assertEqual(self.post(router, messages_body(stream=True)).status, 200)
        router.wait_for_log(STAMP + r"\[Anthropic\] ✓ 200 claude-sonnet-4-5 \(in:28 out:19\)$",
                            start=mark)
        # One line per request, nothing else.
        lines = router.lines_since(mark)
        self.assertEqual(len(lines), 1, lines)
        mark = router.log_mark()
        self.fake.queue({"status": 529})
        self.assertEqual(self.post(router).status, 529)
        router.wait_for_log(STAMP + r"\[Anthropic\] ✗ 529 claude-sonnet-4-5", start=mark)

    def test_normal_lines(self):
        router = self.start_router()
        mark = router.log_mark()
        self.assertEqual(self.post(router).status, 200)
        m = router.wait_for_log(STAMP + r"\[(rq_[0-9a-f]+)\] POST /v1/messages \[Anthropic\] "
                                r"model=claude-sonnet-4-5 max_tokens=64 stream=no$", start=mark)
        rid = m.group(1)
        router.wait_for_log(STAMP + r"\[%s\] ✓ 200 via router key \([0-9a-f]{8}\) in \d+ ms, "
                            r"first byte \d+ ms$" % rid, start=mark)
        router.wait_for_log(STAMP + r"\[%s\] Tokens: input=28, output=19, cache_read=0, "
                            r"cache_write=0$" % rid, start=mark)
        mark = router.log_mark()
        r = self.post(router, messages_body(stream=True))
        self.assertEqual(r.status, 200)
        m = router.wait_for_log(r"\[(rq_[0-9a-f]+)\] .*stream=yes$", start=mark)
        self.assertEqual(m.group(1), r.header("x-dualroute-request-id"))
        router.wait_for_log(r"\[%s\] Tokens: input=28, output=19" % m.group(1), start=mark)

    def test_verbose_redacts_keys(self):
        router = self.start_router("-V")
        body = messages_body()
        body["messages"][0]["content"] = "my key is %s, keep it safe" % BODY_KEY
        body["metadata"] = {"api_key": "plain-secret-value-0123456789abcdef"}
        body["system"] = "Authorization: Bearer %s" % CLIENT_BEARER_KEY
        mark = router.log_mark()
        r = self.post(router, body, [("x-api-key", CLIENT_KEY)])
        self.assertEqual(r.status, 200)
        router.wait_for_log(r"Request body \(\d+ bytes\)", start=mark)
        router.wait_for_log(r"Response body", start=mark)
        text = "\n".join(router.lines_since(mark))
        self.assertIn("[redacted:", text)
        self.assertRegex(text, r"my key is (sk-ant-)?\[redacted:[0-9a-f]{8}\], keep it safe")
        self.assertIn("keep it safe", text)
        self.assertNotIn("plain-secret-value-0123456789abcdef", text)
        self.assertEqual(find_secret_leaks(text), [])

    def test_quiet_still_logs_startup(self):
        """--help: "-q  Log start-up messages and errors only": the line with the port is a
        start-up message (and the only way to learn a port picked with -p 0)."""
        router = self.start_router("-q", wait=False)
        router.wait_for_log(harness.LISTEN_RE, timeout=5)

    def test_quiet(self):
        router = self.start_router("-q", port_arg=harness.free_port(), wait="connect")
        mark = router.log_mark()
        self.assertEqual(self.post(router).status, 200)
        self.assertEqual(self.post(router, messages_body(stream=True)).status, 200)
        self.assertEqual(self.request(router, "GET", "/v1/models").status, 200)
        down = self.start_router("-q", upstream="http://127.0.0.1:%d" % harness.closed_port(),
                                 port_arg=harness.free_port(), wait="connect")
        dmark = down.log_mark()
        self.assertEqual(self.post(down).status, 502)
        down.wait_for_log(r"✗ 502", start=dmark)
        self.assertEqual(router.lines_since(mark), [],
                         "quiet mode logged successful requests")

    def test_no_secret_in_any_log(self):
        """Every key through every path, in verbose mode (the most talkative), then a scan."""
        router = self.start_router("-V")
        for hdr in ([("x-api-key", CLIENT_KEY)], [("Authorization", "Bearer " + CLIENT_BEARER_KEY)],
                    [("x-api-key", SUBSCRIPTION_TOKEN)],
                    [("Authorization", "Bearer " + SUBSCRIPTION_TOKEN)],
                    [("x-api-key", "not-used")], []):
            self.post(router, headers=hdr)
            self.post(router, messages_body(stream=True), headers=hdr)
            self.request(router, "GET", "/v1/models", headers=hdr)
            self.request(router, "GET", "/v1/models/claude-haiku-4-5", headers=hdr)
            self.request(router, "POST", "/v1/messages/count_tokens", messages_body(),
                         ANTHROPIC_HEADERS + hdr)
        self.post(router, b'{"model":"x","key":"' + BODY_KEY.encode() + b'"')  # bad JSON
        self.fake.queue({"status": 401, "body": '{"type":"error","error":{"type":"authentication_'
                                                'error","message":"bad key %s"}}' % CLIENT_KEY})
        self.post(router, headers=[("x-api-key", CLIENT_KEY)])
        down = self.start_router("-V", upstream="http://127.0.0.1:%d" % harness.closed_port())
        self.post(down, headers=[("x-api-key", CLIENT_KEY)])
        for r in (router, down):
            r.stop()
            leaks = find_secret_leaks(r.log_text())
            self.assertEqual(leaks, [], "keys in the log %s" % r.log_path)
            # The fingerprints are there instead.
            self.assertRegex(r.log_text(), r"[0-9a-f]{8}")

    def test_key_in_query_string_not_logged(self):
        router = self.start_router()
        mark = router.log_mark()
        self.request(router, "POST", "/v1/messages?api_key=" + CLIENT_KEY, messages_body(),
                     ANTHROPIC_HEADERS)
        self.request(router, "GET", "/v1/nothing?key=" + CLIENT_KEY)
        router.wait_for_log(r"/v1/nothing", start=mark)
        self.assertEqual(find_secret_leaks("\n".join(router.lines_since(mark))), [])

    def test_key_in_model_field_not_logged(self):
        """A key pasted into the wrong field (swapped settings) is still a key."""
        router = self.start_router()
        mark = router.log_mark()
        self.post(router, ('{"model": "%s", "max_tokens": 1, "messages": []}' % BODY_KEY).encode())
        router.wait_for_log(r"✓ 200", start=mark)
        self.assertEqual(find_secret_leaks("\n".join(router.lines_since(mark))), [])

    def test_router_key_not_in_environ(self):
        router = self.start_router()
        try:
            with open("/proc/%d/environ" % router.pid, "rb") as f:
                environ = f.read()
        except PermissionError:
            self.skipTest("reading /proc/%d/environ of a non-dumpable process needs root"
                          % router.pid)
        self.assertNotIn(ROUTER_KEY.encode(), environ)
        self.assertEqual(find_secret_leaks(environ), [])
        # The variable itself may stay (its value is overwritten in place).
        for var in environ.split(b"\0"):
            if var.startswith(b"ANTHROPIC_API_KEY="):
                self.assertFalse(re.search(rb"sk-ant-", var), var)
        with open("/proc/%d/cmdline" % router.pid, "rb") as f:
            self.assertEqual(find_secret_leaks(f.read()), [])


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""dualroutectl against the real dualroute-authd (and routerd, fake-oauth, fake-upstream): account
add from stdin and from a file, list with fingerprints and never a key, --json, remove, the exit
codes (1 refused, 2 usage, 3 authd unreachable, 4 routerd unreachable), the map verbs, status and
check, a Vertex login through fake-oauth acting as the browser (loopback listener, and the pasted
URL of --no-browser), a refused login, logout, and chat through routerd. Every output of
dualroutectl and authd's log are scanned for the secrets the test used."""

import hashlib
import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import authd_harness  # noqa: E402
import harness  # noqa: E402
from harness import (FakeOAuth, FakeUpstream, Routerd, _base_env, _canary, _spawn, _stop_process,  # noqa: E402
                     closed_port, find_secret_leaks, wait_until)

CTL = harness._binary("DUALROUTE_CTL", "ctl/dualroutectl")

KEY_STDIN = _canary("CtlStdinKey")
KEY_FILE = _canary("CtlFileKey")
KEY_LOOSE = _canary("CtlLooseKey")
ROUTER_CLIENT_KEY = _canary("CtlChatKey")
CLIENT_ID = "ctl-test-client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-" + hashlib.sha256(b"ctl client secret").hexdigest()[:28]
SECRETS = [KEY_STDIN, KEY_FILE, KEY_LOOSE, ROUTER_CLIENT_KEY, CLIENT_SECRET]


def fingerprint(secret):
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


class Authd(authd_harness.Authd):
    """authd_harness.Authd under the names this module uses."""

    def __init__(self, workdir, args=()):
        super().__init__(args=args, workdir=workdir)

    @property
    def socket(self):
        return self.socket_path

    def log_text(self):
        return self.log()


def http_get(url, timeout=10):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", u.path + ("?" + u.query if u.query else ""))
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


class CtlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CTL, os.X_OK):
            raise unittest.SkipTest("dualroutectl not built (%s)" % CTL)
        cls.tmp = tempfile.mkdtemp(prefix="dualroute-ctl-")

    def setUp(self):
        self.work = tempfile.mkdtemp(dir=self.tmp)
        self.outputs = []
        self.fakes = []
        self.authd = None
        self.extra_secrets = []

    def tearDown(self):
        logs = []
        if self.authd:
            self.assertEqual(self.authd.stop(), 0, "authd did not stop cleanly")
            logs.append(self.authd.log_text())
        for f in self.fakes:
            f.stop()
        for text in self.outputs + logs:
            leaks = find_secret_leaks(text, SECRETS + self.extra_secrets)
            self.assertEqual(leaks, [], "a secret leaked into:\n" + text[:2000])

    # helpers

    def start_authd(self, oauth=None):
        args = []
        if oauth:
            args = ["--set", "google_auth_url=%s/o/oauth2/v2/auth" % oauth.url,
                    "--set", "google_token_url=%s/token" % oauth.url,
                    "--set", "google_revoke_url=%s/revoke" % oauth.url,
                    "--set", "metadata_url=%s" % oauth.url]
        self.authd = Authd(self.work, args).start()
        return self.authd

    def start_oauth(self):
        f = FakeOAuth(self.work).start()
        self.fakes.append(f)
        f.call("POST", "/_fake/clients", {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                          "redirect_uris": "loopback"})
        return f

    def env(self, extra=None):
        e = {"DUALROUTE_ROUTER": "http://127.0.0.1:%d" % closed_port()}
        e.update(extra or {})
        return _base_env(e)

    def ctl(self, *args, stdin=None, env=None, socket_path=None, timeout=30):
        sock = socket_path or (self.authd.socket if self.authd else "/nonexistent/authd.sock")
        p = subprocess.run([CTL, "--socket", sock] + list(args), input=stdin,
                           capture_output=True, text=True, env=self.env(env), timeout=timeout)
        self.outputs += [p.stdout, p.stderr]
        return p.returncode, p.stdout, p.stderr

    def assert_one_line_error(self, err):
        lines = err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("dualroutectl: "), err)

    def key_file(self, name, secret, mode=0o600):
        path = os.path.join(self.work, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.write(fd, (secret + "\n").encode())
        os.close(fd)
        os.chmod(path, mode)
        return path

    def accounts_json(self):
        rc, out, err = self.ctl("--json", "account", "list")
        self.assertEqual(rc, 0, err)
        return {a["name"]: a for a in json.loads(out)["accounts"]}

    # accounts

    def test_account_add_list_remove(self):
        self.start_authd()
        rc, out, err = self.ctl("account", "add", "stdin-acct", "--provider", "anthropic",
                                "--api-key-file", "-", stdin=KEY_STDIN + "\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("stdin-acct", out)
        rc, out, err = self.ctl("account", "add", "file-acct", "--provider", "anthropic",
                                "--api-key-file", self.key_file("key", KEY_FILE))
        self.assertEqual(rc, 0, err)
        self.assertNotIn("warning", err)
        rc, out, err = self.ctl("account", "add", "loose-acct", "--provider", "anthropic",
                                "--api-key-file", self.key_file("loose", KEY_LOOSE, 0o644))
        self.assertEqual(rc, 0, err)
        self.assertIn("warning", err)
        self.assertIn("chmod 600", err)

        rc, out, err = self.ctl("account", "list")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^NAME\s+PROVIDER\s+AUTH\s+STATE\s+EXPIRES\s+FINGERPRINT")
        rows = {line.split()[0]: line for line in lines[1:]}
        self.assertEqual(set(rows), {"stdin-acct", "file-acct", "loose-acct"})
        self.assertIn(fingerprint(KEY_STDIN), rows["stdin-acct"])
        self.assertIn(fingerprint(KEY_FILE), rows["file-acct"])
        self.assertIn("anthropic", rows["file-acct"])
        # The columns line up: every row's fingerprint starts where the header's column does.
        col = lines[0].index("FINGERPRINT")
        self.assertEqual(rows["file-acct"][col:col + 8], fingerprint(KEY_FILE))

        accts = self.accounts_json()
        self.assertEqual(accts["stdin-acct"]["fingerprint"], fingerprint(KEY_STDIN))
        self.assertEqual(accts["file-acct"]["provider"], "anthropic")

        rc, out, err = self.ctl("account", "add", "file-acct", "--provider", "anthropic",
                                "--api-key-file", "-", stdin=KEY_FILE)
        self.assertEqual(rc, 1, "exists must exit 1")
        self.assert_one_line_error(err)

        rc, out, err = self.ctl("account", "remove", "stdin-acct")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("stdin-acct", self.accounts_json())
        rc, out, err = self.ctl("account", "remove", "stdin-acct")
        self.assertEqual(rc, 1, "not_found must exit 1")
        self.assert_one_line_error(err)
        rc, out, err = self.ctl("logout", "no-such-account")
        self.assertEqual(rc, 1, err)

    def test_empty_secret_is_refused_before_authd(self):
        self.start_authd()
        rc, out, err = self.ctl("account", "add", "x", "--provider", "anthropic",
                                "--api-key-file", "-", stdin="  \n")
        self.assertEqual(rc, 1, err)
        self.assert_one_line_error(err)
        self.assertEqual(self.accounts_json(), {})

    def test_usage_errors_exit_2(self):
        self.start_authd()
        cases = [
            [],
            ["frobnicate"],
            ["--bogus", "status"],
            ["account"],
            ["account", "add", "x"],
            ["account", "add", "x", "--provider", "anthropic"],
            ["account", "add", "x", "--provider", "anthropic", "--api-key", KEY_STDIN],
            ["account", "add", "x", "--provider", "vertex", "--project", "p", "--region", "r"],
            ["account", "add", "x", "--provider", "vertex", "--project", "p", "--region", "r",
             "--metadata", "--adc-file", "f"],
            ["account", "remove"],
            ["map", "set", "only-alias"],
            ["map", "frob"],
            ["login", "vertex", "--account", "a"],
            ["login", "bedrock"],
            ["chat"],
            ["logout"],
        ]
        for args in cases:
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 2, "%r: rc %d, %s" % (args, rc, err))
            self.assert_one_line_error(err)
        self.assertEqual(self.accounts_json(), {})

    def test_help_for_every_verb(self):
        for args in (["--help"], ["status", "--help"], ["check", "--help"],
                     ["account", "--help"], ["account", "add", "--help"], ["login", "--help"],
                     ["logout", "--help"], ["map", "--help"], ["map", "import", "--help"],
                     ["chat", "--help"]):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 0, "%r: %s" % (args, err))
            self.assertTrue(out.startswith("Usage: dualroutectl"), "%r: %s" % (args, out))
        rc, out, err = self.ctl("--version")
        self.assertEqual((rc, out.strip()), (0, "dualroutectl 0.1.0"))

    def test_authd_unreachable_exits_3(self):
        missing = os.path.join(self.work, "nothing.sock")
        for args in (["status"], ["account", "list"], ["map", "list"], ["logout", "x"]):
            rc, out, err = self.ctl(*args, socket_path=missing)
            self.assertEqual(rc, 3, "%r: %s" % (args, err))
            self.assert_one_line_error(err)
            self.assertIn("not reachable", err)
        # A socket file nobody listens on is the same.
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(self.work, "dead.sock"))
        s.close()
        rc, out, err = self.ctl("status", socket_path=os.path.join(self.work, "dead.sock"))
        self.assertEqual(rc, 3, err)
        # DUALROUTE_SOCKET is the default when --socket is not given.
        p = subprocess.run([CTL, "account", "list"], capture_output=True, text=True,
                           env=self.env({"DUALROUTE_SOCKET": missing}), cwd=self.work)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn(missing, p.stderr)

    def test_permission_denied_exits_5(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run dualroutectl as another user")
        self.start_authd()
        # nobody may not reach the socket (0660 in a 0700 state directory): exit 5, not 3.
        p = subprocess.run([CTL, "--socket", self.authd.socket, "account", "list"],
                           capture_output=True, text=True, env=self.env(), user=65534,
                           group=65534, extra_groups=[], cwd="/")
        self.outputs += [p.stdout, p.stderr]
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assert_one_line_error(p.stderr)
        self.assertIn("permission denied", p.stderr)

    def test_route_verbs(self):
        self.start_authd()
        rc, out, err = self.ctl("route", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("No routes", out)
        rc, out, err = self.ctl("account", "add", "work", "--provider", "anthropic",
                                "--api-key-file", "-", stdin=KEY_STDIN + "\n")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("--json", "route", "list")
        self.assertEqual(json.loads(out)["routes"],
                         [{"model": "*", "account": "work", "implicit": True}])
        rc, out, err = self.ctl("route", "set", "claude-opus-*", "work")
        self.assertEqual(rc, 0, err)
        self.assertIn("served by account 'work'", out)
        rc, out, err = self.ctl("route", "list")
        self.assertRegex(out, r"(?m)^claude-opus-\*\s+work\s+-$")
        rc, out, err = self.ctl("route", "set", "claude-haiku-*", "nobody")
        self.assertEqual(rc, 1, err)
        self.assert_one_line_error(err)
        self.assertIn("nobody", err)
        rc, out, err = self.ctl("route", "set", "only-one-arg")
        self.assertEqual(rc, 2, err)
        rc, out, err = self.ctl("route", "unset", "claude-opus-*")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("route", "unset", "claude-opus-*")
        self.assertEqual(rc, 1, err)
        rc, out, err = self.ctl("route", "--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("longest prefix", out)

    def test_map_roundtrip(self):
        self.start_authd()
        rc, out, err = self.ctl("map", "set", "fast", "claude-haiku-4-5")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("map", "set", "--default", "claude-sonnet-4-5")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("map", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("Default model: claude-sonnet-4-5", out)
        self.assertRegex(out, r"(?m)^fast\s+claude-haiku-4-5$")
        rc, out, err = self.ctl("--json", "map", "list")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual(j["aliases"], {"fast": "claude-haiku-4-5"})
        self.assertEqual(j["default_model"], "claude-sonnet-4-5")
        self.assertNotIn("v", j)
        self.assertNotIn("id", j)

        rc, out, err = self.ctl("map", "unset", "--default")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("--json", "map", "list")
        self.assertIsNone(json.loads(out).get("default_model"))
        rc, out, err = self.ctl("map", "unset", "fast")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("map", "unset", "fast")
        self.assertEqual(rc, 1, "not_found must exit 1: %s" % err)
        self.assert_one_line_error(err)

        path = os.path.join(self.work, ".router-mappings.json")
        self.ctl("map", "set", "stale", "claude-opus-4-1")
        with open(path, "w") as f:
            json.dump({"gpt-4o": "claude-sonnet-4-5", "gpt-4o-mini": "claude-haiku-4-5"}, f)
        rc, out, err = self.ctl("--json", "map", "import", path)
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual((j["added"], j["changed"], j["removed"]), (2, 0, 0))
        with open(path, "w") as f:
            json.dump({"gpt-4o": "claude-opus-4-1"}, f)
        rc, out, err = self.ctl("map", "import", path, "--replace")
        self.assertEqual(rc, 0, err)
        self.assertIn("0 added, 1 changed, 2 removed", out)
        rc, out, err = self.ctl("--json", "map", "list")
        self.assertEqual(json.loads(out)["aliases"], {"gpt-4o": "claude-opus-4-1"})

        with open(path, "w") as f:
            f.write("[1, 2]")
        rc, out, err = self.ctl("map", "import", path)
        self.assertEqual(rc, 1, err)
        self.assert_one_line_error(err)

    # status, check, chat: with routerd

    def start_routerd(self):
        up = FakeUpstream(self.work).start()
        self.fakes.append(up)
        router = Routerd(self.work, upstream=up.url).start()
        self.addCleanup(router.stop)
        return up, router

    def test_status_and_check(self):
        self.start_authd()
        rc, out, err = self.ctl("account", "add", "work", "--provider", "anthropic",
                                "--api-key-file", "-", stdin=KEY_STDIN)
        self.assertEqual(rc, 0, err)

        # routerd down: the table is still shown, and the exit is 4.
        rc, out, err = self.ctl("status")
        self.assertEqual(rc, 4, err)
        self.assertIn("routerd:  FAIL", out)
        self.assertRegex(out, r"(?m)^work\s+anthropic\s+api_key\s+ok\s")
        self.assertIn(fingerprint(KEY_STDIN), out)
        rc, out, err = self.ctl("check")
        self.assertEqual(rc, 4, out + err)
        self.assertRegex(out, r"(?m)^ok\s+authd at ")
        self.assertRegex(out, r"(?m)^ok\s+account 'work' \(anthropic\)$")
        self.assertRegex(out, r"(?m)^FAIL\s+routerd at ")

        up, router = self.start_routerd()
        env = {"DUALROUTE_ROUTER": router.url}
        rc, out, err = self.ctl("status", env=env)
        self.assertEqual(rc, 0, err)
        self.assertIn("routerd:  ok at " + router.url, out)
        rc, out, err = self.ctl("--json", "status", env=env)
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertTrue(j["routerd"]["reachable"])
        self.assertEqual([a["name"] for a in j["accounts"]], ["work"])
        rc, out, err = self.ctl("check", env=env)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("FAIL", out)
        self.assertEqual(len(out.splitlines()), 3, out)

    def test_chat(self):
        up, router = self.start_routerd()
        env = {"DUALROUTE_ROUTER": router.url, "DUALROUTE_API_KEY": ROUTER_CLIENT_KEY}
        rc, out, err = self.ctl("chat", "Say hello", "--model", "claude-haiku-4-5", env=env)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("Sure! Here is a short overview"), out)
        rec = up.wait_requests(1)[-1]
        body = json.loads(rec["body"]) if isinstance(rec["body"], str) else rec["body"]
        self.assertEqual(body["messages"], [{"role": "user", "content": "Say hello"}])
        self.assertEqual(body["model"], "claude-haiku-4-5")
        # routerd passed our key upstream: it came from DUALROUTE_API_KEY, not argv.
        self.assertEqual(rec["headers"].get("x-api-key"), ROUTER_CLIENT_KEY)

        rc, sout, err = self.ctl("chat", "Say hello", "--stream", env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sout, out, "the streamed text must equal the whole reply's")

        up.queue({"status": 429})
        rc, out, err = self.ctl("chat", "again", env=env)
        self.assertEqual(rc, 1, err)
        self.assert_one_line_error(err)
        self.assertIn("HTTP 429", err)

        rc, out, err = self.ctl("chat", "hello")  # DUALROUTE_ROUTER is a closed port
        self.assertEqual(rc, 4, err)
        self.assert_one_line_error(err)

    def test_vertex_account_add_adc_and_metadata(self):
        oauth = self.start_oauth()
        self.start_authd(oauth)
        seeded = oauth.call("POST", "/_fake/refresh-tokens", {"client_id": CLIENT_ID})
        refresh = seeded["refresh_token"]
        self.extra_secrets.append(refresh)
        adc = json.dumps({"type": "authorized_user", "client_id": CLIENT_ID,
                          "client_secret": CLIENT_SECRET, "refresh_token": refresh}, indent=2)
        rc, out, err = self.ctl("account", "add", "adc", "--provider", "vertex", "--project",
                                "proj-1", "--region", "us-east5", "--adc-file",
                                self.key_file("adc.json", adc))
        self.assertEqual(rc, 0, out + err)
        rc, out, err = self.ctl("account", "add", "gce", "--provider", "vertex", "--project",
                                "proj-1", "--region", "global", "--metadata")
        self.assertEqual(rc, 0, out + err)
        accts = self.accounts_json()
        self.assertEqual((accts["adc"]["auth"], accts["adc"]["state"]), ("gcloud_adc", "ok"))
        self.assertEqual((accts["gce"]["auth"], accts["gce"]["state"]), ("metadata", "ok"))

        # authd tries the credential first: a refused one is an upstream error, exit 1.
        bad = json.dumps({"type": "authorized_user", "client_id": CLIENT_ID,
                          "client_secret": CLIENT_SECRET, "refresh_token": "1//revoked-token"})
        rc, out, err = self.ctl("account", "add", "bad", "--provider", "vertex", "--project",
                                "proj-1", "--region", "us-east5", "--adc-file", "-", stdin=bad)
        self.assertEqual(rc, 1, out + err)
        self.assert_one_line_error(err)
        self.assertNotIn("bad", self.accounts_json())

    # login

    def run_login(self, oauth, account, extra=(), secret_file=None):
        if secret_file is None:
            secret_file = self.key_file("client-secret", CLIENT_SECRET)
        cmd = [CTL, "--socket", self.authd.socket, "login", "vertex", "--account", account,
               "--project", "proj-1", "--region", "us-east5", "--client-id", CLIENT_ID,
               "--client-secret-file", secret_file] + list(extra)
        p = _spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   env=self.env())
        url = None
        got = b""
        deadline = time.monotonic() + 15
        while url is None:
            self.assertLess(time.monotonic(), deadline, "no URL printed: %r" % got)
            r, _, _ = select.select([p.stdout], [], [], 1)
            if r:
                b = os.read(p.stdout.fileno(), 4096)
                if not b:
                    p.wait(timeout=10)
                    self.fail("login exited with %s: %r %r" % (p.returncode, got,
                                                               p.stderr.read()))
                got += b
                m = re.search(rb"(http://127\.0\.0\.1:\d+/o/oauth2/v2/auth\?\S+)\n", got)
                if m:
                    url = m.group(1).decode()
        self.assertIn(b"Open this URL in a browser", got)
        return p, url, got

    def finish(self, p, got, stdin=None, timeout=30):
        out, err = p.communicate(input=stdin, timeout=timeout)
        out = (got + out).decode()
        err = err.decode()
        self.outputs += [out, err]
        return p.returncode, out, err

    def browser_follow(self, url):
        """GETs the authorize URL from the fake (302) and returns the Location."""
        status, headers, body = http_get(url)
        self.assertEqual(status, 302, body)
        loc = headers["location"]
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query).get("code")
        if code:
            self.extra_secrets.append(code[0])
        return loc

    def test_login_vertex_through_loopback_then_logout(self):
        oauth = self.start_oauth()
        self.start_authd(oauth)
        p, url, got = self.run_login(oauth, "work")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        self.assertEqual(q["client_id"], [CLIENT_ID])
        self.assertEqual(q["code_challenge_method"], ["S256"])
        redirect_uri = q["redirect_uri"][0]
        self.assertRegex(redirect_uri, r"^http://127\.0\.0\.1:\d+/$")
        loc = self.browser_follow(url)
        self.assertTrue(loc.startswith(redirect_uri), loc)
        status, headers, body = http_get(loc)  # the browser lands on dualroutectl's listener
        self.assertEqual(status, 200, body)
        self.assertIn(b"close this tab", body)
        rc, out, err = self.finish(p, got)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("Logged in: account 'work'", out)

        accts = self.accounts_json()
        self.assertEqual(accts["work"]["provider"], "vertex")
        self.assertEqual(accts["work"]["state"], "ok")
        rc, out, err = self.ctl("status")
        self.assertRegex(out, r"(?m)^work\s+vertex\s+\S+\s+ok\s+in \d+m")

        rc, out, err = self.ctl("logout", "work")
        self.assertEqual(rc, 0, err)
        self.assertIn("the provider confirmed", out)
        self.assertEqual(self.accounts_json()["work"]["state"], "needs_login")
        rc, out, err = self.ctl("check")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^FAIL\s+account 'work' \(vertex\): state needs_login")

    def test_login_no_browser_pasted_url(self):
        oauth = self.start_oauth()
        self.start_authd(oauth)
        p, url, got = self.run_login(oauth, "headless", extra=["--no-browser"])
        self.assertIn(b"paste it here", got)
        loc = self.browser_follow(url)
        rc, out, err = self.finish(p, got, stdin=("\n  " + loc + "  \n").encode())
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.accounts_json()["headless"]["state"], "ok")

    def test_login_refused_and_bad_paste(self):
        oauth = self.start_oauth()
        self.start_authd(oauth)
        oauth.call("POST", "/_fake/config", {"deny_next_authorizations": 1})
        p, url, got = self.run_login(oauth, "denied")
        loc = self.browser_follow(url)
        self.assertIn("error=access_denied", loc)
        status, headers, body = http_get(loc)
        self.assertEqual(status, 400)
        rc, out, err = self.finish(p, got)
        self.assertEqual(rc, 1, out + err)
        self.assert_one_line_error(err)
        self.assertIn("access_denied", err)
        self.assertNotIn("denied", self.accounts_json())

        p, url, got = self.run_login(oauth, "garbage", extra=["--no-browser"])
        rc, out, err = self.finish(p, got, stdin=b"http://127.0.0.1:1/?nothing=here\n")
        self.assertEqual(rc, 1, out + err)
        self.assert_one_line_error(err)

        # A wrong state (a redirect meant for another session) is refused by authd.
        p, url, got = self.run_login(oauth, "mismatch", extra=["--no-browser"])
        loc = self.browser_follow(url)
        forged = re.sub(r"state=[^&]+", "state=forged", loc)
        rc, out, err = self.finish(p, got, stdin=(forged + "\n").encode())
        self.assertEqual(rc, 1, out + err)
        self.assertNotIn("mismatch", self.accounts_json())


if __name__ == "__main__":
    harness.main()

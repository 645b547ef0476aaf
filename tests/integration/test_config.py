#!/usr/bin/env python3
"""Configuration: --check-config and --dump-config, errors that name file:LINE, precedence
(command line > ROUTER_PORT > file), the refusal to listen openly on a non-loopback address, and
the router key from a file (which must be private) or a systemd credential."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (ANTHROPIC_HEADERS, FILE_KEY, ROUTER_KEY, RouterTestCase,  # noqa: E402
                     find_secret_leaks, free_port, messages_body, run_routerd)


class ConfigTest(RouterTestCase):
    def write(self, name, text, mode=0o600):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_check_config_ok(self):
        path = self.write("ok.conf", "# routerd\n\nport = 3999\nlisten = 127.0.0.1\n"
                          "max_body_size = 4M\nclient_request_timeout = 30s\n"
                          "log_mode = minimal\nenable_openai = no\n")
        rc, out, err = run_routerd(["--config", path, "--check-config"])
        self.assertEqual(rc, 0, err)
        self.assertIn("Configuration OK", out)

    def test_unknown_key_names_file_and_line(self):
        path = self.write("bad.conf", "# comment\nport = 3999\nno_such_key = 1\n")
        rc, out, err = run_routerd(["--config", path, "--check-config"])
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:3:" % path, err)
        self.assertIn("no_such_key", err)
        # The same file refuses to run, not only to check.
        rc, out, err = run_routerd(["--config", path, "-p", "0"], timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:3:" % path, err)

    def test_bad_values(self):
        for text, line in (("port = 70000\n", 1), ("\nmax_body_size = lots\n", 2),
                           ("log_mode = chatty\n", 1), ("drain_timeout = -1s\n", 1),
                           ("enable_openai = perhaps\n", 1)):
            with self.subTest(text=text):
                path = self.write("v.conf", text)
                rc, out, err = run_routerd(["--config", path, "--check-config"])
                self.assertNotEqual(rc, 0, text)
                self.assertIn("%s:%d:" % (path, line), err)
        for arg in ("max_body_size=abc", "nonsense=1", "port"):
            with self.subTest(arg=arg):
                rc, out, err = run_routerd(["--set", arg, "--check-config"])
                self.assertNotEqual(rc, 0)
                self.assertTrue(err.strip())

    def test_missing_config_file(self):
        rc, out, err = run_routerd(["--config", os.path.join(self.workdir, "nope.conf"),
                                    "--check-config"])
        self.assertNotEqual(rc, 0)
        self.assertIn("nope.conf", err)

    def test_dump_round_trip(self):
        rc, dump1, err = run_routerd(["--set", "max_body_size=3M", "--set", "log_mode=verbose",
                                      "--set", "drain_timeout=7s", "--disable-openai",
                                      "--upstream", "https://api.example.com/", "-p", "4321",
                                      "--dump-config"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(dump1, r"(?m)^port = 4321$")
        self.assertRegex(dump1, r"(?m)^enable_openai = no$")
        path = self.write("dump.conf", dump1)
        rc, dump2, err = run_routerd(["--config", path, "--dump-config"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(dump2, dump1)
        # Also the defaults.
        rc, d1, _ = run_routerd(["--dump-config"])
        path = self.write("defaults.conf", d1)
        rc, d2, err = run_routerd(["--config", path, "--dump-config"])
        self.assertEqual((rc, d2), (0, d1), err)
        self.assertEqual(find_secret_leaks(d1 + dump1), [])

    def test_precedence(self):
        p_file, p_env, p_cmd = free_port(), free_port(), free_port()
        path = self.write("p.conf", "port = %d\n" % p_file)
        r = self.start_router("--config", path, port_arg=p_cmd,
                              env={"ROUTER_PORT": str(p_env)})
        self.assertEqual(r.port, p_cmd)
        r.stop()
        r = self.start_router("--config", path, port_arg=False, env={"ROUTER_PORT": str(p_env)})
        self.assertEqual(r.port, p_env)
        r.stop()
        r = self.start_router("--config", path, port_arg=False)
        self.assertEqual(r.port, p_file)
        self.assertEqual(self.request(r, "GET", "/health").status, 200)
        # --set beats the file too.
        r.stop()
        r = self.start_router("--config", path, "--set", "port=0", port_arg=False)
        self.assertNotEqual(r.port, p_file)

    def test_non_loopback_listen_refused(self):
        rc, out, err = run_routerd(["--listen", "0.0.0.0", "-p", "0",
                                    "--upstream", self.fake.url], timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertIn("Refusing to listen on non-loopback address '0.0.0.0'", err)
        self.assertIn("--allow-unauthenticated", err)
        rc, out, err = run_routerd(["--set", "listen=::", "-p", "0"], timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertIn("non-loopback", err)

    def test_non_loopback_listen_allowed(self):
        r = self.start_router("--listen", "0.0.0.0", "--allow-unauthenticated")
        self.assertEqual(r.address, "0.0.0.0")
        self.assertEqual(self.request(r, "GET", "/health").status, 200)

    def test_ipv6_loopback(self):
        try:
            import socket
            socket.socket(socket.AF_INET6).bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        r = self.start_router("--listen", "::1")
        self.assertEqual(r.address, "::1")
        resp = harness.http_request(r.port, "GET", "/health", host="::1")
        self.assertEqual(resp.status, 200)

    def test_bad_upstream_refused(self):
        for url in ("http://example.com", "ftp://127.0.0.1/", "not a url", "http://10.0.0.1:80"):
            with self.subTest(url=url):
                rc, out, err = run_routerd(["--upstream", url, "-p", "0"], timeout=10)
                self.assertNotEqual(rc, 0)
                self.assertTrue(err.strip())

    def test_api_key_file_mode_0644_refused(self):
        path = self.write("key", FILE_KEY + "\n", mode=0o644)
        rc, out, err = run_routerd(["--api-key-file", path, "-p", "0",
                                    "--upstream", self.fake.url], key=None, timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertIn("chmod 600", err)
        self.assertEqual(find_secret_leaks(out + err), [])

    def test_api_key_file(self):
        path = self.write("key", FILE_KEY + "\n")
        r = self.start_router("--api-key-file", path)  # ANTHROPIC_API_KEY is set too: file wins
        r.wait_for_log(r"Using the Anthropic API key from '%s' \(fingerprint [0-9a-f]{8}\)"
                       % re.escape(path))
        resp = self.request(r, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(resp.status, 200)
        self.assertEqual(self.fake.wait_requests(1)[0]["headers"]["x-api-key"], FILE_KEY)

    def test_api_key_file_in_config(self):
        path = self.write("key2", FILE_KEY)
        conf = self.write("k.conf", 'api_key_file = "%s"\n' % path)
        r = self.start_router("--config", conf, key=None)
        self.request(r, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(self.fake.wait_requests(1)[0]["headers"]["x-api-key"], FILE_KEY)

    def test_systemd_credential(self):
        creds = os.path.join(self.workdir, "creds")
        os.makedirs(creds, exist_ok=True)
        with open(os.path.join(creds, "anthropic-api-key"), "w") as f:
            f.write(FILE_KEY + "\n")
        os.chmod(os.path.join(creds, "anthropic-api-key"), 0o400)
        r = self.start_router(env={"CREDENTIALS_DIRECTORY": creds}, key=None)
        r.wait_for_log(r"systemd credential")
        self.request(r, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(self.fake.wait_requests(1)[0]["headers"]["x-api-key"], FILE_KEY)

    def test_env_key(self):
        r = self.start_router()
        r.wait_for_log(r"Using the Anthropic API key from ANTHROPIC_API_KEY")
        self.request(r, "POST", "/v1/messages", messages_body(), ANTHROPIC_HEADERS)
        self.assertEqual(self.fake.wait_requests(1)[0]["headers"]["x-api-key"], ROUTER_KEY)

    def test_help_and_version(self):
        rc, out, err = run_routerd(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("Usage: dualroute-routerd", out)
        rc, out, err = run_routerd(["-v"])
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^dualroute-routerd \d+\.\d+\.\d+")
        rc, out, err = run_routerd(["--no-such-option"])
        self.assertNotEqual(rc, 0)
        rc, out, err = run_routerd(["stray-argument"])
        self.assertNotEqual(rc, 0)


if __name__ == "__main__":
    harness.main()

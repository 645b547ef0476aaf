#!/usr/bin/env python3
"""The systemd units as installed: 'systemd-analyze verify' accepts each of them (with the binaries
installed, so ExecStart= resolves) and rejects a broken copy; 'systemd-analyze security' rates each
service 2.0 or lower; the units carry what the design requires (Type=notify, users, ordering,
socket ownership, hardening); sysusers.d creates the users, groups and membership in a scratch
root; tmpfiles.d names the directories with the right owners."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkgtest  # noqa: E402


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
    return settings


class UnitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = pkgtest.scratch("units")
        prefix = pkgtest.install(cls.root, destdir=False)
        cls.unitdir = os.path.join(prefix, "lib", "systemd", "system")
        cls.sbindir = os.path.join(prefix, "sbin")

    def unit(self, name):
        return os.path.join(self.unitdir, name)

    def verify(self, *paths):
        return subprocess.run(["systemd-analyze", "verify"] + list(paths), capture_output=True,
                              text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))

    def test_every_unit_verifies(self):
        for name in pkgtest.UNITS:
            with self.subTest(unit=name):
                self.assertTrue(os.path.exists(self.unit(name)), name)
                r = self.verify(self.unit(name))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr.strip(), "", "warnings for %s" % name)

    def test_exec_paths_are_the_installed_binaries(self):
        for name, binary in (("dualroute-authd.service", "dualroute-authd"),
                             ("dualroute-routerd.service", "dualroute-routerd")):
            start = unit_settings(self.unit(name))["ExecStart"][0]
            self.assertTrue(start.startswith(os.path.join(self.sbindir, binary) + " "), start)
            self.assertTrue(os.access(start.split()[0], os.X_OK))

    def test_verify_catches_a_broken_unit(self):
        """The verify test above can fail: a unit whose binary is missing is rejected."""
        broken = os.path.join(self.root, "dualroute-broken.service")
        with open(self.unit("dualroute-authd.service")) as f:
            text = f.read()
        with open(broken, "w") as f:
            f.write(text.replace(os.path.join(self.sbindir, "dualroute-authd"),
                                 os.path.join(self.sbindir, "no-such-daemon")))
        r = self.verify(broken)
        self.assertNotEqual(r.returncode, 0, r.stderr)

    def test_security_exposure_at_most_2(self):
        for name in ("dualroute-authd.service", "dualroute-routerd.service"):
            with self.subTest(unit=name):
                r = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                                    "--threshold=20", self.unit(name)],
                                   capture_output=True, text=True)
                m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
                self.assertIsNotNone(m, r.stdout + r.stderr)
                print("%s: exposure %s" % (name, m.group(1)))
                self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_units_carry_the_design(self):
        authd = unit_settings(self.unit("dualroute-authd.service"))
        routerd = unit_settings(self.unit("dualroute-routerd.service"))
        sock = unit_settings(self.unit("dualroute-authd.socket"))
        for s in (authd, routerd):
            self.assertEqual(s["Type"], ["notify"])
            self.assertEqual(s["CapabilityBoundingSet"], [""])
            self.assertEqual(s["ProtectSystem"], ["strict"])
            self.assertIn("@system-service", s["SystemCallFilter"])
            self.assertTrue(s["WatchdogSec"][0])
            self.assertGreaterEqual(int(s["LimitNOFILE"][0]), 4096)
            for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "MemoryDenyWriteExecute"):
                self.assertEqual(s[k], ["yes"], k)
            self.assertIn("RestrictAddressFamilies", s)
            self.assertIn("RuntimeDirectory", authd)
        self.assertEqual(authd["User"], ["dualroute"])
        self.assertEqual(authd["StateDirectory"], ["dualroute"])
        self.assertNotIn("StateDirectory", routerd)
        self.assertEqual(routerd["User"], ["dualroute-router"])
        self.assertIn("--authd-socket /run/dualroute/authd.sock", routerd["ExecStart"][0])
        self.assertIn("dualroute-authd.socket", " ".join(routerd["After"]))
        self.assertIn("dualroute-authd.socket", " ".join(routerd["Wants"]))
        self.assertEqual(sock["ListenStream"], ["/run/dualroute/authd.sock"])
        self.assertEqual((sock["SocketUser"], sock["SocketGroup"], sock["SocketMode"]),
                         (["dualroute"], ["dualroute"], ["0660"]))

    def test_sysusers_creates_users_groups_and_membership(self):
        root = os.path.join(self.root, "sysroot")
        os.makedirs(os.path.join(root, "etc"))
        conf = os.path.join(self.root, "usr", "lib", "sysusers.d", "dualroute.conf")
        r = subprocess.run(["systemd-sysusers", "--root", root, conf], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, "etc", "passwd")) as f:
            users = {l.split(":")[0]: l.split(":") for l in f.read().splitlines()}
        with open(os.path.join(root, "etc", "group")) as f:
            groups = {l.split(":")[0]: l.split(":") for l in f.read().splitlines()}
        self.assertEqual(users["dualroute"][5], "/var/lib/dualroute")
        self.assertIn("dualroute-router", users)
        self.assertIn("dualroute-admin", groups)
        self.assertIn("dualroute-router", groups["dualroute"][3].split(","))
        for u in ("dualroute", "dualroute-router"):
            self.assertLess(int(users[u][2]), 1000, "system user %s" % u)
            self.assertTrue(users[u][6].endswith("nologin"))

    def test_tmpfiles_names_the_directories(self):
        conf = os.path.join(self.root, "usr", "lib", "tmpfiles.d", "dualroute.conf")
        r = subprocess.run(["systemd-tmpfiles", "--cat-config", conf], capture_output=True,
                           text=True)
        with open(conf) as f:
            lines = [l.split() for l in f.read().splitlines() if l and l[0] != "#"]
        self.assertIn(["d", "/var/lib/dualroute", "0700", "dualroute", "dualroute", "-"], lines)
        self.assertIn(["d", "/run/dualroute", "0755", "dualroute", "dualroute", "-"], lines)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)

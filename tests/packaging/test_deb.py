#!/usr/bin/env python3
"""The Debian package: 'cpack -G DEB' builds it from the build directory; its file list holds the
binaries, units, sysusers.d, tmpfiles.d, configs and docs at their Debian paths; its control
fields name the package and its dependencies (from dpkg-shlibdeps: the libraries the binaries link,
plus systemd); the configs are conffiles; the maintainer scripts create the users with
systemd-sysusers, enable nothing, and delete state only on purge."""

import glob
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkgtest  # noqa: E402


class DebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = pkgtest.scratch("deb")
        # gzip instead of the default xz: the same package, built in a third of the time.
        r = subprocess.run(["cpack", "-G", "DEB", "-B", cls.out, "-D",
                            "CPACK_DEBIAN_COMPRESSION_TYPE=gzip", "--config",
                            os.path.join(pkgtest.BUILD_DIR, "CPackConfig.cmake")],
                           capture_output=True, text=True, cwd=pkgtest.BUILD_DIR)
        if r.returncode != 0:
            raise AssertionError("cpack failed:\n%s\n%s" % (r.stdout, r.stderr))
        debs = glob.glob(os.path.join(cls.out, "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.control = os.path.join(cls.out, "control")
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], check=True, capture_output=True,
                              text=True).stdout.strip()

    def test_contents(self):
        listing = subprocess.run(["dpkg-deb", "-c", self.deb], check=True, capture_output=True,
                                 text=True).stdout
        entries = {}
        for line in listing.splitlines():
            parts = line.split()
            entries[parts[5].lstrip(".")] = (parts[0], parts[1])
        for path, mode in (("/usr/sbin/dualroute-authd", "-rwxr-xr-x"),
                           ("/usr/sbin/dualroute-routerd", "-rwxr-xr-x"),
                           ("/usr/bin/dualroutectl", "-rwxr-xr-x"),
                           ("/usr/lib/systemd/system/dualroute-authd.service", "-rw-r--r--"),
                           ("/usr/lib/systemd/system/dualroute-authd.socket", "-rw-r--r--"),
                           ("/usr/lib/systemd/system/dualroute-routerd.service", "-rw-r--r--"),
                           ("/usr/lib/systemd/system/dualroute-routerd.socket", "-rw-r--r--"),
                           ("/usr/lib/sysusers.d/dualroute.conf", "-rw-r--r--"),
                           ("/usr/lib/tmpfiles.d/dualroute.conf", "-rw-r--r--"),
                           ("/etc/dualroute/authd.conf", "-rw-r--r--"),
                           ("/etc/dualroute/routerd.conf", "-rw-r--r--"),
                           ("/usr/share/doc/dualroute/install.md", "-rw-r--r--"),
                           ("/usr/share/doc/dualroute/copyright", "-rw-r--r--")):
            with self.subTest(path=path):
                self.assertIn(path, entries)
                self.assertEqual(entries[path][0], mode)
                self.assertEqual(entries[path][1], "root/root")
        # Nothing from the tests or the build tree.
        self.assertFalse([p for p in entries if "fake" in p or "test" in p], entries.keys())

    def test_control_fields(self):
        self.assertEqual(self.field("Package"), "dualroute")
        self.assertEqual(self.field("Version"), "0.1.0")
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True).stdout.strip()
        self.assertEqual(self.field("Architecture"), arch)
        depends = self.field("Depends")
        for lib in ("libc6", "libcurl4", "libjansson4", "libmicrohttpd12", "libsqlite3-0",
                    "libsystemd0", "systemd (>= 252)"):
            self.assertIn(lib, depends)
        self.assertTrue(self.field("Maintainer"))
        self.assertTrue(self.field("Description"))

    def test_conffiles_and_scripts(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(sorted(f.read().split()),
                             ["/etc/dualroute/authd.conf", "/etc/dualroute/routerd.conf"])
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, name)
            self.assertTrue(os.access(path, os.X_OK), name)
            r = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        self.assertIn("systemd-sysusers /usr/lib/sysusers.d/dualroute.conf", postinst)
        self.assertIn("systemd-tmpfiles --create", postinst)
        self.assertNotIn("systemctl enable", postinst.replace("systemctl enable --now", ""))
        self.assertNotRegex(postinst, r"^\s*systemctl (enable|start)", "enables nothing")
        with open(os.path.join(self.control, "postrm")) as f:
            postrm = f.read()
        purge = postrm.index("purge)")
        self.assertGreater(postrm.index("rm -rf /var/lib/dualroute"), purge)

    def test_postrm_deletes_state_only_on_purge(self):
        """postrm run for real against a fake root: remove keeps the state, purge deletes it."""
        with open(os.path.join(self.control, "postrm")) as f:
            script = f.read()
        root = os.path.join(self.out, "fakeroot")
        state = os.path.join(root, "var/lib/dualroute")
        os.makedirs(state)
        open(os.path.join(state, "authd.db"), "w").close()
        script = script.replace("/var/lib/dualroute", state).replace(
            "/run/", root + "/run/").replace("/etc/dualroute", root + "/etc/dualroute")
        local = os.path.join(self.out, "postrm-local")
        with open(local, "w") as f:
            f.write(script)
        env = dict(os.environ, PATH="/usr/bin:/bin")
        subprocess.run(["sh", local, "remove"], check=True, env=env)
        self.assertTrue(os.path.exists(os.path.join(state, "authd.db")))
        subprocess.run(["sh", local, "purge"], check=True, env=env)
        self.assertFalse(os.path.exists(state))


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The Debian package as an operator meets it: install, run as ``cc``, echo, reload, remove, purge.

Slow, root only, and it changes the machine (installs and purges ``cc``), so it
runs only when ``CC_TEST_DEB`` names the ``.deb`` to test: ``make test-deb``
builds the package and sets it.  Everything runs on Debian's own python3 stack:
``/usr/bin/cc-server`` with a clean environment, no virtualenv, no PYTHONPATH.
"""

import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import wait_for

DEB = os.environ.get("CC_TEST_DEB", "")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
APT_ENV = dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive")
CC_INI = "/etc/cc/cc.ini"
LOGFILE = "/var/log/cc/cc.log"
PIDFILE = "/run/cc/cc.pid"
ECHO_URL = "tcp://127.0.0.1:22632"
#: what the package owns or creates; purge must leave none of it
PACKAGE_PATHS = ("/etc/cc", "/var/log/cc", "/var/lib/cc", "/run/cc", "/usr/bin/cc-server")


def run(*args, check=True, timeout=300, env=CLEAN_ENV):
    # cwd "/": a source tree in the working directory must not shadow the installed package
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            "%s: exit %d\n%s\n%s" % (args, proc.returncode, proc.stdout, proc.stderr)
        )
    return proc


def installed(package="cc"):
    proc = run("dpkg-query", "-W", "-f=${Status}", package, check=False)
    return proc.returncode == 0 and proc.stdout.endswith(" installed")


ORIGINAL_CC_INI = """; the original's local cc
[ccserver]
logfile = /var/log/cc/%(job_name)s.log
pidfile = /var/run/cc/%(job_name)s.pid
cc-socket = tcp://127.0.0.1:22632
cc-role = local

[routes]
echo = h:echo
log = h:locallog

[h:echo]
plugin = echo

[h:locallog]
plugin = locallogger
"""


def build_original_standin(tmp):
    """A package ``cc`` 0.8.7 laid out like the original's: init script, defaults, cc.ini."""
    root = os.path.join(tmp, "cc-0.8.7")
    files = {
        "DEBIAN/control": "Package: cc\nVersion: 0.8.7\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: stand-in for the original cc\n",
        "DEBIAN/conffiles": "/etc/cc/cc.ini\n/etc/default/cc\n/etc/init.d/cc\n",
        "DEBIAN/postinst": "#!/bin/sh\nset -e\nupdate-rc.d cc defaults >/dev/null\n",
        "etc/cc/cc.ini": ORIGINAL_CC_INI,
        "etc/default/cc": 'RUN="no"\nDAEMON_OPTS="-d /etc/cc/cc.ini"\n',
        "etc/init.d/cc": "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: cc\n"
        "# Required-Start: $remote_fs\n# Required-Stop: $remote_fs\n"
        "# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n### END INIT INFO\nexit 0\n",
    }
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf8") as f:
            f.write(text)
        os.chmod(path, 0o755 if name in ("DEBIAN/postinst", "etc/init.d/cc") else 0o644)
    run("dpkg-deb", "--root-owner-group", "--build", root, root + ".deb")
    return root + ".deb"


def pidfile_pid(path):
    with open(path, encoding="ascii") as f:
        return int(f.read())


def unit_setting(unit, key):
    with open("/lib/systemd/system/" + unit, encoding="utf8") as f:
        return re.search(r"^%s=(.*)$" % key, f.read(), re.M).group(1)


@unittest.skipUnless(DEB, "set CC_TEST_DEB to a .deb (make test-deb): installs and purges cc")
class TestDebianPackage(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("installing a package needs root")
        if installed():
            run("apt-get", "purge", "-y", "-q", "cc", env=APT_ENV)
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if installed():
            run("apt-get", "purge", "-y", "-q", "cc", env=APT_ENV)

    def test_install_run_remove_purge(self):
        run("apt-get", "install", "-y", "-q", os.path.abspath(DEB), env=APT_ENV)
        self.assertTrue(installed())
        self.check_layout()
        self.check_units()
        self.check_logrotate()
        self.run_as_cc()
        self.run_second_instance()
        self.check_remove_keeps_config()
        run("apt-get", "purge", "-y", "-q", "cc", env=APT_ENV)
        self.assertFalse(installed())
        left = [p for p in PACKAGE_PATHS if os.path.lexists(p)]
        self.assertEqual(left, [], "purge left these behind")

    def test_upgrade_from_the_original_package(self):
        """Over a stand-in for the original's cc 0.8.7 (SysV init script, /etc/default/cc)."""
        old = build_original_standin(self.tmp())
        run("dpkg", "-i", old, env=APT_ENV)
        self.assertTrue(os.path.exists("/etc/init.d/cc"))
        self.assertTrue(glob.glob("/etc/rc2.d/S??cc"))
        with open(CC_INI, "a", encoding="utf8") as f:
            f.write("; edited by the operator\n")
        keep = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        run("apt-get", "install", "-y", "-q", *keep, os.path.abspath(DEB), env=APT_ENV)
        version = run("dpkg-query", "-W", "-f=${Version}", "cc").stdout
        self.assertNotEqual(version, "0.8.7")
        for gone in ["/etc/init.d/cc", "/etc/default/cc"] + glob.glob("/etc/rc?.d/[SK]??cc"):
            self.assertFalse(os.path.lexists(gone), gone)
        with open(CC_INI, encoding="utf8") as f:
            self.assertIn("the original's local cc", f.read())  # the operator's file is kept
        self.run_as_cc()

    def tmp(self):
        path = tempfile.mkdtemp(prefix="cctest-deb-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def check_layout(self):
        user = pwd.getpwnam("cc")
        self.assertLess(user.pw_uid, 1000, "cc must be a system user")
        for path in ("/var/log/cc", "/var/lib/cc", "/run/cc"):
            self.assertEqual(os.stat(path).st_uid, user.pw_uid, path)
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "cc").stdout
        self.assertIn(CC_INI, conffiles)
        self.assertIn("/etc/logrotate.d/cc", conffiles)
        self.assertEqual(os.path.realpath("/usr/bin/ccserver"), "/usr/bin/cc-server")
        for name in ("cc-alerts.yml", "prometheus.yml"):
            self.assertTrue(os.path.exists("/usr/share/cc/prometheus/" + name), name)
        for page in ("man1/cc-server.1.gz", "man1/cc-send.1.gz", "man5/cc.ini.5.gz"):
            self.assertTrue(os.path.exists("/usr/share/man/" + page), page)
        # the runtime dependencies are Debian's packages, not something pip put there
        where = run(
            "/usr/bin/python3",
            "-c",
            "import zmq, tornado, skytools, cc; "
            "print(zmq.__file__, tornado.__file__, skytools.__file__, cc.__file__)",
            env=dict(CLEAN_ENV, PYTHONNOUSERSITE="1"),
        ).stdout.split()
        for path in where:
            self.assertTrue(path.startswith("/usr/lib/python3/dist-packages/"), path)

    def check_units(self):
        self.assertEqual(unit_setting("cc.service", "User"), "cc")
        self.assertEqual(unit_setting("cc.service", "ExecStart"), "/usr/bin/cc-server " + CC_INI)
        self.assertEqual(
            unit_setting("cc@.service", "ExecStart"), "/usr/bin/cc-server /etc/cc/%i.ini"
        )
        self.assertIn("-HUP", unit_setting("cc.service", "ExecReload"))
        self.assertEqual(unit_setting("cc.service", "Restart"), "on-failure")
        if shutil.which("systemd-analyze"):
            run("systemd-analyze", "verify", "cc.service", "cc@test.service")

    def check_logrotate(self):
        if not shutil.which("logrotate"):
            return
        proc = run("logrotate", "--debug", "/etc/logrotate.d/cc", check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("error", proc.stderr.lower())

    def run_as_cc(self):
        """Run the unit's own command line as the unit's user, the way systemd would."""
        command = shlex.split(unit_setting("cc.service", "ExecStart"))
        user = unit_setting("cc.service", "User")
        self.proc = subprocess.Popen(
            ["runuser", "-u", user, "--", *command],
            env=CLEAN_ENV,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: self.log_has("listening on"), 20, "cc-server to listen")
        pid = pidfile_pid(PIDFILE)
        with open("/proc/%d/status" % pid, encoding="ascii") as f:
            uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
        self.assertEqual(uid, pwd.getpwnam("cc").pw_uid)

        echo = run("/usr/bin/cc-send", ECHO_URL, "echo.request", "target=deb", timeout=30)
        self.assertRegex(echo.stdout, r'^echo.response .*"orig_target": "deb"')
        run("/usr/bin/cc-send", ECHO_URL, "log.info", "log_level=INFO", "log_msg=from-the-test")
        wait_for(lambda: self.log_has("from-the-test"), 10, "the log record in " + LOGFILE)

        if shutil.which("logrotate"):  # copytruncate: the server keeps writing the same file
            run("logrotate", "--force", "/etc/logrotate.d/cc")
            self.assertTrue(os.path.exists(LOGFILE + ".1"))
            run("/usr/bin/cc-send", ECHO_URL, "log.info", "log_level=INFO", "log_msg=after-rotate")
            wait_for(lambda: self.log_has("after-rotate"), 10, "a record in the rotated log")
            with open(LOGFILE, "rb") as f:
                self.assertNotIn(b"\0", f.read(), "the truncated log must not start with holes")

        os.kill(pid, signal.SIGHUP)  # what ExecReload does
        wait_for(lambda: self.log_has("reloaded:"), 10, "the reload")
        os.kill(pid, signal.SIGTERM)  # what systemctl stop does
        self.assertEqual(self.proc.wait(30), 0, self.proc.stderr.read())
        self.assertFalse(os.path.exists(PIDFILE), "pidfile left behind")
        self.assertNotIn("Traceback", self.log_text())

    def run_second_instance(self):
        """cc@proxy.service next to cc.service: the hub example as /etc/cc/proxy.ini."""
        with open("/usr/share/doc/cc/examples/ccproxy.ini", encoding="utf8") as f:
            text = f.read().replace("tcp://0.0.0.0:10001", "tcp://127.0.0.1:10001")
        with open("/etc/cc/proxy.ini", "w", encoding="utf8") as f:
            f.write(text)
        try:
            command = unit_setting("cc@.service", "ExecStart").replace("%i", "proxy")
            user = unit_setting("cc@.service", "User")
            procs = [
                subprocess.Popen(
                    ["runuser", "-u", user, "--", *shlex.split(cmd)],
                    env=CLEAN_ENV,
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for cmd in (unit_setting("cc.service", "ExecStart"), command)
            ]
            try:
                for url in (ECHO_URL, "tcp://127.0.0.1:10001"):
                    echo = run("/usr/bin/cc-send", url, "echo.request", "target=x", timeout=30)
                    self.assertTrue(echo.stdout.startswith("echo.response"), echo.stdout)
                self.assertTrue(os.path.exists("/run/cc/proxy.pid"))
                self.assertTrue(os.path.exists("/var/log/cc/proxy.log"))
            finally:
                for name in ("cc", "proxy"):  # the servers, not runuser (that would re-raise it)
                    wait_for(lambda: os.path.exists("/run/cc/%s.pid" % name), 10, name + ".pid")
                    os.kill(pidfile_pid("/run/cc/%s.pid" % name), signal.SIGTERM)
                self.assertEqual([proc.wait(30) for proc in procs], [0, 0])
        finally:
            os.unlink("/etc/cc/proxy.ini")

    def check_remove_keeps_config(self):
        """remove keeps the (edited) conffile and logs; reinstalling keeps the edit."""
        with open(CC_INI, "a", encoding="utf8") as f:
            f.write("; edited by the operator\n")
        run("apt-get", "remove", "-y", "-q", "cc", env=APT_ENV)
        self.assertTrue(os.path.exists(CC_INI))
        self.assertTrue(os.path.exists(LOGFILE))
        self.assertFalse(os.path.exists("/usr/bin/cc-server"))
        run("apt-get", "install", "-y", "-q", os.path.abspath(DEB), env=APT_ENV)
        with open(CC_INI, encoding="utf8") as f:
            self.assertIn("edited by the operator", f.read())

    def log_text(self):
        try:
            with open(LOGFILE, encoding="utf8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_has(self, text):
        if self.proc.poll() is not None:
            raise AssertionError(
                "cc-server exited %s: %s" % (self.proc.returncode, self.proc.stderr.read())
            )
        return text in self.log_text()


if __name__ == "__main__":
    unittest.main()

"""The package's documents agree with the code: versions, man pages, debian/ file lists.

The man page cc.ini(5) must name every option the code reads and every
handler in the registry, so a new option or handler cannot ship undocumented:
this test fails until the man page has it.
"""

import ast
import configparser
import glob
import os
import re
import shutil
import subprocess
import sys
import unittest

from harness import REPO_DIR, child_env

import cc
from cc.handler import HANDLERS
from cc.sockopts import TEMPLATE as SOCKOPTS_TEMPLATE

MAN_DIR = os.path.join(REPO_DIR, "doc", "man")

#: a config read: cf.get("x"), hcf.getint("x", 1), self.cf.has_option("x"), ...
CONFIG_READ_RE = re.compile(r"\b\w*cf\.(?:get\w*|has_option)\(\s*\"([^\"]+)\"")
#: an option in a docstring or INI template: "name = value" or "#name = value"
TEMPLATE_RE = re.compile(r"^\s*#?([a-z][a-z0-9_-]*) = ", re.M)


def read(*path):
    with open(os.path.join(REPO_DIR, *path), encoding="utf8") as f:
        return f.read()


def man_text(page):
    """The roff source with escaped hyphens made plain."""
    return read("doc", "man", page).replace("\\-", "-")


def mentions(text, word):
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


def documented_terms(text):
    """The words a ``.TP`` item of a man page puts in bold: ``.BR name " (default)"``."""
    terms = set()
    for line in re.findall(r"^\.TP\n\.B[RI]? (.*)$", text, re.M):
        terms.update(re.findall(r"[\w.-]+", re.sub(r'"[^"]*"', " ", line)))
    return terms


def options_in_code():
    """Every INI option name the package reads, with the file that reads it."""
    found = {}
    for path in glob.glob(os.path.join(REPO_DIR, "cc", "**", "*.py"), recursive=True):
        with open(path, encoding="utf8") as f:
            source = f.read()
        names = set(CONFIG_READ_RE.findall(source))
        names.update(re.findall(r"(?<!startswith\()\"(zmq_[a-z_]+)\"", source))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                doc = ast.get_docstring(node) or ""
                for block in doc.split("::")[1:]:  # the INI templates
                    names.update(TEMPLATE_RE.findall(block))
        for name in names:
            found.setdefault(name, os.path.relpath(path, REPO_DIR))
    return found


class TestVersions(unittest.TestCase):
    def test_debian_changelog_matches_package_version(self):
        first = read("debian", "changelog").splitlines()[0]
        version = re.match(r"cc \(([^)]+)\)", first).group(1)
        self.assertEqual(version, cc.__version__, "debian/changelog and cc/__init__.py disagree")

    def test_man_pages_carry_the_version(self):
        for page in os.listdir(MAN_DIR):
            th = re.search(r'^\.TH .*?"cc ([^"]+)"', man_text(page), re.M)
            self.assertIsNotNone(th, page)
            self.assertEqual(th.group(1), cc.__version__, page)


class TestManPages(unittest.TestCase):
    def test_every_option_read_is_documented(self):
        terms = documented_terms(man_text("cc.ini.5"))
        missing = sorted(
            "%s (%s)" % (name, where)
            for name, where in options_in_code().items()
            if name not in terms
        )
        self.assertEqual(missing, [], "options missing from doc/man/cc.ini.5")

    def test_the_option_scan_finds_options(self):
        """Guard against the scan silently finding nothing."""
        found = options_in_code()
        for name in ("cc-socket", "remote-cc", "zmq_hwm", "ping-remotes", "queue-size"):
            self.assertIn(name, found)
        for name in TEMPLATE_RE.findall(SOCKOPTS_TEMPLATE):
            self.assertIn(name, found)

    def test_every_handler_has_a_section(self):
        text = man_text("cc.ini.5")
        missing = [n for n in HANDLERS if not re.search(r"^\.SS %s " % re.escape(n), text, re.M)]
        self.assertEqual(missing, [], "handlers without a .SS section in doc/man/cc.ini.5")

    def test_command_options_are_documented(self):
        for command, module, page in (
            ("cc-server", "cc.server", "cc-server.1"),
            ("cc-send", "cc.client", "cc-send.1"),
        ):
            out = subprocess.run(
                [sys.executable, "-m", module, "--help"],
                capture_output=True,
                text=True,
                env=child_env(),
                check=True,
            ).stdout
            text = man_text(page)
            for opt in set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", out)):
                self.assertTrue(mentions(text, opt), "%s %s not in %s" % (command, opt, page))

    def test_debian_installs_every_page(self):
        listed = read("debian", "cc.manpages").split()
        self.assertEqual(sorted(listed), sorted("doc/man/" + p for p in os.listdir(MAN_DIR)))

    @unittest.skipUnless(shutil.which("groff"), "groff not installed")
    def test_pages_render_without_warnings(self):
        for page in sorted(os.listdir(MAN_DIR)):
            proc = subprocess.run(
                ["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(MAN_DIR, page)],
                capture_output=True,
                text=True,
            )
            self.assertEqual((proc.returncode, proc.stderr), (0, ""), page)


class TestDebianFiles(unittest.TestCase):
    """debian/ agrees with setup.py and with itself; the slow end-to-end check is test_deb."""

    def commands(self):
        """The console scripts the package ships (debian/rules removes cc-demo)."""
        found = re.findall(r'"([\w-]+) = [\w.]+:\w+"', read("setup.py"))
        self.assertIn("cc-server", found)
        return [c for c in found if c != "cc-demo"]

    def test_every_shipped_command_has_a_man_page(self):
        pages = os.listdir(MAN_DIR)
        missing = [c for c in self.commands() if c + ".1" not in pages]
        self.assertEqual(missing, [], "commands without doc/man/<command>.1")

    def test_units_run_the_installed_config_as_cc(self):
        self.assertIn("debian/cc.ini etc/cc/", read("debian", "cc.install"))
        self.assertIn(
            "conf/prometheus/cc-alerts.yml usr/share/cc/prometheus/", read("debian", "cc.install")
        )
        for unit, ini in (("cc.service", "/etc/cc/cc.ini"), ("cc@.service", "/etc/cc/%i.ini")):
            text = read("debian", unit)
            self.assertIn("\nExecStart=/usr/bin/cc-server %s\n" % ini, text)
            self.assertIn("\nUser=cc\n", text)
            self.assertIn("\nExecReload=/bin/kill -HUP $MAINPID\n", text)
            self.assertIn("\nKillMode=mixed\n", text)

    def test_logrotate_covers_the_configured_log(self):
        cf = configparser.ConfigParser(interpolation=None)
        cf.read_string(read("debian", "cc.ini"))
        logdir = os.path.dirname(cf.get("ccserver", "logfile"))
        self.assertIn("%s/*.log {" % logdir, read("debian", "cc.logrotate"))
        self.assertEqual(cf.get("ccserver", "log_size"), "0", "logrotate rotates, not the server")

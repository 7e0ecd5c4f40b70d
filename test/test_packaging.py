"""The package's files agree with each other: versions, man pages, debian/ file lists, and
cc/ stays apart from the tools in cctools/.

Whether the documents agree with the code (options, synopses) is test_docs.
"""

import ast
import configparser
import glob
import os
import re
import shutil
import subprocess
import unittest

from harness import REPO_DIR

import cc

MAN_DIR = os.path.join(REPO_DIR, "doc", "man")


def read(*path):
    with open(os.path.join(REPO_DIR, *path), encoding="utf8") as f:
        return f.read()


def man_text(page):
    """The roff source with escaped hyphens made plain."""
    return read("doc", "man", page).replace("\\-", "-")


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
    """What the pages say against the code is test_docs; here: the pages as files."""

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

    def test_units_run_the_installed_config_as_cc(self):
        self.assertIn("debian/cc.ini etc/cc/", read("debian", "cc.install"))
        for name in ("cc-alerts.yml", "prometheus.yml"):
            self.assertIn(
                "conf/prometheus/%s usr/share/cc/prometheus/" % name, read("debian", "cc.install")
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


class TestToolsApart(unittest.TestCase):
    """cc/ holds what the product runs; the tools in cctools/ use it, never the other way."""

    def tools_named_in(self, path):
        """Where ``path`` imports cctools, or names one of its modules (import_module, -m)."""
        with open(path, encoding="utf8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            else:
                continue
            for name in names:
                if name == "cctools" or name.startswith("cctools."):
                    yield "%s:%d %s" % (os.path.relpath(path, REPO_DIR), node.lineno, name)

    def test_nothing_in_cc_uses_the_tools(self):
        paths = glob.glob(os.path.join(REPO_DIR, "cc", "**", "*.py"), recursive=True)
        self.assertGreater(len(paths), 50)
        found = [where for path in sorted(paths) for where in self.tools_named_in(path)]
        self.assertEqual(found, [], "cc/ uses the tools")

    def test_the_check_sees_each_kind_of_use(self):
        found = list(self.tools_named_in(os.path.join(REPO_DIR, "cctools", "bench", "cli.py")))
        self.assertTrue(any(w.endswith(" cctools.bench.scenarios") for w in found), found)
        found = list(self.tools_named_in(os.path.join(REPO_DIR, "test", "test_bench.py")))
        self.assertTrue(any(w.endswith(" cctools.bench") for w in found), found)

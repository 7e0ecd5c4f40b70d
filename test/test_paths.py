"""safe_join: nothing a message says can put a file outside dstdir."""

import os
import shutil
import tempfile
import unittest

from cc.files.compression import compress, decompress, extension, normalize
from cc.files.paths import UnsafePath, clean_name, safe_join


class TestSafeJoin(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="ccpaths-")
        self.dst = os.path.join(self.base, "info")
        os.mkdir(self.dst)
        os.mkdir(self.dst + "X")
        self.addCleanup(shutil.rmtree, self.base)

    def test_inside(self):
        self.assertEqual(safe_join(self.dst, "host/info.1"), os.path.join(self.dst, "host/info.1"))

    def test_relative_dstdir(self):
        cwd = os.getcwd()
        os.chdir(self.base)
        self.addCleanup(os.chdir, cwd)
        self.assertEqual(safe_join("./info", "me/info.1"), os.path.join(self.dst, "me/info.1"))

    def test_hostile(self):
        for bad in (
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "./x",
            "a/.",
            "..",
            "../infoX/y",
        ):
            with self.assertRaises(UnsafePath, msg=bad):
                safe_join(self.dst, bad)

    def test_symlink_out(self):
        os.symlink(self.base, os.path.join(self.dst, "link"))
        with self.assertRaises(UnsafePath):
            safe_join(self.dst, "link/x")
        os.symlink(os.path.join(self.dst, "sub"), os.path.join(self.dst, "inner"))
        safe_join(self.dst, "inner/x")

    def test_clean_name(self):
        self.assertEqual(clean_name("a\\b"), "a/b")
        for bad in (None, "", "  ", 5, "a\0b"):
            with self.assertRaises(UnsafePath):
                clean_name(bad)


class TestCompression(unittest.TestCase):
    def test_round_trips(self):
        data = b"hello " * 1000
        for method in ("gzip", "bzip2", "none", "", None):
            self.assertEqual(decompress(compress(data, method, 1), method), data)
        self.assertEqual(extension("gzip"), ".gz")
        self.assertEqual(extension("none"), "")
        with self.assertRaises(ValueError):
            normalize("lzma")

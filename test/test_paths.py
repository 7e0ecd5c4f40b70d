"""safe_join: nothing a message says can put a file outside dstdir."""

import bz2
import gzip
import os
import shutil
import tempfile
import unittest
import zlib

from cc.files.compression import PIECE, TooLarge, compress, decompress, extension, normalize
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
            self.assertEqual(decompress(compress(data, method, 1), method, len(data)), data)
        self.assertEqual(extension("gzip"), ".gz")
        self.assertEqual(extension("none"), "")
        with self.assertRaises(ValueError):
            normalize("lzma")

    def test_limit_is_exact_and_covers_every_member(self):
        data = os.urandom(PIECE) + bytes(2 * PIECE)  # more than one piece of output
        for method, pack in (("gzip", gzip.compress), ("bzip2", bz2.compress)):
            packed = pack(data) + pack(b"tail")  # two members / streams
            self.assertEqual(decompress(packed, method, len(data) + 4), data + b"tail")
            with self.assertRaises(TooLarge):
                decompress(packed, method, len(data) + 3)
        with self.assertRaises(TooLarge):
            decompress(b"plain", "", 4)

    def test_truncated_or_corrupt_data_is_an_error(self):
        for method, pack in (("gzip", gzip.compress), ("bzip2", bz2.compress)):
            packed = pack(b"x" * 1000)
            for broken in (packed[:-6], b"not " + packed):
                with self.assertRaises((EOFError, OSError, zlib.error)):
                    decompress(broken, method, 10000)

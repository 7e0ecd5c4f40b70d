"""write_atomic: the one way cc replaces a file."""

import os
import shutil
import stat
import tempfile
import unittest

from cc.files.atomic import write_atomic


class TestWriteAtomic(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ccatomic-")
        self.path = os.path.join(self.dir, "f.info")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def test_replaces_whole_and_leaves_nothing_else(self):
        for durable in (False, True):
            write_atomic(self.path, "old\n", durable=durable)
            write_atomic(self.path, b"new\n", durable=durable)
            self.assertEqual(self.read(), b"new\n")
            self.assertEqual(os.listdir(self.dir), ["f.info"])

    def test_a_failure_before_the_rename_keeps_the_old_version(self):
        write_atomic(self.path, "old\n")

        def refuse():
            raise OSError("disk says no")

        with self.assertRaises(OSError):
            write_atomic(self.path, "new\n", before_replace=refuse)
        self.assertEqual(self.read(), b"old\n")
        self.assertEqual(os.listdir(self.dir), ["f.info"])

    def test_mode_and_mtime(self):
        write_atomic(self.path, "x", mode=0o640, mtime_ns=1_500_000_000_123_456_789)
        st = os.stat(self.path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_mtime_ns, 1_500_000_000_123_456_789)

    def test_default_mode_follows_the_umask(self):
        old = os.umask(0o027)
        try:
            write_atomic(self.path, "x")
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)


if __name__ == "__main__":
    unittest.main()

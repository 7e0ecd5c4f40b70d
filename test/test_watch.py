"""cc.files.watch: a wait for a directory ends when a file in it changes, and only then."""

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
import unittest

from cc.files.watch import LOCAL_FILE_SYSTEMS, RECHECK, RECHECK_LOCAL, DirWatch

log = logging.getLogger("test_watch")


class TestDirWatch(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cctest-watch-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_loop(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 60))

    def test_changes_end_the_wait(self):
        path = os.path.join(self.dir, "postgresql.log")

        def write(mode):
            with open(path, mode) as f:
                f.write("line\n")

        async def scenario():
            watch = DirWatch(self.dir, log)
            self.assertTrue(watch.watching)  # Linux: the suite runs there
            self.assertFalse(await watch.wait(0.05))  # nothing happened
            results = []
            for change in (
                lambda: write("w"),  # created
                lambda: write("a"),  # appended
                lambda: os.rename(path, path + ".1"),  # rotated away
                lambda: os.unlink(path + ".1"),  # removed
            ):
                asyncio.get_running_loop().call_soon(change)
                results.append(await watch.wait(30))
            watch.close()
            return results

        self.assertEqual(self.run_loop(scenario()), [True] * 4)

    def test_a_change_while_not_waiting_is_kept(self):
        """A change made between two waits (while the caller looks at files) is not lost."""

        async def scenario():
            watch = DirWatch(self.dir, log)
            with open(os.path.join(self.dir, "info.disk"), "w") as f:
                f.write("x")
            await asyncio.sleep(0)  # the loop reads the event; nobody waits yet
            changed = await watch.wait(30)
            unchanged = await watch.wait(0.05)
            watch.close()
            return changed, unchanged

        self.assertEqual(self.run_loop(scenario()), (True, False))

    def test_directory_that_cannot_be_watched_sleeps(self):
        async def scenario():
            watch = DirWatch(os.path.join(self.dir, "missing"), log)
            return watch.watching, await watch.wait(0.01)

        with self.assertLogs("test_watch", "INFO") as logs:
            self.assertEqual(self.run_loop(scenario()), (False, False))
        self.assertIn("looked at on a timer", logs.output[0])

    def test_recheck_rarely_only_where_inotify_sees_every_change(self):
        """Local file systems: every 60 s; any other type (network, or unknown): every 10 s."""

        def fs_type(path):
            return int(subprocess.check_output(["stat", "-f", "-c", "%t", path]), 16)

        async def scenario(path):
            watch = DirWatch(path, log)
            recheck = watch.recheck
            watch.close()
            return recheck

        local = fs_type(self.dir) in LOCAL_FILE_SYSTEMS
        self.assertEqual(self.run_loop(scenario(self.dir)), RECHECK_LOCAL if local else RECHECK)
        self.assertNotIn(fs_type("/proc"), LOCAL_FILE_SYSTEMS)
        self.assertEqual(self.run_loop(scenario("/proc")), RECHECK)

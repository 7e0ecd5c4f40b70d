"""cc.files.tailfiles.DestinationMap: new copies found at once by many threads."""

import json
import os
import shutil
import tempfile
import threading
import unittest

from cc.files.tailfiles import STATE_NAME, DestinationMap, TailIdentity, default_mask


class TestDestinationMap(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cctest-")
        self.addCleanup(shutil.rmtree, self.tmp)

    def saved(self):
        with open(os.path.join(self.tmp, STATE_NAME), encoding="utf8") as f:
            return json.load(f)["files"]

    def test_each_new_copy_is_on_disk_when_its_lookup_returns(self):
        """Ten threads each find 40 new copies at once (the writes of the map are shared):
        every entry is in the state file by the time its lookup returns, and a writer
        started again finds every copy where it was."""
        dests = DestinationMap(self.tmp, default_mask(False))
        found, missing = {}, []

        def worker(t):
            for i in range(40):
                ident = TailIdentity("host%d" % t, 1, i, "/var/log/f%d.log" % i, 0)
                found[ident] = dests.lookup(ident, False, "", 1000 * i)
                if ident.key() not in self.saved():
                    missing.append(ident)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(missing, [])
        self.assertEqual(len(self.saved()), 400)
        self.assertLessEqual(dests.saves, 400)
        self.assertEqual(len({dest.path for dest in found.values()}), 400, "a file each")
        again = DestinationMap(self.tmp, default_mask(False))
        for ident, dest in found.items():
            self.assertEqual(again.lookup(ident, False, "", 0), dest)

    def test_copies_entered_together_are_saved_in_one_write(self):
        """A worker's batch of new copies (every host's log rotating at once): entered
        without waiting, saved once, each on disk before it is looked up to be written."""
        dests = DestinationMap(self.tmp, default_mask(False))
        idents = [TailIdentity("host%d" % n, 1, n, "/var/log/x.log", 0) for n in range(50)]
        entered = [dests.lookup(ident, False, "", 0, wait=False) for ident in idents]
        self.assertEqual(dests.saves, 0)
        dests.save_added()
        self.assertEqual(dests.saves, 1)
        self.assertEqual(set(self.saved()), {ident.key() for ident in idents})
        self.assertEqual([dests.lookup(ident, False, "", 0) for ident in idents], entered)
        self.assertEqual(dests.saves, 1, "nothing left to save")


if __name__ == "__main__":
    unittest.main()

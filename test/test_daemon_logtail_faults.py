"""logtail as an operator meets it: a first deployment, a full disk, copytruncate.

Each copy is compared byte for byte with what the test wrote, and searched for NUL bytes
(the test writes text lines only, so a NUL can only be padding).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import threading

from harness import LOCAL_HTTP, wait_for
from test_daemon_logtail import ROTATED, LogtailCase

CLASSIC_TEXT = "logmask = app-*.log"


class TextLog:
    """Lines the test appends to a log, and every generation of it (truncation starts one)."""

    def __init__(self, srcdir, name):
        self.path = os.path.join(srcdir, name)
        self.generations = [bytearray()]
        self.lines = 0
        self.lock = threading.Lock()

    def text(self, nbytes):
        """Unique lines of about ``nbytes`` in all: no two generations begin alike."""
        out = bytearray()
        while len(out) < nbytes:
            self.lines += 1
            out += b"gen %d line %07d %s\n" % (len(self.generations), self.lines, b"x" * 60)
        return bytes(out)

    def append(self, nbytes, one_write=False):
        data = self.text(nbytes)
        with self.lock, open(self.path, "ab") as f:
            pieces = [data] if one_write else [data[i : i + 700] for i in range(0, len(data), 700)]
            for piece in pieces:
                f.write(piece)
                f.flush()
            self.generations[-1] += data
        return data

    def copytruncate(self):
        """What logrotate's copytruncate does: copy the log away, then truncate it."""
        with self.lock:
            n = len(self.generations)
            shutil.copyfile(self.path, "%s.%d" % (self.path, n))
            os.truncate(self.path, 0)
            self.generations.append(bytearray())


class TestFirstDeployment(LogtailCase):
    def test_a_log_created_after_logtail_started_arrives_whole(self):
        """logtail deployed before its log exists: the log's first write (40 kB at once)
        arrives from byte 0, whenever logtail first looks."""
        self.start_pair(CLASSIC_TEXT)
        self.start_logtail(wait=False)
        log = TextLog(self.src.srcdir, "app-0001.log")
        first = log.append(40000, one_write=True)
        self.local.wait_log(r"started \S+app-0001.log at file position 0 \(its copy begins at 0\)")
        log.append(5000)
        self.wait_exact([log])
        self.assertTrue(bytes(log.generations[0]).startswith(first))

    def test_next_to_an_existing_log_the_copy_begins_at_its_origin(self):
        """A 1 MB log already there: by default (start-at = end) the copy holds what comes
        after logtail started, and begins there: no megabyte of NUL bytes in front."""
        old = TextLog(self.src.srcdir, "app-0001.log")
        old.append(1024 * 1024, one_write=True)
        size = os.path.getsize(old.path)
        self.start_pair(CLASSIC_TEXT)
        self.start_logtail()
        self.local.wait_log(r"at file position %d \(its copy begins at %d\)" % (size, size))
        new = old.append(30000)
        copy = wait_for(lambda: self.single_copy(len(new)), what="the copy of the new part")
        self.assertEqual(copy, new)
        self.assertNotIn(b"\0", copy)
        self.remote.wait_log(r"new copy \S+ of '\S+app-0001.log' on '\S+', beginning at source "
                             r"offset %d" % size)  # fmt: skip
        with open(os.path.join(self.dst, ".cc-tail-state"), encoding="utf8") as f:
            (entry,) = json.load(f)["files"].values()
        self.assertEqual(entry["origin"], size)

    def test_start_at_beginning_copies_an_existing_log_whole(self):
        log = TextLog(self.src.srcdir, "app-0001.log")
        log.append(200000, one_write=True)
        self.start_pair(CLASSIC_TEXT + "\nstart-at = beginning")
        self.start_logtail()
        log.append(3000)
        self.wait_exact([log])

    def single_copy(self, size):
        copies = self.copies()
        if len(copies) == 1:
            (data,) = copies.values()
            return data if len(data) >= size else None
        self.assertLessEqual(len(copies), 1)
        return None

    def wait_exact(self, logs):
        """Every generation of ``logs`` arrived whole, each in one copy, without NUL bytes."""
        want = sorted(bytes(g) for log in logs for g in log.generations if g)
        wait_for(lambda: sorted(self.copies().values()) == want, what="copies equal to source")
        for data in self.copies().values():
            self.assertNotIn(b"\0", data)


class TestBusyWriter(LogtailCase):
    def test_fragments_refused_busy_or_out_of_turn_still_make_a_whole_copy(self):
        """queue-bytes = 1: the writer takes one fragment at a time; of a window of four
        the rest are refused busy, and those behind a refused one as gaps."""
        self.start_pair(ROTATED, writer="queue-bytes = 1")
        log = TextLog(self.src.srcdir, "app.log")
        open(log.path, "wb").close()
        self.start_logtail()
        log.append(40000)
        want = [bytes(log.generations[0])]
        wait_for(lambda: list(self.copies().values()) == want, 30, "the copy whole")
        self.remote.wait_stat("tailwriter.failed.gap")
        self.remote.wait_stat("tailwriter.failed.busy")


class TestFullDisk(LogtailCase):
    """The end-service's dstdir on a small tmpfs of its own, filled to ENOSPC."""

    def setUp(self):
        super().setUp()
        os.mkdir(self.dst)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "cc-test-full", self.dst],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            self.skipTest("cannot mount a tmpfs (needs root): %s" % result.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.dst], check=False)

    def fill(self):
        """Fill the file system: the next write of anything fails with ENOSPC."""
        filler = os.path.join(self.dst, ".filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"F" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def status(self, server):
        port = server.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1)
        with LOCAL_HTTP.open("http://127.0.0.1:%s/status" % port, timeout=10) as r:
            return json.load(r)

    def test_a_new_file_on_a_full_disk_then_a_restart_keeps_one_copy(self):
        self.start_pair(CLASSIC_TEXT, metrics_http="127.0.0.1:0")
        first = TextLog(self.src.srcdir, "app-0001.log")
        open(first.path, "wb").close()
        self.start_logtail()
        first.append(20000)
        wait_for(lambda: len(self.copies()) == 1, what="the first copy")
        filler = self.fill()
        # a new file starts while the disk is full: its map entry cannot be saved
        second = TextLog(self.src.srcdir, "app-0002.log")
        second.append(300000)
        self.remote.wait_stat("tailwriter.failed.write_failed")

        def failing():
            state = self.status(self.remote)["state"]["h:tail"]
            return state["write_error"]

        error = wait_for(failing, what="write_error in the writer's state")
        self.assertIn("No space left on device", error["msg"])
        self.local.wait_log(r"writer refused a fragment \(write-failed\)")
        os.unlink(filler)
        second.append(10000)
        wait_for(lambda: len(self.copies()) == 2, what="the second copy")
        wait_for(lambda: failing() is None, what="write_error cleared")
        # a clean restart of the end-service: the copy goes on in the same file
        self.remote.stop()
        self.start_again(self.remote)
        second.append(50000)
        want = sorted([bytes(first.generations[0]), bytes(second.generations[0])])
        wait_for(lambda: sorted(self.copies().values()) == want, 30, "both copies whole")
        for data in self.copies().values():
            self.assertNotIn(b"\0", data)
        # no "opened" line for every retry while it could not write
        self.assertLess(self.remote.log_text().count("new copy"), 3)


class TestCopytruncate(LogtailCase):
    def start(self):
        self.start_pair(ROTATED)
        self.log = TextLog(self.src.srcdir, "app.log")
        open(self.log.path, "wb").close()  # empty: the copy begins at 0 (start-at = end)
        return self.start_logtail()

    def check_generations(self, exact_last=True):
        """Each copy is the beginning of one generation, the last one whole; what is
        missing was written to a generation after logtail's last read of it."""
        gens = [bytes(g) for g in self.log.generations]
        if exact_last:
            wait_for(lambda: gens[-1] in self.copies().values(), 30, "the last generation whole")
        copies = self.copies()
        matched = set()
        lost = 0
        for name, data in copies.items():
            self.assertNotIn(b"\0", data, name)
            owners = [i for i, g in enumerate(gens) if data and g.startswith(data)]
            self.assertEqual(len(owners), 1, "%s is no generation's beginning" % name)
            self.assertNotIn(owners[0], matched)
            matched.add(owners[0])
            lost += len(gens[owners[0]]) - len(data)
        return lost

    def test_copytruncate_while_the_writer_is_frozen(self):
        self.start()
        self.log.append(20000)
        wait_for(lambda: bytes(self.log.generations[0]) in self.copies().values(), what="copy")
        self.remote.send_signal(signal.SIGSTOP)
        self.log.append(100000)  # more than the window holds: logtail waits for acks
        self.log.copytruncate()
        self.log.append(200000)  # the new content grows past the old position
        self.local.wait_log(r"truncated in place after \d+ bytes were read")
        self.remote.send_signal(signal.SIGCONT)
        lost = self.check_generations()
        reported = re.findall(r"(\d+) bytes seen and not read are lost", self.local.log_text())
        self.assertLessEqual(sum(map(int, reported)), lost)
        self.assertGreater(lost, 0)  # the window was full: the end of the old one is lost

    def test_copytruncate_while_logtail_is_down(self):
        """The new content grew past the saved position: told by the saved head's digest."""
        tailer = self.start()
        self.log.append(20000)
        wait_for(lambda: bytes(self.log.generations[0]) in self.copies().values(), what="copy")
        tailer.send_signal(signal.SIGTERM)
        self.assertEqual(tailer.wait(10), 0)
        self.log.copytruncate()
        self.log.append(50000)
        self.start_logtail()
        self.assertEqual(self.check_generations(), 0)
        self.local.wait_log(r"app.log was truncated or replaced in place: reading it anew")

    def test_copytruncate_under_load(self):
        self.start()
        stop = threading.Event()

        def write():
            while not stop.is_set():
                self.log.append(3000)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            for _ in range(3):
                wait_for(self.current_generation_copied, 30, "50 kB of the current generation")
                self.log.copytruncate()
        finally:
            stop.set()
            writer.join()
        self.log.append(1000)
        self.check_generations()
        self.assertEqual(len(self.log.generations), 4)
        self.assertEqual(self.local.log_text().count("truncated in place after"), 3)

    def current_generation_copied(self):
        current = bytes(self.log.generations[-1])
        return any(
            len(c) > 50000 and current.startswith(c) for c in self.copies().values()
        )

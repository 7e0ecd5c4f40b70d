"""tailwriter: positioned idempotent writes, acks, identities, hostile paths, roles."""

import base64
import bz2
import gzip
import json
import os

from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

WRITER = """
[routes]
pub.logtail = h:tail

[h:tail]
handler = tailwriter
dstdir = {dstdir}
worker-threads = 3
{extra}
"""


def fragment(data, fpos, filename="/var/log/pg.log", ino=11, comp="", blob=True, **fields):
    body = {
        "filename": filename,
        "comp": comp,
        "fpos": fpos,
        "origin": 0,
        "st_dev": 1,
        "st_ino": ino,
        "op_mode": "classic",
        "mode": "b",
        "ack": True,
        "hostname": "db1",
    }
    body.update(fields)
    if comp == "gzip":
        data = gzip.compress(data)
    elif comp == "bzip2":
        data = bz2.compress(data)
    if blob:
        body["data"] = ""
        return body, data
    body["data"] = base64.b64encode(data).decode()
    return body, None


class TestTailWriter(CCTestCase):
    def start_writer(self, name="w", dstdir=None, extra=""):
        self.dst = os.path.join(self.tmp, "tail")
        dstdir = dstdir or self.dst
        return self.start_server(name, ccserver_section(name) + WRITER, dstdir=dstdir, extra=extra)

    def restart_writer(self, server):
        """Stop ``server`` and start it again on the same endpoint; a socket to it."""
        server.stop()
        server.write_ini(
            (ccserver_section("w", socket=server.endpoint) + WRITER)
            .replace("{tmp}", self.tmp)
            .format(dstdir=self.dst, extra="")
        )
        server.start()
        return self.dealer(server.endpoint)

    def send(self, sock, frag, qid=b"Q1", msgtype="pub.logtail"):
        body, blob = frag
        sock.send_multipart(CCMessage.build(msgtype, body, route=[qid], blob=blob).frames)
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.route, [qid])
        return reply

    def read(self, rel):
        with open(os.path.join(self.dst, rel), "rb") as f:
            return f.read()

    def test_positioned_writes_are_idempotent_and_acked(self):
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        source = b"".join(b"line %d\n" % i for i in range(300))
        cuts = [0, 100, 700, 1500, len(source)]
        pieces = [(cuts[i], source[cuts[i] : cuts[i + 1]]) for i in range(len(cuts) - 1)]
        # resent, once as base64 instead of a blob, and out of order: a fragment past the
        # end of the copy is refused (it would leave a hole) until the ones before it came
        order = [pieces[1], pieces[0], pieces[3], pieces[1], pieces[2], pieces[3]]
        refused = {0, 2}
        for n, (fpos, data) in enumerate(order):
            reply = self.send(sock, fragment(data, fpos, blob=n != 2), qid=b"Q%d" % n)
            if n in refused:
                self.assertEqual(reply.type, "error")
                self.assertEqual(reply.get_body()["code"], "gap")
                self.assertIn("would leave a gap", reply.get_body()["msg"])
                continue
            self.assertEqual(reply.type, "reply.pub.logtail")
            self.assertEqual(reply.get_body()["fpos"], fpos)
            self.assertEqual(reply.get_body()["end"], fpos + len(data))
        self.assertEqual(self.read("db1--pg.log"), source)
        server.wait_stat("tailwriter.failed.gap", 2)
        # a suffixed type is acked with the suffix
        reply = self.send(sock, fragment(b"x", len(source)), msgtype="pub.logtail.pg")
        self.assertEqual(reply.type, "reply.pub.logtail.pg")
        server.wait_stat("appended_bytes", len(source) + 1)

    def test_queue_bytes_answers_busy_and_resends_complete_the_file(self):
        """queue-bytes = 1: one fragment queued at a time; a burst gets busy answers, and
        sending those again (as logtail does) completes the file."""
        server = self.start_writer(extra="queue-bytes = 1\nfsync = yes")
        self.burst_until_whole(server)

    def test_zmq_hwm_bounds_each_worker_in_fragments(self):
        """zmq_hwm = 2: a burst to one worker, handed over as one list, still gets busy
        answers beyond two fragments, and the resends complete the file."""
        server = self.start_writer(extra="zmq_hwm = 2")  # one file: one of the workers
        self.burst_until_whole(server)

    def burst_until_whole(self, server):
        """Send twenty fragments at once, again those refused, until all are written."""
        sock = self.dealer(server.endpoint)
        source = os.urandom(20 * 65536)
        waiting = {n * 65536 for n in range(20)}
        busy = 0  # a fragment after a busy one is a gap, sent again after it too
        for round_ in range(100):
            for fpos in sorted(waiting):
                body, blob = fragment(source[fpos : fpos + 65536], fpos)
                sock.send_multipart(CCMessage.build("pub.logtail", body, route=[b"%d" % fpos],
                                                    blob=blob).frames)  # fmt: skip
            for _ in range(len(waiting)):
                reply = CCMessage(self.recv(sock))
                if reply.type == "error":
                    self.assertIn(reply.get_body()["code"], ("busy", "gap"))
                    busy += reply.get_body()["code"] == "busy"
                else:
                    waiting.discard(int(reply.route[0]))
            if not waiting:
                break
        self.assertFalse(waiting)
        self.assertGreater(busy, 0)  # twenty at once never all fit one queued fragment
        self.assertEqual(self.read("db1--pg.log"), source)
        server.wait_stat("tailwriter.failed.busy", busy)

    def test_compression_in_transit_gives_a_plain_copy(self):
        server = self.start_writer(extra="host-subdirs = yes")
        sock = self.dealer(server.endpoint)
        self.send(sock, fragment(b"gzip part\n", 0, comp="gzip"))
        self.send(sock, fragment(b"bzip2 part\n", 10, comp="bzip2", blob=False))
        self.assertEqual(self.read("db1/pg.log"), b"gzip part\nbzip2 part\n")

    def test_write_compressed_yes_appends_members_once(self):
        server = self.start_writer(extra="write-compressed = yes\ncompression = bzip2")
        sock = self.dealer(server.endpoint)
        self.send(sock, fragment(b"one\n", 0, comp="gzip"))
        self.send(sock, fragment(b"one\n", 0, comp="gzip"))  # resent: skipped
        self.send(sock, fragment(b"e\ntwo\n", 2))  # overlaps: only the new part is added
        self.assertEqual(bz2.decompress(self.read("db1--pg.log.bz2")), b"one\ntwo\n")

    def test_write_compressed_keep_stores_what_came(self):
        server = self.start_writer(extra="write-compressed = keep")
        sock = self.dealer(server.endpoint)
        self.send(sock, fragment(b"one\n", 0, comp="gzip"))
        self.send(sock, fragment(b"two\n", 4, comp="gzip"))
        self.send(sock, fragment(b"plain\n", 0, filename="/l/p.log"))
        self.assertEqual(gzip.decompress(self.read("db1--pg.log.gz")), b"one\ntwo\n")
        self.assertEqual(self.read("db1--p.log"), b"plain\n")

    def test_identities_get_their_own_files_and_survive_a_restart(self):
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        self.send(sock, fragment(b"first inode\n", 0, ino=1))
        self.send(sock, fragment(b"second inode\n", 0, ino=2))
        self.send(sock, fragment(b"rot A\n", 0, filename="/l/r.log", ino=3, op_mode="rotated"))
        self.send(sock, fragment(b"rot B\n", 0, filename="/l/r.log", ino=4, op_mode="rotated"))
        self.send(sock, fragment(b"after truncation\n", 0, ino=1, generation=1))
        sock = self.restart_writer(server)
        self.send(sock, fragment(b"first inode\nmore\n", 0, ino=1))
        self.assertEqual(self.read("db1--pg.log"), b"first inode\nmore\n")
        self.assertEqual(self.read("db1--pg.log.1"), b"second inode\n")
        self.assertEqual(self.read("db1--pg.log.2"), b"after truncation\n")
        rotated = sorted(n for n in os.listdir(self.dst) if n.startswith("db1--r.log."))
        self.assertEqual(len(rotated), 2, rotated)
        self.assertEqual(sorted(self.read(n) for n in rotated), [b"rot A\n", b"rot B\n"])
        with open(os.path.join(self.dst, ".cc-tail-state"), encoding="utf8") as f:
            self.assertEqual(len(json.load(f)["files"]), 5)

    def test_many_new_hosts_each_keep_one_copy_across_a_restart(self):
        """Regression (a 1,000-host fleet run split 27 copies into name and name.1): with 100
        or more entries, the map dropped an entry whose file was not created yet, so the
        entry of each new host was missing from the saved map when its bytes were acked, and
        after a restart its copy went on in a second file."""
        hosts = ["h%03d" % n for n in range(130)]
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        for host in hosts:
            self.send(sock, fragment(b"first\n", 0, hostname=host))
        with open(os.path.join(self.dst, ".cc-tail-state"), encoding="utf8") as f:
            saved = {json.loads(key)[0] for key in json.load(f)["files"]}
        self.assertEqual(sorted(saved), hosts)  # acked bytes are mapped on disk
        sock = self.restart_writer(server)
        for host in hosts:
            reply = self.send(sock, fragment(b"second\n", 6, hostname=host))
            self.assertEqual(reply.type, "reply.pub.logtail", reply.get_body())
        for host in hosts:
            self.assertEqual(self.read(host + "--pg.log"), b"first\nsecond\n")
        self.assertEqual(len(os.listdir(self.dst)), len(hosts) + 1)  # and the map

    def test_hostile_paths_are_rejected_and_nothing_leaves_dstdir(self):
        server = self.start_writer(dstdir="tail", extra="dstmask = %%(hostname)s/%%(filepath)s")
        sock = self.dealer(server.endpoint)
        os.symlink(self.tmp, os.path.join(self.dst, "linked"))  # a symlink leading out
        hostile = [
            {"hostname": "linked"},
            {"hostname": ".."},
            {"hostname": "../../etc", "filename": "../x"},
            {"filename": "/../../../etc/x"},
            {"filename": "a/../../../x"},
            {"filename": ""},
            {"hostname": "db1", "filename": "x\0y"},
            {"hostname": ".cc-tail-state"},
            {"hostname": ".cc-tail-state.tmp"},
        ]
        for n, fields in enumerate(hostile):
            reply = self.send(sock, fragment(b"evil\n", 0, **fields), qid=b"Q%d" % n)
            self.assertEqual(reply.type, "error", fields)
            self.assertIn(reply.get_body()["code"], ("unsafe-path", "bad-field"), fields)
        # a relative dstdir (the server runs in the test directory) works
        reply = self.send(sock, fragment(b"fine\n", 0), qid=b"Q99")
        self.assertEqual(reply.type, "reply.pub.logtail")
        self.assertEqual(self.read("db1/var/log/pg.log"), b"fine\n")
        server.wait_stat("tailwriter.failed.unsafe_path", 7)
        written = []
        for root, _, files in os.walk(self.tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    if b"evil" in f.read():
                        written.append(os.path.join(root, name))
        self.assertEqual(written, [])
        server.wait_log("suspicious file path")

    def test_bad_fields_get_an_error(self):
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        bad = [
            {"fpos": -1},
            {"fpos": "7"},
            {"st_ino": None},
            {"fpos": 2**63, "origin": 2**63},  # was a traceback per message
            {"fpos": 2**63 - 10, "origin": 2**63 - 10},  # fpos + a fragment passes off_t
            {"st_ino": 2**64},
            {"generation": -1},
            {"origin": 5},  # after fpos 0
            {"hostname": "db1\n2026-12-04 ERROR forged line"},
            {"filename": "/var/log/pg\r.log"},
            {"filename": "/" + "x" * 2000},
        ]
        for n, fields in enumerate(bad):
            body, blob = fragment(b"x", 0)
            body.update(fields)
            reply = self.send(sock, (body, blob), qid=b"Q%d" % n)
            self.assertEqual(reply.get_body()["code"], "bad-field", fields)
        server.wait_stat("tailwriter.failed.bad_field", len(bad))
        log = server.log_text()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("\n2026-12-04 ERROR forged", log)
        self.assertEqual(os.listdir(self.dst), [])  # no copy made, no file named
        body, _ = fragment(b"", 0, comp="gzip", blob=False)
        body["data"] = base64.b64encode(b"not gzip").decode()
        self.assertEqual(self.send(sock, (body, None)).get_body()["code"], "bad-data")
        # without "ack" (the original logtail) nothing is sent back
        body, blob = fragment(b"quiet\n", 0, ack=False)
        sock.send_multipart(CCMessage.build("pub.logtail", body, route=[b"Q9"], blob=blob).frames)
        wait_for(lambda: os.path.exists(os.path.join(self.dst, "db1--pg.log")))
        self.assert_silent(sock)

    def test_a_copy_begins_at_its_origin_and_never_gets_a_hole(self):
        """A copy of a log whose first 1 MB logtail skipped: no megabyte of NUL bytes, and a
        fragment far past the end (2**40: a 1 TiB sparse file once) is refused, not padded."""
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        origin = 1 << 20
        reply = self.send(sock, fragment(b"second\n", origin + 6, origin=origin), qid=b"Q0")
        self.assertEqual(reply.get_body()["code"], "gap")  # the first one has not come yet
        self.send(sock, fragment(b"first\n", origin, origin=origin), qid=b"Q1")
        self.send(sock, fragment(b"second\n", origin + 6, origin=origin), qid=b"Q2")
        reply = self.send(sock, fragment(b"far\n", 1 << 40, origin=origin), qid=b"Q3")
        self.assertEqual(reply.get_body()["code"], "gap")
        self.assertIn("would leave a gap", reply.get_body()["msg"])
        reply = self.send(sock, fragment(b"before\n", 0, origin=0), qid=b"Q4")
        self.assertEqual(reply.get_body()["code"], "gap")  # ends before the copy's origin
        self.assertEqual(self.read("db1--pg.log"), b"first\nsecond\n")
        server.wait_log(r"new copy \S+db1--pg.log of '/var/log/pg.log' on 'db1', beginning at "
                        r"source offset %d" % origin)  # fmt: skip
        with open(os.path.join(self.dst, ".cc-tail-state"), encoding="utf8") as f:
            (entry,) = json.load(f)["files"].values()
        self.assertEqual(entry["path"], "db1--pg.log")
        self.assertEqual(entry["origin"], origin)
        server.wait_stat("tailwriter.failed.gap", 3)

    def test_a_file_map_of_an_older_version_is_read(self):
        """Entries were a bare path before origins were kept: such a copy begins at 0."""
        os.makedirs(os.path.join(self.tmp, "tail"))
        key = json.dumps(["db1", 1, 11, "/var/log/pg.log", 0])
        with open(os.path.join(self.tmp, "tail", ".cc-tail-state"), "w", encoding="utf8") as f:
            json.dump({"files": {key: "old-name.log"}}, f)
        with open(os.path.join(self.tmp, "tail", "old-name.log"), "wb") as f:
            f.write(b"first\n")
        server = self.start_writer()
        sock = self.dealer(server.endpoint)
        self.send(sock, fragment(b"second\n", 6, origin=6))  # the map's origin wins
        self.assertEqual(self.read("old-name.log"), b"first\nsecond\n")

    def test_refuses_local_role(self):
        ini = ccserver_section("w", role="local") + WRITER
        out = self.start_failing("w", ini, dstdir="t", extra="")
        self.assertIn("handler tailwriter cannot be run in role local", out)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "t")))

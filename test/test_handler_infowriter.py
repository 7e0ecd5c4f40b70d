"""infowriter: files land atomically under dstdir, newest wins, hostile names go nowhere."""

import base64
import bz2
import gzip
import os

from harness import CCTestCase, ccserver_section, read_file, wait_for

from cc.message import CCMessage

WRITER = """
[routes]
pub.infofile = h:info

[h:info]
handler = infowriter
dstdir = {dstdir}
host-subdirs = yes
bakext = --prev
{extra}
"""


def infofile(hostname, filename, data=b"x", mtime=1000.0, comp="", blob=True, **extra):
    fields = dict(hostname=hostname, filename=filename, mtime=mtime, comp=comp, mode="b", **extra)
    if blob:
        fields["data"] = ""
        return CCMessage.build("pub.infofile", fields, blob=data).frames
    fields["data"] = base64.b64encode(data).decode()
    return CCMessage.build("pub.infofile", fields).frames


def all_files(top):
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.add(os.path.relpath(os.path.join(dirpath, name), top))
    return found


class TestInfoWriter(CCTestCase):
    def start_writer(self, dstdir="{tmp}/dst", extra=""):
        ini = ccserver_section("w") + WRITER
        server = self.start_server("w", ini, dstdir=dstdir.replace("{tmp}", self.tmp), extra=extra)
        return server, self.dealer(server.endpoint)

    def check_lands_in_host_dir(self, dstdir):
        server, sock = self.start_writer(dstdir)
        sock.send_multipart(infofile("me", "/var/lib/x/info.1", b"hello\n", mtime=1234.5))
        path = os.path.join(self.tmp, "dst", "me", "info.1")
        wait_for(lambda: os.path.exists(path), what=path)
        self.assertEqual(read_file(path), b"hello\n")
        self.assertEqual(os.stat(path).st_mtime, 1234.5)
        server.wait_stat("written_files", 1)
        self.assertEqual(server.stats_total()["written_bytes"], 6)

    def test_raw_infofile_lands_in_host_dir(self):
        self.check_lands_in_host_dir("{tmp}/dst")

    def test_relative_dstdir(self):
        self.check_lands_in_host_dir("dst")  # the server runs in {tmp}

    def test_newest_wins_and_previous_kept(self):
        server, sock = self.start_writer()
        path = os.path.join(self.tmp, "dst", "me", "info.1")
        sock.send_multipart(infofile("me", "info.1", b"v2", mtime=2000))
        wait_for(lambda: os.path.exists(path), what=path)
        sock.send_multipart(infofile("me", "info.1", b"v1", mtime=1000, blob=False))
        sock.send_multipart(infofile("me", "info.1", b"v2", mtime=2000))
        server.wait_stat("infowriter.skipped", 2)
        self.assertEqual(read_file(path), b"v2")
        self.assertFalse(os.path.exists(path + "--prev"))
        sock.send_multipart(infofile("me", "info.1", b"v3", mtime=3000, blob=False))
        wait_for(lambda: read_file(path) == b"v3", what="v3")
        self.assertEqual(read_file(path + "--prev"), b"v2")
        self.assertEqual(os.stat(path).st_mtime, 3000)
        # same mtime but other content (changed twice within a tick) is written
        sock.send_multipart(infofile("me", "info.1", b"v3 again", mtime=3000))
        wait_for(lambda: read_file(path) == b"v3 again", what="same-mtime rewrite")
        self.assertEqual(all_files(os.path.join(self.tmp, "dst")), {"me/info.1", "me/info.1--prev"})

    def test_compression_both_ways(self):
        server, sock = self.start_writer()
        d = os.path.join(self.tmp, "dst", "h")
        sock.send_multipart(infofile("h", "a", gzip.compress(b"A" * 100), comp="gzip"))
        sock.send_multipart(infofile("h", "b", bz2.compress(b"B" * 100), comp="bzip2", blob=False))
        server.wait_stat("written_files", 2)
        self.assertEqual(read_file(os.path.join(d, "a")), b"A" * 100)
        self.assertEqual(read_file(os.path.join(d, "b")), b"B" * 100)

    def test_write_compressed_yes_recompresses(self):
        server, sock = self.start_writer(
            extra="write-compressed = yes\ncompression = bzip2\ncompression-level = 1"
        )
        d = os.path.join(self.tmp, "dst", "h")
        sock.send_multipart(infofile("h", "a", gzip.compress(b"A" * 100), comp="gzip"))
        sock.send_multipart(infofile("h", "b", b"B" * 100))
        server.wait_stat("written_files", 2)
        self.assertEqual(bz2.decompress(read_file(os.path.join(d, "a.bz2"))), b"A" * 100)
        self.assertEqual(bz2.decompress(read_file(os.path.join(d, "b.bz2"))), b"B" * 100)

    def test_write_compressed_keep(self):
        server, sock = self.start_writer(extra="write-compressed = keep")
        d = os.path.join(self.tmp, "dst", "h")
        packed = gzip.compress(b"A" * 100)
        sock.send_multipart(infofile("h", "a", packed, comp="gzip"))
        sock.send_multipart(infofile("h", "b", b"plain"))
        server.wait_stat("written_files", 2)
        self.assertEqual(read_file(os.path.join(d, "a.gz")), packed)
        self.assertEqual(read_file(os.path.join(d, "b")), b"plain")

    def test_hostile_paths_rejected_and_nothing_written_outside(self):
        dstdir = os.path.join(self.tmp, "info")
        for name in ("info", "infoX", "outside"):
            os.mkdir(os.path.join(self.tmp, name))
        os.symlink(os.path.join(self.tmp, "outside"), os.path.join(dstdir, "evil"))
        os.symlink(os.path.join(self.tmp, "infoX"), os.path.join(dstdir, "sib"))
        server, sock = self.start_writer(dstdir, extra="dstmask = %%(hostname)s/%%(filepath)s")
        hostile = [
            ("..", "x"),  # hostname '..'
            ("../outside", "x"),  # hostname with a separator
            ("/etc", "x"),  # absolute hostname
            ("", "x"),  # empty hostname
            (None, "x"),  # missing hostname
            (".", "x"),  # '.' component
            ("me", "../../outside/f"),  # '..' in the file path
            ("me", "a/../../../outside/f"),
            ("me", "..\\..\\outside\\f"),  # backslashes read as '/'
            ("me", ""),  # empty file name
            ("me", "dir/"),  # no file name
            ("evil", "f"),  # symlink inside dstdir pointing out
            ("sib", "f"),  # symlink to a sibling sharing the prefix (info -> infoX)
            ("me", "evil/../x"),
        ]
        for hostname, filename in hostile:
            sock.send_multipart(infofile(hostname, filename, b"bad"))
        # a normal one after them: the server keeps going; absolute sources land below host
        sock.send_multipart(infofile("me", "/var/log/ok", b"good"))
        server.wait_stat("written_files", 1)
        server.wait_stat("infowriter.rejected", len(hostile))
        server.wait_log(r"suspicious file path, skipping")
        self.assertEqual(read_file(os.path.join(dstdir, "me", "var", "log", "ok")), b"good")
        self.assertEqual(all_files(os.path.join(self.tmp, "outside")), set())
        self.assertEqual(all_files(os.path.join(self.tmp, "infoX")), set())
        self.assertEqual(all_files(dstdir), {"evil", "sib", "me/var/log/ok"})
        top = {f for f in os.listdir(self.tmp) if not f.startswith("w.")}
        self.assertEqual(top, {"info", "infoX", "outside"})

    def test_bad_messages_counted(self):
        server, sock = self.start_writer()
        sock.send_multipart(infofile("me", "a", mtime="soon"))
        sock.send_multipart(infofile("me", "b", comp="zip"))
        sock.send_multipart(
            CCMessage.build(
                "pub.infofile",
                dict(hostname="me", filename="c", mtime=1.0, comp="", data="!!notbase64"),
            ).frames
        )
        server.wait_stat("infowriter.invalid", 2)
        server.wait_stat("infowriter.failed", 1)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "dst", "me")))

    def test_ack_answers_written_older_and_refused(self):
        server, sock = self.start_writer()

        def ask(qid, frames):
            sock.send_multipart([qid] + frames)
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.route, [qid])
            return reply

        new = ask(b"Q1", infofile("me", "a", b"new", mtime=2000.0, ack=True))
        self.assertEqual(new.type, "reply.pub.infofile")
        self.assertEqual(new.get_body()["status"], "written")
        old = ask(b"Q2", infofile("me", "a", b"old", mtime=1000.0, ack=True))
        self.assertEqual(old.get_body()["status"], "older")  # the newest is there: done
        bad = ask(b"Q3", infofile("../etc", "x", ack=True))
        self.assertEqual((bad.type, bad.get_body()["code"]), ("error", "rejected"))
        data = dict(hostname="me", filename="c", mtime=1.0, comp="", data="!!", ack=True)
        failed = ask(b"Q4", CCMessage.build("pub.infofile", data).frames)
        self.assertEqual((failed.type, failed.get_body()["code"]), ("error", "failed"))
        # without ack nothing is answered, as the original
        sock.send_multipart([b"Q5"] + infofile("me", "d"))
        self.assert_silent(sock)
        self.assertEqual(read_file(os.path.join(self.tmp, "dst", "me", "a")), b"new")

    def test_refuses_local_role(self):
        ini = ccserver_section("l", role="local") + WRITER
        out = self.start_failing("l", ini, dstdir="{tmp}/dst", extra="")
        self.assertIn("handler infowriter cannot be run in role local", out)
        self.assertIn("it runs in: remote", out)

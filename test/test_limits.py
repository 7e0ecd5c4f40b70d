"""Bounded inputs: frames over cc-max-message-size, decompression bombs to the writers."""

import bz2
import functools
import gzip
import os
import struct
import zlib

from harness import CCTestCase, ccserver_section, read_file, wait_for

from cc.message import CCMessage

#: what each bomb claims to hold
CLAIMED = 2 << 30
#: zeros per gzip deflate block / bzip2 stream the bombs repeat
CHUNK = 64 << 20
#: how much the writers' server may grow while bombs arrive
RSS_GROWTH_LIMIT = 512 << 20

WRITERS = """
[routes]
pub.infofile = h:info
pub.logtail = h:tail
echo = h:echo

[h:info]
handler = infowriter
dstdir = {tmp}/info
host-subdirs = yes
bakext = --prev
max-file-size = 16M
worker-threads = 4

[h:tail]
handler = tailwriter
dstdir = {tmp}/tail
max-file-size = 16M
# one thread: the bombs of one batch meet there (a refused one must not take a copy's name)
worker-threads = 1

[h:echo]
handler = echo
"""

ECHO = """
[routes]
echo = h:echo

[h:echo]
handler = echo
"""

PROXY = """
[routes]
echo = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
"""


@functools.lru_cache(maxsize=None)
def gzip_bomb() -> bytes:
    """One gzip member (valid, CRC and all) of CLAIMED zero bytes, about 2 MB.

    Deflate tops out near 1:1000, so the same fully flushed block of CHUNK
    zeros is repeated instead of compressing gigabytes.
    """
    zeros = bytes(CHUNK)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(CLAIMED // CHUNK):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * (CLAIMED // CHUNK) + end + struct.pack("<II", crc, CLAIMED & 0xFFFFFFFF)


@functools.lru_cache(maxsize=None)
def bzip2_bomb() -> bytes:
    """Concatenated bzip2 streams (as pbzip2 writes them) of CLAIMED zero bytes, a few kB."""
    return bz2.compress(bytes(CHUNK)) * (CLAIMED // CHUNK)


BOMBS = {"gzip": gzip_bomb, "bzip2": bzip2_bomb}


def memory_kb(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def infofile(filename, data, mtime, comp=""):
    fields = dict(hostname="h", filename=filename, mtime=mtime, comp=comp, mode="b", ack=True)
    return CCMessage.build("pub.infofile", dict(fields, data=""), blob=data)


def fragment(data, fpos, comp="", ino=11):
    body = dict(
        filename="/var/log/pg.log",
        comp=comp,
        fpos=fpos,
        st_dev=1,
        st_ino=ino,
        op_mode="classic",
        mode="b",
        ack=True,
        hostname="db1",
        data="",
    )
    return CCMessage.build("pub.logtail", body, blob=data)


class TestBombs(CCTestCase):
    """gzip and bzip2 bombs, several at once, to infowriter and tailwriter on one server."""

    def test_bombs_are_refused_with_bounded_memory(self):
        for make in BOMBS.values():
            self.assertLess(len(make()), 3 << 20)
        self.assertEqual(struct.unpack("<I", gzip_bomb()[-4:])[0], CLAIMED & 0xFFFFFFFF)
        server = self.start_server("w", ccserver_section("w") + WRITERS)
        sock = self.dealer(server.endpoint)
        info = os.path.join(self.tmp, "info", "h", "a")
        reply = self.send(sock, infofile("a", b"version 1\n", 1000), b"QGOOD1")
        self.assertEqual(reply.type, "reply.pub.infofile")
        self.assertEqual(read_file(info), b"version 1\n")
        rss_before = memory_kb(server.proc.pid, "VmRSS") << 10

        # two of each kind to each writer, all in flight at once
        bombs = []
        for i, (comp, make) in enumerate(sorted(BOMBS.items()) * 2):
            bombs.append(infofile("a" if i == 0 else "bomb%d" % i, make(), 2000 + i, comp))
            bombs.append(fragment(make(), 0, comp, ino=100 + i))
        for i, msg in enumerate(bombs):
            sock.send_multipart(msg.with_route([b"QB%d" % i]).frames)
        answered = {}
        while len(answered) < len(bombs):
            reply = CCMessage(self.recv(sock, timeout=60))
            answered[reply.route[0]] = reply
        for qid, reply in sorted(answered.items()):
            self.assertEqual(reply.type, "error", qid)
            self.assertEqual(reply.get_body()["code"], "too-large", qid)

        growth = (memory_kb(server.proc.pid, "VmHWM") << 10) - rss_before
        self.assertLess(growth, RSS_GROWTH_LIMIT)
        self.assertEqual(server.wait_stat("infowriter.too_large", 4), 4)
        self.assertEqual(server.wait_stat("tailwriter.failed.too_large", 4), 4)
        server.wait_log(r"refusing infofile h/\w+: decompresses to more than 16777216 bytes")
        server.wait_log(r"refusing fragment of /var/log/pg.log: decompresses to more than")
        # four refusals each within seconds: one line each, the rest rate-limited
        self.assertEqual(server.log_text().count("refusing infofile"), 1)
        self.assertEqual(server.log_text().count("refusing fragment"), 1)

        # nothing half-written: the refused version left the previous one, no temporary files
        self.assertEqual(read_file(info), b"version 1\n")
        self.assertEqual(os.listdir(os.path.dirname(info)), ["a"])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "tail", "db1--pg.log")))

        # and the writers carry on
        packed = gzip.compress(b"version 3\n")
        reply = self.send(sock, infofile("a", packed, 3000, "gzip"), b"QGOOD2")
        self.assertEqual(reply.type, "reply.pub.infofile")
        self.assertEqual(read_file(info), b"version 3\n")
        self.assertEqual(read_file(info + "--prev"), b"version 1\n")
        reply = self.send(sock, fragment(bz2.compress(b"line\n"), 0, "bzip2"), b"QGOOD3")
        self.assertEqual(reply.type, "reply.pub.logtail")
        tail = os.path.join(self.tmp, "tail", "db1--pg.log")
        wait_for(lambda: read_file(tail) == b"line\n", what=tail)

    def test_large_files_within_the_limit_are_written_a_piece_at_a_time(self):
        """Four 192 MB infofiles at once, at the default max-file-size: all written, byte for
        byte, while the server grows far less than one of them (it used to hold each whole)."""
        ini = WRITERS.replace("max-file-size = 16M\n", "", 1)
        server = self.start_server("w", ccserver_section("w") + ini)
        sock = self.dealer(server.endpoint)
        self.assertEqual(self.send(sock, infofile("warm", b"x", 1000), b"QW").type,
                         "reply.pub.infofile")  # fmt: skip
        rss_before = memory_kb(server.proc.pid, "VmRSS") << 10
        size = 192 << 20
        packed = {"gzip": gzip.compress(bytes(size), 1), "bzip2": bz2.compress(bytes(size))}
        for i, comp in enumerate(sorted(packed) * 2):
            sock.send_multipart(infofile("big%d" % i, packed[comp], 2000, comp)
                                .with_route([b"QL%d" % i]).frames)  # fmt: skip
        for _ in range(4):
            reply = CCMessage(self.recv(sock, timeout=120))
            self.assertEqual(reply.type, "reply.pub.infofile", reply.get_body())
        growth = (memory_kb(server.proc.pid, "VmHWM") << 10) - rss_before
        self.assertLess(growth, 64 << 20)
        for i in range(4):
            path = os.path.join(self.tmp, "info", "h", "big%d" % i)
            self.assertEqual(os.path.getsize(path), size)
            with open(path, "rb") as f:
                self.assertEqual(f.read(1 << 20).count(0), 1 << 20)

    def send(self, sock, msg, qid):
        sock.send_multipart(msg.with_route([qid]).frames)
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.route, [qid])
        return reply


class TestMessageSize(CCTestCase):
    """A frame over cc-max-message-size costs its sender the connection, nobody else anything."""

    def test_server_drops_oversized_frame_and_serves_others(self):
        server = self.start_server("s", ccserver_section("s", cc_max_message_size="64K") + ECHO)
        evil, other = self.dealer(server.endpoint), self.dealer(server.endpoint)
        self.assertEqual(self.query(evil, "echo.request", {"target": "a"}).type, "echo.response")
        big = CCMessage.build(
            "echo.request", {"target": "big"}, route=[b"QBIG"], blob=bytes(100000)
        )
        evil.send_multipart(big.frames)
        reply = self.query(other, "echo.request", {"target": "other"}, qid=b"QOTHER")
        self.assertEqual(reply.get_body()["orig_target"], "other")
        # the sender reconnects by itself; only the oversized message is lost
        reply = self.query(evil, "echo.request", {"target": "again"}, qid=b"QAGAIN")
        self.assertEqual(reply.get_body()["orig_target"], "again")
        self.assert_silent(evil)
        # libzmq never handed it over: not routed, not counted as invalid
        server.wait_stat("count", 3)
        self.assertNotIn("count.invalid", server.stats_total())

    def test_proxy_link_survives_large_reply(self):
        # libzmq would end a connecting socket's session for good on an oversized frame, so
        # the limit is on the ROUTER only: a large reply from upstream passes, the link stays
        remote, url = self.make_sink()
        proxy = self.start_server(
            "p", ccserver_section("p", "proxy", cc_max_message_size="64K") + PROXY, remote=url
        )
        client = self.dealer(proxy.endpoint)
        for qid, size in ((b"Q1", 100000), (b"Q2", 10)):
            client.send_multipart(CCMessage.build("echo.request", {}, route=[qid]).frames)
            asked = CCMessage(self.recv(remote))
            remote.send_multipart(asked.reply("echo.response", {}, blob=bytes(size)).frames)
            reply = CCMessage(self.recv(client))
            self.assertEqual((reply.route, len(reply.blob)), ([qid], size))

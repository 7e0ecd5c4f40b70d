"""infowriter against ``cp -p``: files per second and MB/s written, same files, same disk.

    cc-bench infowriter [--dir /tmp] [--runs 3] [--small 2000] [--large 100]

Each case makes N source files of one size (4 KB and 1 MB by default) and
then, alternating run by run:

* ``infowriter``: a cc-server (role remote, infowriter with its default
  10 worker threads) receives N ``pub.infofile`` messages (blob, no
  compression) from one DEALER; the time runs from the first send until
  the N-th file exists under ``dstdir``;
* ``cp``: ``cp -p`` of the same N files into an empty directory.

The median of the runs is reported.  Everything lives under ``--dir``, so
both write to the same file system.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

from cc.message import CCMessage
from cctools.bench.scenarios import REPO


INI = """[ccserver]
job_name = bench
logfile = {tmp}/server.log
pidfile = {tmp}/server.pid
cc-socket = tcp://127.0.0.1:*
cc-role = remote
stats-period = 5

[routes]
pub.infofile = h:info

[h:info]
handler = infowriter
dstdir = {dstdir}
host-subdirs = yes
queue-size = {queue}
"""


def make_sources(top: str, count: int, size: int) -> str:
    src = os.path.join(top, "src-%d" % size)
    os.mkdir(src)
    block = os.urandom(size)
    for i in range(count):
        with open(os.path.join(src, "f%05d" % i), "wb") as f:
            f.write(block)
    return src


def wait_count(path: str, count: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = sum(1 for e in os.scandir(path) if not e.name.startswith("."))
        except FileNotFoundError:
            n = 0
        if n >= count:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise SystemExit("only %d of %d files after %ds" % (n, count, timeout))
        time.sleep(0.002)


def run_infowriter(top: str, src: str, run: int) -> float:
    work = os.path.join(top, "iw-%d" % run)
    os.mkdir(work)
    dstdir = os.path.join(work, "dst")
    names = sorted(os.listdir(src))
    ini = os.path.join(work, "server.ini")
    with open(ini, "w") as f:
        f.write(INI.format(tmp=work, dstdir=dstdir, queue=len(names)))
    server = subprocess.Popen(
        [sys.executable, "-m", "cc.server", ini], cwd=REPO, stderr=subprocess.DEVNULL
    )
    ctx = zmq.Context()
    try:
        endpoint = wait_endpoint(os.path.join(work, "server.log"))
        # read the sources before the clock starts: the server's job is writing
        msgs = []
        for name in names:
            with open(os.path.join(src, name), "rb") as f:
                data = f.read()
            fields = {"hostname": "h", "filename": name, "mtime": 1e9, "comp": "", "data": ""}
            msgs.append(CCMessage.build("pub.infofile", fields, blob=data).frames)
        sock = ctx.socket(zmq.DEALER)
        sock.connect(endpoint)
        started = time.perf_counter()
        for frames in msgs:
            sock.send_multipart(frames, copy=False)
        done = wait_count(os.path.join(dstdir, "h"), len(names))
        sock.close(0)
        return done - started
    finally:
        ctx.term()
        server.terminate()
        server.wait(30)
        shutil.rmtree(work)


def wait_endpoint(logfile: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(logfile) as f:
                m = re.search(r"listening on (\S+)", f.read())
            if m:
                return m.group(1)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not start, see " + logfile)


def run_cp(top: str, src: str, run: int) -> float:
    dst = os.path.join(top, "cp-%d" % run)
    os.mkdir(dst)
    names = sorted(os.listdir(src))
    started = time.perf_counter()
    subprocess.run(["cp", "-p", *[os.path.join(src, n) for n in names], dst], check=True)
    taken = time.perf_counter() - started
    shutil.rmtree(dst)
    return taken


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(prog="cc-bench infowriter", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=2000, help="number of 4 KB files")
    parser.add_argument("--large", type=int, default=100, help="number of 1 MB files")
    args = parser.parse_args(argv)
    top = tempfile.mkdtemp(prefix="ccbench-infowriter-", dir=args.dir)
    try:
        print("%-10s %-6s %6s %12s %10s" % ("writer", "size", "files", "files/s", "MB/s"))
        for size, count in ((4096, args.small), (1 << 20, args.large)):
            src = make_sources(top, count, size)
            times = {"infowriter": [], "cp": []}
            for run in range(args.runs):
                times["infowriter"].append(run_infowriter(top, src, run))
                times["cp"].append(run_cp(top, src, run))
            for writer, taken in times.items():
                t = statistics.median(taken)
                print(
                    "%-10s %-6s %6d %12.0f %10.1f"
                    % (writer, "%dK" % (size // 1024), count, count / t, count * size / t / 1e6)
                )
            shutil.rmtree(src)
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()

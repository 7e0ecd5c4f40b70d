"""logtail -> local cc (proxy) -> remote cc (tailwriter), against ``cat`` of the same log.

    cc-bench logtail [--mbytes M] [--runs R] [--compression none|gzip|bzip2]

Each run writes a log of M MiB (text lines), copies it with ``cat`` into a
file on the same file system (and fsyncs nothing: neither does the
tailwriter by default), then lets a logtail daemon deliver it from offset 0
(``start-at = beginning``) through one proxy hop to a tailwriter.  The
logtail figure is the time from the first byte appearing at the destination
until the destination has the whole log (daemon start-up is not counted);
the copy is checked byte for byte.  Medians of the runs are reported.
"""

import argparse
import filecmp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from cctools.bench.scenarios import REPO


def write_log(path: str, mbytes: int) -> int:
    rng = random.Random(1)
    words = [("%x" % rng.getrandbits(40)).encode() for _ in range(512)]
    lines = [b" ".join(rng.choices(words, k=rng.randint(3, 30))) + b"\n" for _ in range(4096)]
    chunk = b"".join(lines)
    with open(path, "wb") as f:
        for _ in range(mbytes * 1024 * 1024 // len(chunk) + 1):
            f.write(chunk)
        f.truncate(mbytes * 1024 * 1024)
    return os.path.getsize(path)


def server(tmp: str, name: str, text: str) -> "tuple[subprocess.Popen, str]":
    ini = os.path.join(tmp, name + ".ini")
    log = os.path.join(tmp, name + ".log")
    with open(ini, "w") as f:
        f.write(
            "[ccserver]\njob_name = %s\ncc-socket = tcp://127.0.0.1:*\nlogfile = %s\n"
            "stats-period = 5\n%s" % (name, log, text)
        )
    proc = subprocess.Popen([sys.executable, "-m", "cc.server", ini], stderr=subprocess.DEVNULL)
    endpoint = wait(lambda: _endpoint(log), 10)
    with open(ini) as f:
        pinned = f.read().replace("cc-socket = tcp://127.0.0.1:*", "cc-socket = " + endpoint)
    with open(ini, "w") as f:
        f.write(pinned)
    return proc, ini


def wait(check, timeout: float, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(step)
    raise SystemExit("timed out")


def _endpoint(logfile: str) -> Optional[str]:
    try:
        with open(logfile) as f:
            for line in f:
                if "listening on" in line:
                    return line.split("listening on ")[1].split()[0]
    except FileNotFoundError:
        pass
    return None


def run_cat(src: str, tmp: str) -> float:
    dst = os.path.join(tmp, "cat.out")
    started = time.perf_counter()
    with open(dst, "wb") as out:
        subprocess.run(["cat", src], stdout=out, check=True)
    taken = time.perf_counter() - started
    os.unlink(dst)
    return taken


def run_logtail(src: str, size: int, tmp: str, comp: str) -> float:
    dst = os.path.join(tmp, "dst")
    remote, _ = server(
        tmp,
        "remote",
        "cc-role = remote\n[routes]\npub.logtail = h:tail\n[h:tail]\nhandler = tailwriter\n"
        "dstdir = %s\n" % dst,
    )
    state = os.path.join(tmp, "logtail.save")
    local, ini = server(
        tmp,
        "local",
        "cc-role = local\n[routes]\npub.logtail = h:proxy\n[h:proxy]\nhandler = proxy\n"
        "remote-cc = %s\n[d:logtail]\nlogdir = %s\nlogmask = %s\nstate-file = %s\n"
        "file-mode = binary\nstart-at = beginning\ncompression = %s\n"
        % (_endpoint(os.path.join(tmp, "remote.log")), tmp, os.path.basename(src), state, comp),
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "cc.daemon.logtail", ini, "d:logtail"], stderr=subprocess.DEVNULL
    )
    try:
        out = wait(lambda: _first(dst), 30)
        started = time.perf_counter()
        wait(lambda: os.path.getsize(out) >= size, 600)
        taken = time.perf_counter() - started
        if not filecmp.cmp(src, out, shallow=False):
            raise SystemExit("destination differs from the source")
    finally:
        for proc in (daemon, local, remote):
            proc.terminate()
            proc.wait()
    return taken


def _first(dst: str) -> Optional[str]:
    names = [n for n in os.listdir(dst) if not n.startswith(".")] if os.path.isdir(dst) else []
    return os.path.join(dst, names[0]) if names else None


def main(argv: "list[str] | None" = None) -> None:
    p = argparse.ArgumentParser(prog="cc-bench logtail", description=__doc__.split("\n\n")[0])
    p.add_argument("--mbytes", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--compression", default="none")
    args = p.parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    cat: List[float] = []
    tail: List[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cc-bench-logtail-") as tmp:
            src = os.path.join(tmp, "app.log")
            size = write_log(src, args.mbytes)
            mb = size / 1048576
            cat.append(mb / run_cat(src, tmp))
            tail.append(mb / run_logtail(src, size, tmp, args.compression))
            print("run %d: cat %.0f MB/s, logtail %.1f MB/s" % (run + 1, cat[-1], tail[-1]))
    c, t = statistics.median(cat), statistics.median(tail)
    print(
        "median over %d runs of %d MiB (compression %s): cat %.0f MB/s, "
        "logtail via one proxy %.1f MB/s (%.1f%% of cat)"
        % (args.runs, args.mbytes, args.compression, c, t, 100 * t / c)
    )


if __name__ == "__main__":
    main()

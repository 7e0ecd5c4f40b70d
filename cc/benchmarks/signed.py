"""Signed against unsigned messages through the same cc-server.

    cc-bench signed [--messages N]

Makes a throwaway PKI with ``openssl`` (test/pki.py), then for each case
starts an end-service cc-server whose ``log`` route goes to ``locallogger``
(which parses, and where configured verifies, every body) and sends it N
``log.info`` messages:

* unsigned: plain messages;
* signed: each signed at the client as it is sent (client signing included);
* pre-signed: signed before the clock starts, so the figure is the server's
  verifying throughput alone.

The server verifies against the CA with a time window (replay cache on).
Throughput is N over the time until the server's infofile counts N handled
messages.  Also prints the in-process cost of one verification and one
signature (microseconds, median of 3 rounds).
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

from cc.benchmarks import source_tree_module
from cc.crypto import CryptoContext
from cc.message import CCMessage

PKI = source_tree_module("pki").PKI

SERVER = """[ccserver]
job_name = bench
logfile = {tmp}/bench.log
infofile = {tmp}/bench.info
cc-socket = tcp://127.0.0.1:*
cc-role = end-service
stats-period = 0.1
zmq_hwm = 100000
{crypto}
[routes]
log = h:log

[h:log]
handler = locallogger
"""


def fields(i):
    return {
        "log_level": "INFO",
        "job_name": "bench",
        "log_msg": "message %d" % i,
        "log_time": time.time(),
    }


def handled(infofile):
    try:
        with open(infofile) as f:
            m = re.search(r"^count\.ok: (\d+)", f.read().split("[latest]")[0], re.M)
    except FileNotFoundError:
        return 0
    return int(m.group(1)) if m else 0


def run(tmp, n, crypto_opts, sender, presign):
    ini = os.path.join(tmp, "bench.ini")
    for name in ("bench.log", "bench.info"):
        if os.path.exists(os.path.join(tmp, name)):
            os.unlink(os.path.join(tmp, name))
    with open(ini, "w") as f:
        f.write(SERVER.format(tmp=tmp, crypto=crypto_opts))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cc.server", ini],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        logfile = os.path.join(tmp, "bench.log")
        deadline = time.monotonic() + 10
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if os.path.exists(logfile):
                m = re.search(r"listening on (\S+)", open(logfile).read())
                endpoint = m and m.group(1)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(endpoint)
        msgs = [CCMessage.build("log.info", fields(i)) for i in range(n)]
        if presign:
            msgs = [sender.seal(m) for m in msgs]
        started = time.perf_counter()
        for msg in msgs:
            if sender is not None and not presign:
                msg = sender.seal(msg)
            sock.send_multipart(msg.frames)
        infofile = os.path.join(tmp, "bench.info")
        while handled(infofile) < n:
            if time.perf_counter() - started > 120:
                raise SystemExit("server handled only %d of %d" % (handled(infofile), n))
            time.sleep(0.01)
        taken = time.perf_counter() - started
        sock.close(0)
        ctx.term()
        if "(signed by user1)" not in open(logfile).read() and sender is not None:
            raise SystemExit("messages were not verified")
        return n / taken
    finally:
        proc.terminate()
        proc.wait(10)


def micro(pki, n=300):
    sender = CryptoContext(keystore=pki.dir, sign_name="user1")
    receiver = CryptoContext(keystore=pki.dir, verify_ca=["ca"], time_window=600)
    sign_us, verify_us = [], []
    for _ in range(3):
        plain = [CCMessage.build("log.info", fields(i)) for i in range(n)]
        t = time.perf_counter()
        sealed = [sender.seal(m) for m in plain]
        sign_us.append((time.perf_counter() - t) / n * 1e6)
        frames = [list(m.frames) for m in sealed]
        t = time.perf_counter()
        for f in frames:
            receiver.open(CCMessage(f))
        verify_us.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(sign_us), statistics.median(verify_us)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cc-bench signed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="ccbench-")
    try:
        pki = PKI(os.path.join(tmp, "keys"))
        verify_opts = "cms-keystore = %s\ncms-verify-ca = ca\ncms-time-window = 600\n" % pki.dir
        sender = CryptoContext(keystore=pki.dir, sign_name="user1")
        unsigned = run(tmp, args.messages, "", None, False)
        signed = run(tmp, args.messages, verify_opts, sender, False)
        presigned = run(tmp, args.messages, verify_opts, sender, True)
        sign_us, verify_us = micro(pki)
        print("messages: %d log.info, RSA-2048 signer, SHA-256" % args.messages)
        print("unsigned:            %8.0f msg/s" % unsigned)
        print("signed at client:    %8.0f msg/s  (%.3f of unsigned)" % (signed, signed / unsigned))
        print(
            "pre-signed (server): %8.0f msg/s  (%.3f of unsigned)"
            % (presigned, presigned / unsigned)
        )
        print("verify: %.0f us/msg, sign: %.0f us/msg (in process)" % (verify_us, sign_us))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

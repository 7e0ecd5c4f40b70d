"""Signed against unsigned messages, and the signing path against OpenSSL's own speed.

    cc-bench signed [--messages N] [--rounds R] [--seconds S]

Makes a throwaway PKI with ``openssl`` (test/pki.py): an RSA-2048 and a P-256
signer.  In the same run:

* the physical reference: ``openssl speed -seconds S rsa2048 ecdsap256``;
* in process, per key type: ``CryptoContext.seal`` (sign) and ``CryptoContext.open``
  (verify, with the replay cache and a time window) of one ``log.info``, as a
  ratio to OpenSSL's raw sign and verify (median of 5 rounds);
* through an end-service cc-server whose ``log`` route goes to ``locallogger``
  (which parses, and where configured verifies, every body), N messages:
  unsigned and pre-signed (signed before the clock starts: the server's
  verifying throughput alone), RSA and P-256, alternated for R rounds; then
  signed at the client as they are sent; and P-256 again with a ``policy`` that
  admits the signer (the cost of authorization by signer, ``cc.policy``), which
  is also timed in process against a P-256 verification.
  Throughput is N over the time until
  the server answers an echo request sent after them; it and the server's CPU
  time per message are given as ratios to unsigned (medians).
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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from cctools.bench.scenarios import source_tree_module
from cc.crypto import CryptoContext
from cc.crypto.certs import load_private_key
from cc.message import CCMessage
from cc.policy import Policy, Signers

PKI = source_tree_module("pki").PKI

#: the bench's policy for log.*: two alternatives, the signer passes the second
POLICY_RULE = "OU=ops; O=cc test, CN=ec*"

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
echo = h:echo

[h:log]
handler = locallogger

[h:echo]
handler = echo
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


def cpu_seconds(pid):
    """User and system CPU time of process ``pid`` so far (Linux)."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def run(tmp, crypto_opts, msgs, sender=None):
    """Send ``msgs`` (signed as they go by ``sender``, if given) to a fresh end-service;
    return (messages per second, server CPU microseconds per message).

    The clock stops at the reply to an echo request sent last on the same
    connection: the server handles one connection's messages in order.
    """
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
    ctx = zmq.Context()
    try:
        logfile = os.path.join(tmp, "bench.log")
        deadline = time.monotonic() + 10
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if os.path.exists(logfile):
                m = re.search(r"listening on (\S+)", open(logfile).read())
                endpoint = m and m.group(1)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(endpoint)
        last = CCMessage.build("echo.request", {"target": "done"})
        cpu = cpu_seconds(proc.pid)
        started = time.perf_counter()
        for msg in msgs:
            if sender is not None:
                msg = sender.seal(msg)
            sock.send_multipart(msg.frames)
        sock.send_multipart(last.frames)
        if not sock.poll(120000):
            raise SystemExit("no reply from the server")
        taken = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu
        n = len(msgs)
        infofile = os.path.join(tmp, "bench.info")
        while handled(infofile) < n:
            if time.perf_counter() - started > 120:
                raise SystemExit("server handled only %d of %d" % (handled(infofile), n))
            time.sleep(0.05)
        verified = "(signed by " in open(logfile).read()
        if verified != bool(crypto_opts):
            raise SystemExit("messages were %sverified" % ("" if verified else "not "))
        return n / taken, cpu / n * 1e6
    finally:
        ctx.destroy(0)
        proc.terminate()
        proc.wait(10)


def openssl_speed(seconds):
    """{"rsa": (sign us, verify us), "ec": (...)} from ``openssl speed``."""
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "rsa2048", "ecdsap256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    patterns = {"rsa": r"^rsa 2048 bits .*", "ec": r"^ *256 bits ecdsa \(nistp256\).*"}
    for key, pattern in patterns.items():
        line = re.search(pattern, out, re.M).group(0)
        sign_rate, verify_rate = (float(x) for x in line.split()[-2:])
        found[key] = (1e6 / sign_rate, 1e6 / verify_rate)
    return found


def primitive(pki, signer):
    """(sign, verify) of 100 bytes with ``signer``'s key through cryptography, SHA-256."""
    key = load_private_key(pki.key(signer))
    public = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        args = (ec.ECDSA(hashes.SHA256()),)
    else:
        args = (padding.PKCS1v15(), hashes.SHA256())
    data = b"x" * 100
    signature = key.sign(data, *args)
    return (lambda: key.sign(data, *args)), (lambda: public.verify(signature, data, *args))


def micro(pki, signer, ca, n=300):
    """Medians of 5 rounds, in microseconds of this process's CPU time: seal, open, and the
    raw sign and verify of the same key measured in the same rounds.

    CPU time, not the clock, because ``openssl speed`` divides by user CPU time too:
    on a loaded machine the clock also counts time the process waited for a core.
    """
    sender = CryptoContext(keystore=pki.dir, sign_name=signer)
    receiver = CryptoContext(keystore=pki.dir, verify_ca=[ca], time_window=600)
    raw_sign, raw_verify = primitive(pki, signer)
    rounds = []
    for _ in range(5):
        plain = [CCMessage.build("log.info", fields(i)) for i in range(n)]
        t0 = time.process_time()
        sealed = [sender.seal(m) for m in plain]
        t1 = time.process_time()
        for _ in range(n):
            raw_sign()
        t2 = time.process_time()
        frames = [list(m.frames) for m in sealed]
        t3 = time.process_time()
        for f in frames:
            receiver.open(CCMessage(f))
        t4 = time.process_time()
        for _ in range(n):
            raw_verify()
        t5 = time.process_time()
        rounds.append([(t1 - t0) / n, (t2 - t1) / n, (t4 - t3) / n, (t5 - t4) / n])
    return [statistics.median(r[i] for r in rounds) * 1e6 for i in range(4)]


def policy_check(pki, signer, ca, n=20000):
    """Microseconds of one policy decision (the gate's ``policy``) on a verified signer:
    median of 5 rounds of ``n``."""
    sender = CryptoContext(keystore=pki.dir, sign_name=signer)
    receiver = CryptoContext(keystore=pki.dir, verify_ca=[ca])
    msg = CCMessage(sender.seal(CCMessage.build("log.info", fields(0))).frames)
    receiver.open(msg)
    rules = Policy("policy", {"log": Signers(POLICY_RULE)})
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            if rules.refusal("log.info", msg.signer):
                raise SystemExit("the policy refused its signer")
        rounds.append((time.perf_counter() - t0) / n)
    return statistics.median(rounds) * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cc-bench signed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3, help="for each openssl speed test")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="ccbench-")
    try:
        pki = PKI(os.path.join(tmp, "keys"))
        pki.make_ec()
        raw = openssl_speed(args.seconds)
        print(
            "in process, one log.info (SHA-256), against openssl speed in this run and"
            " against the same key's raw operation through cryptography in the same rounds:"
        )
        for key, signer, label in (("rsa", "user1", "RSA-2048"), ("ec", "ec1", "P-256")):
            sign_us, prim_sign, verify_us, prim_verify = micro(pki, signer, "ca")
            speed_sign, speed_verify = raw[key]
            for what, us, speed, prim in (
                ("sign", sign_us, speed_sign, prim_sign),
                ("verify", verify_us, speed_verify, prim_verify),
            ):
                print(
                    "  %-8s %-6s %4.0f us = %4.2f x openssl speed (%3.0f us), %4.2f x raw (%3.0f)"
                    % (label, what, us, us / speed, speed, us / prim, prim)
                )
        verify_opts = "cms-keystore = %s\ncms-verify-ca = ca\ncms-time-window = 600\n" % pki.dir
        rsa = CryptoContext(keystore=pki.dir, sign_name="user1")
        ec = CryptoContext(keystore=pki.dir, sign_name="ec1")
        plain = [CCMessage.build("log.info", fields(i)) for i in range(args.messages)]
        cases = {"RSA-2048": [rsa.seal(m) for m in plain], "P-256": [ec.seal(m) for m in plain]}
        policy_us = policy_check(pki, "ec1", "ca")
        print(
            "  policy   check  %5.2f us = %.3f of a P-256 verify in process (%s)"
            % (policy_us, policy_us / verify_us, POLICY_RULE)  # verify_us: P-256's, the last
        )
        policy_opts = verify_opts + "policy = policy\n[policy]\nlog = %s\n" % POLICY_RULE
        rates = {"unsigned": [], "RSA-2048": [], "P-256": [], "P-256 + policy": []}
        for _ in range(args.rounds):  # alternated: a shared machine's load hits all alike
            rates["unsigned"].append(run(tmp, "", plain))
            for label, msgs in cases.items():
                rates[label].append(run(tmp, verify_opts, msgs))
            rates["P-256 + policy"].append(run(tmp, policy_opts, cases["P-256"]))
        base_rate = statistics.median(r for r, _ in rates["unsigned"])
        base_cpu = statistics.median(c for _, c in rates["unsigned"])
        print(
            "end-service (locallogger), %d log.info, median of %d rounds; unsigned %.0f msg/s,"
            " server CPU %.0f us/msg:" % (args.messages, args.rounds, base_rate, base_cpu)
        )
        for label in list(cases) + ["P-256 + policy"]:
            rate = statistics.median(r for r, _ in rates[label])
            cpu = statistics.median(c for _, c in rates[label])
            print(
                "  pre-signed %-8s  %6.0f msg/s = %.2f of unsigned; CPU %4.0f us/msg (%.2f)"
                % (label, rate, rate / base_rate, cpu, base_cpu / cpu)
            )
        for label, sender in (("RSA-2048", rsa), ("P-256", ec)):
            rate, _ = run(tmp, verify_opts, plain, sender)
            print(
                "  signed at client %-8s %5.0f msg/s = %.2f of unsigned (1 client)"
                % (label, rate, rate / base_rate)
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

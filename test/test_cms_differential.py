"""cc against ``openssl cms -verify``: of seeded damaged copies of good RSA and P-256
signatures, cc accepts none that openssl refuses, and answers every one.

A few hundred mutants in ``make test``; ``CC_TEST_LONG=1`` (``make test-long``) runs
several thousand, ``CC_TEST_SEED=n`` another sequence.  A mutant cc refuses needs no
openssl run (the property is one way), so only what cc accepts is handed to openssl.
"""

import json
import os
import shutil
import time
import unittest

from cmsedit import mutants
from pki import PKI

from cc.crypto import CryptoContext
from cc.message import CCMessage, MessageError

LONG = bool(os.environ.get("CC_TEST_LONG"))
SEED = int(os.environ.get("CC_TEST_SEED", "22"))
#: mutants per signature kind
COUNT = 1000 if LONG else 80

pki: PKI = None  # type: ignore[assignment]


def setUpModule():
    global pki
    pki = PKI()
    pki.make_ec()


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


class TestDifferential(unittest.TestCase):
    def check_kind(self, signer, *sign_args, detached=True):
        body = json.dumps({"req": "echo.request", "time": time.time(), "hostname": "h1"}).encode()
        good = pki.sign(signer, body, *sign_args, detached=detached)
        verifier = CryptoContext(keystore=pki.dir, verify_ca=["ca"], time_window=3600)
        verifier.open(CCMessage([b"Q1", b"", b"echo.request", body, good]))  # the unharmed one
        accepted = {}
        for name, data in mutants(good, SEED, COUNT):
            # a context of its own: the replay cache must not hide what verification accepts
            ctx = CryptoContext(keystore=pki.dir, verify_ca=["ca"], time_window=3600)
            msg = CCMessage([b"Q1", b"", b"echo.request", body, data])
            try:
                ctx.open(msg)
            except MessageError:
                continue  # answered: a refusal with a code
            accepted[name] = data
        refused_by_openssl = []
        for name, data in accepted.items():
            try:
                pki.verify(data, body, tool="cms")
            except RuntimeError:
                refused_by_openssl.append(name)
        self.assertEqual(refused_by_openssl, [], "cc accepts what openssl refuses (seed %d)" % SEED)
        return accepted

    def test_rsa_signed_attributes(self):
        self.check_kind("user1")

    def test_rsa_without_attributes_by_key_identifier(self):
        self.check_kind("user1", "-noattr", "-keyid")

    def test_rsa_with_an_intermediate_carried(self):
        self.check_kind("user1", "-certfile", pki.crt("ca"))

    def test_p256(self):
        self.check_kind("ec1")

    def test_rsa_attached(self):
        self.check_kind("user1", detached=False)

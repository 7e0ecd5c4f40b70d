"""cc.policy: signer specs, the most specific rule, host identity; a real certificate's fields."""

import os
import shutil
import tempfile
import unittest

import skytools
from pki import PKI, openssl
from skytools.config import ConfigError

from cc.crypto.certs import load_certificate
from cc.policy import HostSigners, Policy, Signers, foreign_host, signer_host

ALICE = {"CN": "ops-alice", "O": "Example", "OU": "operators", "subject": "Common Name: ops-alice",
         "issuer": "Common Name: Operators CA", "serial": 4660, "fingerprint": "ab12cd"}
HOST1 = {"CN": "host1", "O": "Example", "subject": "Common Name: host1",
         "issuer": "Common Name: Hosts CA", "serial": 7, "fingerprint": "ffee"}


def policy(text):
    """A Policy from an INI section ``[policy]`` with ``text``."""
    path = tempfile.mktemp(suffix=".ini")
    with open(path, "w", encoding="utf8") as f:
        f.write("[main]\npolicy = policy\n[policy]\n" + text)
    try:
        return Policy.from_section(skytools.Config("main", path), "policy")
    finally:
        os.unlink(path)


class TestSigners(unittest.TestCase):
    def test_alternatives_conditions_patterns(self):
        spec = Signers("OU=operators; CN=app-*, issuer=*Services CA*")
        self.assertTrue(spec.admit(ALICE))
        self.assertFalse(spec.admit(HOST1))
        self.assertTrue(spec.admit({"CN": "app-billing", "issuer": "Common Name: Services CA"}))
        self.assertFalse(spec.admit({"CN": "app-billing", "issuer": "Common Name: Hosts CA"}))
        self.assertFalse(spec.admit({"CN": "App-billing", "issuer": "Common Name: Services CA"}))

    def test_fingerprint_serial_any_nobody_unsigned(self):
        self.assertTrue(Signers("fingerprint=AB:12:CD").admit(ALICE))
        self.assertTrue(Signers("serial=4660").admit(ALICE))
        self.assertTrue(Signers("*").admit(HOST1))
        self.assertFalse(Signers("").admit(ALICE))
        for unsigned in (None, {}):
            self.assertFalse(Signers("*").admit(unsigned))

    def test_bad_conditions_are_refused(self):
        for text in ("CN", "XX=a", "CN=", "CN=a, =b", "CN=a, XX=b"):
            with self.assertRaises(ValueError, msg=text):
                Signers(text)


class TestPolicy(unittest.TestCase):
    def test_most_specific_dotted_key_decides(self):
        rules = policy("task = *\ntask.send = OU=operators\ndb.confdb.set_config = nobody=x\n"
                       "* = CN=host*\n".replace("nobody=x", "OU=admins"))  # fmt: skip
        self.assertEqual(rules.refusal("task.register", HOST1), "")
        self.assertIn("[policy] task.send", rules.refusal("task.send.t1", HOST1))
        self.assertEqual(rules.refusal("task.send.t1", ALICE), "")
        self.assertIn("[policy] db.confdb.set_config", rules.refusal("db.confdb.set_config", ALICE))
        self.assertEqual(rules.refusal("pub.stats", HOST1), "")  # the default
        self.assertIn("[policy] *", rules.refusal("pub.stats", ALICE))
        self.assertIn("unsigned", rules.refusal("task.send.x", None))

    def test_a_name_no_key_covers_is_allowed(self):
        rules = policy("task.send = OU=operators\n")
        self.assertEqual(rules.refusal("log.info", None), "")
        self.assertEqual(rules.refusal("tasks.send", HOST1), "")  # a prefix is whole components

    def test_bad_sections_are_config_errors(self):
        for text in ("task..send = *\n", "task.send = CN\n"):
            with self.assertRaises(ConfigError, msg=text):
                policy(text)

    def test_host_identity_is_the_cn(self):
        self.assertEqual(signer_host(HOST1), "host1")
        self.assertIsNone(signer_host(None))
        self.assertEqual(foreign_host(HOST1, "host1"), "")
        self.assertEqual(foreign_host(None, "host1"), "")  # nothing verified, nothing bound
        self.assertIn("may act only as host host1, not host2", foreign_host(HOST1, "host2"))

    def test_host_signers_let_a_relay_act_for_other_hosts(self):
        relays = HostSigners("hs", {"fleet-*": Signers("CN=host1")})
        self.assertEqual(foreign_host(HOST1, "fleet-7", relays), "")
        self.assertIn("not db-7", foreign_host(HOST1, "db-7", relays))
        self.assertIn("not fleet-7", foreign_host(ALICE, "fleet-7", relays))


class TestRealCertificate(unittest.TestCase):
    """The fields a policy matches, as cc reads them, against what openssl says."""

    def setUp(self):
        self.pki = PKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)

    def test_fingerprint_issuer_serial_subject(self):
        info = load_certificate(self.pki.crt("host2")).info()
        out = openssl("x509", "-in", self.pki.crt("host2"), "-noout", "-fingerprint", "-sha256",
                      "-serial").decode()  # fmt: skip
        fingerprint = out.split("Fingerprint=")[1].split()[0]
        serial = int(out.split("serial=")[1].split()[0], 16)
        self.assertEqual(info["fingerprint"], fingerprint.replace(":", "").lower())
        self.assertEqual(info["serial"], serial)
        self.assertTrue(Signers("fingerprint=" + fingerprint).admit(info))
        self.assertTrue(Signers("CN=host2, O=cc test, issuer=*Name: ca,*").admit(info))
        self.assertFalse(Signers("issuer=*ca2*").admit(info))
        self.assertTrue(Signers("issuer=*ca2*").admit(load_certificate(
            self.pki.crt("stranger")).info()))  # fmt: skip

"""CryptoContext against openssl: what openssl signs and encrypts is accepted, what is wrong
is rejected with the right code, and what cc signs and encrypts openssl verifies and decrypts."""

import datetime
import hashlib
import json
import shutil
import time
import unittest

import cmsedit
from harness import wait_for
from pki import PKI, openssl
from skytools.config import ConfigError

from cc.crypto import CryptoContext, ReplayCache
from cc.crypto.cms import CMSError, VerifyCache, verify
from cc.message import CCMessage, MessageError

pki: PKI = None  # type: ignore[assignment]


def setUpModule():
    global pki
    pki = PKI()
    pki.make_chains()
    pki.make_ec()
    pki.make_leaf("revokee", "ca")
    pki.make_crl("empty.crl")
    pki.revoke("revokee")
    pki.make_crl("revoked.crl")


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


def body_bytes(msgtype="echo.request", **fields):
    body = {"req": msgtype, "time": time.time(), "hostname": "h1", "target": "t"}
    body.update(fields)
    return json.dumps(body).encode()


def message(body, signature=b"", blob=None, msgtype="echo.request"):
    frames = [b"Q1", b"", msgtype.encode(), body, signature]
    if blob is not None:
        frames.append(blob)
    return CCMessage(frames)


def verifier(**kw):
    kw.setdefault("verify_ca", ["ca"])
    return CryptoContext(keystore=pki.dir, **kw)


def utc(seconds_from_now):
    """``YYYYMMDDHHMMSSZ``, as openssl takes dates."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (now + datetime.timedelta(seconds=seconds_from_now)).strftime("%Y%m%d%H%M%SZ")


class RejectCase(unittest.TestCase):
    def assertRejected(self, ctx, msg, code):
        with self.assertRaises(MessageError) as cm:
            ctx.open(msg)
        self.assertEqual(cm.exception.code, code, cm.exception.msg)
        return cm.exception

    def assertOpensslRefuses(self, signature, body, ca="ca", crl=""):
        """openssl, the reference, refuses the same signature."""
        self.assertRaises(RuntimeError, pki.verify, signature, body, ca, crl)


class TestVerify(RejectCase):
    def test_openssl_cms_signature_accepted_with_signer(self):
        body = body_bytes()
        msg = message(body, pki.sign("user1", body))
        self.assertEqual(verifier().open(msg)["target"], "t")
        self.assertEqual(msg.signer["CN"], "user1")
        self.assertEqual(msg.signer["O"], "cc test")
        self.assertIn("Common Name: ca", msg.signer["issuer"])
        out = openssl("x509", "-in", pki.crt("user1"), "-noout", "-fingerprint", "-sha256")
        fingerprint = out.decode().split("=")[1].strip().replace(":", "").lower()
        self.assertEqual(msg.signer["fingerprint"], fingerprint)

    def test_openssl_smime_signature_accepted(self):
        body = body_bytes()
        verifier().open(message(body, pki.smime_sign("user1", body)))

    def test_variants_accepted(self):
        for extra in (["-noattr"], ["-md", "sha384"], ["-md", "sha512"], ["-keyid"], ["-nocerts"]):
            body = body_bytes(target=" ".join(extra))
            sig = pki.sign("user1", body, *extra)
            if "-nocerts" in extra:
                # without the certificate in the signature there is nothing to check it with
                self.assertRaises(MessageError, verifier().open, message(body, sig))
                continue
            self.assertEqual(verifier().open(message(body, sig))["target"], " ".join(extra))

    def test_outside_the_allow_list_refused(self):
        """RSA PKCS#1 v1.5 and ECDSA with SHA-256/384/512 only: not SHA-1 (the original's
        M2Crypto on OpenSSL < 1.1), SHA-224 or RSA-PSS, though openssl accepts them."""
        for extra in (["-md", "sha1"], ["-md", "sha224"], ["-keyopt", "rsa_padding_mode:pss"]):
            body = body_bytes()
            sig = pki.sign("user1", body, *extra)
            pki.verify(sig, body, tool="cms")
            error = self.assertRejected(verifier(), message(body, sig), "bad-signature")
            self.assertIn("not allowed", error.msg)

    def test_unsigned_rejected(self):
        self.assertRejected(verifier(), message(body_bytes()), "unsigned")

    def test_tampered_body_rejected(self):
        body = body_bytes()
        sig = pki.sign("user1", body)
        self.assertRejected(verifier(), message(body.replace(b'"t"', b'"u"'), sig), "bad-signature")

    def test_tampered_signature_rejected(self):
        body = body_bytes()
        sig = bytearray(pki.sign("user1", body, "-noattr"))
        sig[-5] ^= 1  # in the RSA signature value, the last field
        self.assertRejected(verifier(), message(body, bytes(sig)), "bad-signature")

    def test_garbage_signature_rejected(self):
        self.assertRejected(verifier(), message(body_bytes(), b"\x30\x03xyz"), "bad-signature")

    def test_wrong_ca_rejected(self):
        body = body_bytes()
        self.assertRejected(verifier(), message(body, pki.sign("stranger", body)), "untrusted")
        verifier(verify_ca=["ca2"]).open(message(body, pki.sign("stranger", body)))

    def test_expired_rejected(self):
        body = body_bytes()
        self.assertRejected(verifier(), message(body, pki.sign("expired", body)), "expired")

    def test_key_usage_rejected(self):
        body = body_bytes()
        self.assertRejected(verifier(), message(body, pki.sign("nosign", body)), "bad-cert")

    def test_signature_moved_to_other_type_rejected(self):
        body = body_bytes()
        msg = message(body, pki.sign("user1", body), msgtype="log.info")
        self.assertRejected(verifier(), msg, "hijacked")

    def test_time_window(self):
        ctx = verifier(time_window=60)
        for skew in (-120, 120):
            body = body_bytes(time=time.time() + skew)
            self.assertRejected(ctx, message(body, pki.sign("user1", body)), "stale")
        body = body_bytes(time=time.time() - 30)
        ctx.open(message(body, pki.sign("user1", body)))

    def test_replay_rejected_once_per_message(self):
        ctx = verifier(time_window=60)
        body = body_bytes()
        sig = pki.sign("user1", body)
        first = message(body, sig)
        ctx.open(first)
        ctx.open(first)  # a second handler on the same route: same verdict, not a replay
        self.assertRejected(ctx, message(body, sig), "replay")

    def test_blob_hash(self):
        blob = b"file contents\x00\xff"
        for kind, fn in (("SHA-1", hashlib.sha1), ("SHA-256", hashlib.sha256)):
            body = body_bytes(blob_hash="%s:%s" % (kind, fn(blob).hexdigest()))
            verifier().open(message(body, pki.sign("user1", body), blob))
        body = body_bytes(blob_hash="SHA-256:" + hashlib.sha256(b"other").hexdigest())
        self.assertRejected(verifier(), message(body, pki.sign("user1", body), blob), "blob-hash")
        body = body_bytes()
        self.assertRejected(verifier(), message(body, pki.sign("user1", body), blob), "blob-hash")
        body = body_bytes(blob_hash="MD5:00")
        self.assertRejected(verifier(), message(body, pki.sign("user1", body), blob), "blob-hash")
        body = body_bytes(blob_hash="SHA-1:00")
        self.assertRejected(verifier(), message(body, pki.sign("user1", body)), "blob-hash")


class TestChecks(RejectCase):
    """What ``openssl smime -verify [-crl_check]`` refuses, cc refuses."""

    def test_content_type_other_than_data_refused(self):
        body = body_bytes()
        sig = pki.sign("user1", body, "-econtent_type", "1.2.3.4")
        error = self.assertRejected(verifier(), message(body, sig), "bad-signature")
        self.assertIn("not data", error.msg)

    def test_ber_signature_refused(self):
        body = body_bytes()
        sig = pki.sign("user1", body, "-stream")  # indefinite lengths
        self.assertEqual(sig[1], 0x80)
        error = self.assertRejected(verifier(), message(body, sig), "bad-signature")
        self.assertIn("BER", error.msg)

    def test_chain_through_intermediate_ca(self):
        body = body_bytes()
        sig = pki.sign("viainter", body, "-certfile", pki.crt("inter"))
        verifier().open(message(body, sig))
        self.assertEqual(pki.verify(sig, body), body)
        # without the intermediate there is no chain
        self.assertRejected(verifier(), message(body, pki.sign("viainter", body)), "untrusted")

    def test_chain_through_non_ca_refused(self):
        body = body_bytes()
        sig = pki.sign("undernotca", body, "-certfile", pki.crt("notca"))
        error = self.assertRejected(verifier(), message(body, sig), "bad-cert")
        self.assertIn("not a CA", error.msg)
        self.assertOpensslRefuses(sig, body)

    def test_path_length_exceeded_refused(self):
        body = body_bytes()
        sig = pki.sign("deep", body, "-certfile", pki.crt("inter0"))
        error = self.assertRejected(verifier(verify_ca=["ca0"]), message(body, sig), "bad-cert")
        self.assertIn("intermediate", error.msg)
        self.assertOpensslRefuses(sig, body, "ca0")
        # pathlen:0 allows a leaf right below the CA
        verifier(verify_ca=["ca0"]).open(message(body, pki.sign("shallow", body)))

    def test_revoked_refused(self):
        crl = pki.path("revoked.crl")
        ctx = verifier(crl_files=["revoked.crl"])  # relative to the keystore
        body = body_bytes()
        sig = pki.sign("revokee", body)
        self.assertRejected(ctx, message(body, sig), "revoked")
        self.assertOpensslRefuses(sig, body, "ca", crl)
        ctx.open(message(body, pki.sign("user1", body)))
        verifier(crl_files=[pki.path("empty.crl")]).open(message(body, sig))

    def test_no_crl_for_the_signers_ca_refused(self):
        body = body_bytes()
        sig = pki.sign("stranger", body)
        ctx = verifier(verify_ca=["ca", "ca2"], crl_files=["empty.crl"])
        error = self.assertRejected(ctx, message(body, sig), "untrusted")
        self.assertIn("no CRL", error.msg)
        crl = pki.path("empty.crl")
        self.assertOpensslRefuses(sig, body, "ca2", crl)

    def test_crl_out_of_date_refused(self):
        crl = pki.make_crl(
            "old.crl", "ca", "-crl_lastupdate", utc(-7200), "-crl_nextupdate", utc(-3600)
        )
        body = body_bytes()
        sig = pki.sign("user1", body)
        error = self.assertRejected(verifier(crl_files=[crl]), message(body, sig), "untrusted")
        self.assertIn("not current", error.msg)
        self.assertOpensslRefuses(sig, body, "ca", crl)

    def test_crl_config(self):
        self.assertRaises(ConfigError, verifier, crl_files=["nosuch.crl"])
        self.assertRaises(ConfigError, verifier, crl_files=["user1.crt"])
        self.assertRaises(
            ConfigError, CryptoContext, keystore=pki.dir, sign_name="user1", crl_files=["empty.crl"]
        )


class TestBoundedWork(RejectCase):
    """Work before authentication is bounded: by the frame's size and the certificates
    carried, counted (parsed certificates) rather than timed."""

    def signature_with(self, junk, signer_last=False):
        body = body_bytes()
        tree = cmsedit.parse(pki.sign("user1", body))
        certs = cmsedit.certificates(tree).kids
        filler = [cmsedit.parse(cmsedit.der_of_pem(pki.crt("ca2")))] * junk
        certs[:] = filler + certs if signer_last else certs + filler
        return body, tree.encode()

    def test_certificate_flood_refused_before_any_is_parsed(self):
        body, sig = self.signature_with(10000)
        self.assertGreater(len(sig), 7000000)
        cache = VerifyCache()
        with self.assertRaises(CMSError) as cm:
            verify(sig, body, cache, max_size=len(sig))
        self.assertIn("more than 8 certificates", cm.exception.msg)
        self.assertEqual(cache.parsed, 0)
        error = self.assertRejected(verifier(), message(body, sig), "bad-signature")
        self.assertIn("larger than 65536 bytes", error.msg)

    def test_signer_parsed_first(self):
        body, sig = self.signature_with(3, signer_last=True)
        cache = VerifyCache()
        verify(sig, body, cache)
        self.assertEqual(list(cache.certs.values())[0].info()["CN"], "user1")
        self.assertEqual(cache.parsed, 2)  # the signer's, then ca2 (once, however often carried)

    def test_unsupported_curve_refused_with_a_code(self):
        pki.make_leaf("k160", "ca", algorithm="EC", option="ec_paramgen_curve:secp160r1")
        body = body_bytes()
        sig = pki.sign("k160", body)
        pki.verify(sig, body, tool="cms")
        error = self.assertRejected(verifier(), message(body, sig), "bad-cert")
        self.assertIn("unsupported public key", error.msg)

    def test_weak_keys_refused(self):
        """RSA under 2048 bits, ECDSA off P-256/384/521: refused, though openssl's default
        security level takes RSA-1024 and secp256k1."""
        pki.make_leaf("rsa1024", "ca", option="rsa_keygen_bits:1024")
        pki.make_leaf("k1", "ca", algorithm="EC", option="ec_paramgen_curve:secp256k1")
        for signer, what in (("rsa1024", "1024 bits"), ("k1", "secp256k1")):
            body = body_bytes()
            sig = pki.sign(signer, body)
            pki.verify(sig, body, tool="cms")
            error = self.assertRejected(verifier(), message(body, sig), "bad-cert")
            self.assertIn(what, error.msg)

    def test_signature_caps_are_options(self):
        body = body_bytes()
        sig = pki.sign("user1", body, "-certfile", pki.crt("ca"))
        self.assertRejected(verifier(max_certificates=1), message(body, sig), "bad-signature")
        self.assertRejected(verifier(max_signature_size=1000), message(body, sig), "bad-signature")
        verifier(max_certificates=2).open(message(body, sig))


class TestCaches(RejectCase):
    """Verdicts and parsed certificates are kept per signer: never what the full check refuses."""

    def test_certificate_expiring_while_cached(self):
        pki.make_expired("shortlived", "ca", start=utc(-60), end=utc(3))
        ctx = verifier()

        def signed():
            body = body_bytes(target=str(time.time()))
            return message(body, pki.sign("shortlived", body))

        ctx.open(signed())
        ctx.open(signed())  # from the cache
        not_after = time.time() + 3
        wait_for(lambda: time.time() > not_after + 1, 10, "the certificate to expire")
        self.assertRejected(ctx, signed(), "expired")

    def test_crl_running_out_while_cached(self):
        crl = pki.make_crl("short.crl", "ca", "-crl_nextupdate", utc(3))
        ctx = verifier(crl_files=[crl])
        body = body_bytes()
        ctx.open(message(body, pki.sign("user1", body)))
        next_update = time.time() + 3
        wait_for(lambda: time.time() > next_update + 1, 10, "the CRL to run out")
        body = body_bytes(target="later")
        self.assertRejected(ctx, message(body, pki.sign("user1", body)), "untrusted")

    def test_other_signer_reusing_a_cached_certificate(self):
        ctx = verifier()
        body = body_bytes()
        user1 = pki.sign("user1", body, "-noattr")
        ctx.open(message(body, user1))
        # user1's signed-data with stranger's signature value (both RSA-2048, value last)
        stranger = pki.sign("stranger", body, "-noattr")
        forged = user1[:-256] + stranger[-256:]
        self.assertRejected(ctx, message(body, forged), "bad-signature")
        # stranger's signature carrying user1's certificate too
        carried = pki.sign("stranger", body, "-certfile", pki.crt("user1"))
        self.assertRejected(ctx, message(body, carried), "untrusted")
        # another host of the same CA: its own name, not the cached one
        msg = message(body, pki.sign("host2", body))
        ctx.open(msg)
        self.assertEqual(msg.signer["CN"], "host2")

    def test_damaged_signatures_only_rejected(self):
        """Every truncation and every flipped byte of a signature whose signer is cached gives
        a clean rejection or, in fields no signature covers (digestAlgorithms), a pass; a
        truncation or a flip in the signature value itself is always refused."""
        ctx = verifier()
        body = body_bytes()
        sig = pki.sign("user1", body)
        ctx.open(message(body, sig))
        value_at = len(sig) - 256  # RSA-2048: the signature value ends the DER
        for i in range(len(sig)):
            flipped = sig[:i] + bytes([sig[i] ^ 0x41]) + sig[i + 1 :]
            for damaged, must_refuse in ((sig[:i], True), (flipped, i >= value_at)):
                try:
                    ctx.open(message(body, damaged))
                except MessageError:
                    continue
                self.assertFalse(must_refuse, "accepted with byte %d damaged" % i)

    def test_new_context_keeps_no_verdict(self):
        """A reload (SIGHUP) makes a new context: what the old one accepted is checked again."""
        body = body_bytes()
        verifier().open(message(body, pki.sign("revokee", body)))
        revoking = verifier(crl_files=["revoked.crl"])
        self.assertRejected(revoking, message(body, pki.sign("revokee", body)), "revoked")
        other_ca = verifier(verify_ca=["ca2"])
        self.assertRejected(other_ca, message(body, pki.sign("revokee", body)), "untrusted")


class TestECDSA(RejectCase):
    """P-256 signers, both ways with openssl."""

    def test_openssl_ec_signatures_accepted(self):
        body = body_bytes()
        msg = message(body, pki.sign("ec1", body))  # EC leaf of the RSA CA
        verifier().open(msg)
        self.assertEqual(msg.signer["CN"], "ec1")
        verifier(verify_ca=["ecca"]).open(message(body, pki.smime_sign("ec2", body)))
        self.assertRejected(verifier(), message(body, pki.sign("ec2", body)), "untrusted")

    def test_cc_ec_signature_verified_by_openssl(self):
        ctx = CryptoContext(keystore=pki.dir, sign_name="ec2")
        msg = ctx.seal(CCMessage.build("log.info", {"log_msg": "x"}))
        for tool in ("smime", "cms"):
            verified = pki.verify(msg.signature, msg.body_bytes, "ecca", tool=tool)
            self.assertEqual(verified, msg.body_bytes)
        tampered = msg.body_bytes.replace(b'"x"', b'"y"')
        self.assertOpensslRefuses(msg.signature, tampered, "ecca")
        verifier(verify_ca=["ecca"]).open(CCMessage(list(msg.frames)))

    def test_ec_signed_and_encrypted(self):
        sender = CryptoContext(keystore=pki.dir, sign_name="ec1", encrypt_name="server")
        msg = sender.seal(CCMessage.build("db.q", {"args": [2]}))
        body = verifier(decrypt_name="server").open(CCMessage(list(msg.frames)))
        self.assertEqual(body["args"], [2])
        signed = pki.decrypt("server", msg.signature)
        self.assertEqual(json.loads(pki.verify(signed, None))["args"], [2])

    def test_ec_recipient_refused_at_config(self):
        self.assertRaises(
            ConfigError, CryptoContext, keystore=pki.dir, sign_name="user1", encrypt_name="ec1"
        )


class TestDecrypt(unittest.TestCase):
    def decryptor(self):
        return verifier(decrypt_name="server")

    def sealed(self, recipient="server", signer="user1", extra=(), body=None):
        body = body or body_bytes()
        signed = pki.sign(signer, body, detached=False)
        return message(b"ENC1", pki.encrypt(recipient, signed, *extra))

    def test_openssl_envelope_accepted(self):
        for extra in ((), ("-aes256",), ("-aes192",), ("-keyopt", "rsa_padding_mode:oaep")):
            msg = self.sealed(extra=extra)
            self.assertEqual(self.decryptor().open(msg)["target"], "t")
            self.assertEqual(msg.signer["CN"], "user1")

    def test_openssl_smime_envelope_accepted(self):
        body = body_bytes()
        signed = openssl(
            "smime",
            "-sign",
            "-nodetach",
            "-binary",
            "-outform",
            "DER",
            "-signer",
            pki.crt("user1"),
            "-inkey",
            pki.key("user1"),
            data=body,
        )
        env = openssl(
            "smime",
            "-encrypt",
            "-aes128",
            "-binary",
            "-outform",
            "DER",
            pki.crt("server"),
            data=signed,
        )
        self.decryptor().open(message(b"ENC1", env))

    def test_other_recipient_rejected(self):
        with self.assertRaises(MessageError) as cm:
            self.decryptor().open(self.sealed(recipient="host2"))
        self.assertEqual(cm.exception.code, "undecryptable")

    def test_untrusted_signer_inside_rejected(self):
        with self.assertRaises(MessageError) as cm:
            self.decryptor().open(self.sealed(signer="stranger"))
        self.assertEqual(cm.exception.code, "untrusted")

    def test_plain_message_rejected_when_decrypting(self):
        body = body_bytes()
        with self.assertRaises(MessageError) as cm:
            self.decryptor().open(message(body, pki.sign("user1", body)))
        self.assertEqual(cm.exception.code, "unencrypted")

    def test_encrypted_without_decrypt_key_rejected(self):
        with self.assertRaises(MessageError) as cm:
            verifier().open(self.sealed())
        self.assertEqual(cm.exception.code, "undecryptable")

    def test_corrupt_envelope_rejected(self):
        msg = self.sealed()
        env = bytearray(msg.signature)
        env[-3] ^= 0x55
        with self.assertRaises(MessageError) as cm:
            self.decryptor().open(message(b"ENC1", bytes(env)))
        self.assertIn(cm.exception.code, ("undecryptable", "bad-signature"))


class TestSeal(unittest.TestCase):
    """cc's signatures and envelopes, checked by openssl."""

    def test_signature_verifies_with_openssl(self):
        ctx = CryptoContext(keystore=pki.dir, sign_name="user1")
        msg = ctx.seal(CCMessage.build("log.info", {"log_msg": "x"}, route=[b"Q"]))
        self.assertEqual(msg.route, [b"Q"])
        self.assertEqual(pki.verify(msg.signature, msg.body_bytes), msg.body_bytes)
        tampered = msg.body_bytes.replace(b'"x"', b'"y"')
        self.assertRaises(RuntimeError, pki.verify, msg.signature, tampered)
        self.assertRaises(RuntimeError, pki.verify, msg.signature, msg.body_bytes, ca="ca2")

    def test_blob_hash_added_and_covered(self):
        ctx = CryptoContext(keystore=pki.dir, sign_name="user1")
        blob = b"\x00blob"
        msg = ctx.seal(CCMessage.build("pub.infofile", {"filename": "f"}, blob=blob))
        body = json.loads(pki.verify(msg.signature, msg.body_bytes))
        self.assertEqual(body["blob_hash"], "SHA-256:" + hashlib.sha256(blob).hexdigest())
        self.assertEqual(msg.blob, blob)
        verifier().open(CCMessage(list(msg.frames)))

    def test_envelope_decrypts_with_openssl(self):
        ctx = CryptoContext(keystore=pki.dir, sign_name="user1", encrypt_name="server")
        plain = CCMessage.build("db.q", {"args": [1]})
        msg = ctx.seal(plain)
        self.assertEqual(msg.body_bytes, b"ENC1")
        signed = pki.decrypt("server", msg.signature)
        self.assertEqual(pki.verify(signed, None), plain.body_bytes)

    def test_round_trip(self):
        sender = CryptoContext(keystore=pki.dir, sign_name="user1", encrypt_name="server")
        receiver = verifier(decrypt_name="server", time_window=10)
        msg = sender.seal(CCMessage.build("db.q", {"args": [1]}, blob=b"b"))
        body = receiver.open(CCMessage(list(msg.frames)))
        self.assertEqual(body["args"], [1])


class TestConfig(unittest.TestCase):
    def test_bad_configs(self):
        for kw in (
            {"encrypt_name": "server"},
            {"verify_ca": ["nosuch"]},
            {"sign_name": "ca/../user1"},
            {"decrypt_name": "server"},
        ):
            self.assertRaises(ConfigError, CryptoContext, keystore=pki.dir, **kw)


class TestReplayCache(unittest.TestCase):
    def test_live_entries_kept_until_they_expire(self):
        cache = ReplayCache(maxsize=2)
        self.assertTrue(cache.add(b"a", 10, now=0))
        self.assertFalse(cache.add(b"a", 10, now=5))
        self.assertTrue(cache.add(b"b", 30, now=6))
        with self.assertRaises(MessageError) as cm:
            cache.add(b"c", 20, now=7)
        self.assertEqual(cm.exception.code, "replay-cache-full")
        self.assertFalse(cache.add(b"a", 10, now=7))  # still there: nothing was evicted
        self.assertTrue(cache.add(b"c", 20, now=10))  # "a" ended at 10
        self.assertEqual(len(cache), 2)
        self.assertFalse(cache.add(b"b", 30, now=29))
        self.assertTrue(cache.add(b"b", 40, now=30))

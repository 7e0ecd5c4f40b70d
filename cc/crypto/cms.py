"""CMS (PKCS#7) signed-data and enveloped-data, as ``openssl smime`` / ``openssl cms`` make them.

cryptography 38 (Debian 12) can sign PKCS#7 but can neither verify nor
decrypt it, so this is done here, with :mod:`cryptography` for the
primitives.  Covered:

* signed-data, detached or attached, with or without signed attributes, RSA
  (PKCS#1 v1.5 or PSS) and ECDSA signers identified by issuer and serial or by
  subject key identifier; the content type, signed or not, must be ``data``;
* enveloped-data with RSA key transport (PKCS#1 v1.5 or OAEP) and AES-CBC content.

The signed path runs on every message, so it does not build asn1crypto
trees: :func:`verify` walks the input with :mod:`cc.crypto.der` and checks
the sender's own bytes, and :class:`Signer` splices each signature into
parts encoded once per key.  Certificates and chains: :mod:`cc.crypto.certs`.
"""

import functools
import hashlib
import os
import time
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from asn1crypto import algos, cms, core
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cc.crypto import der
from cc.crypto.certs import HASHES, Certificate, CMSError, check_signature

__all__ = ["CMSError", "Signer", "VerifyCache", "verify", "envelope", "open_envelope"]

#: parsed certificates, and signature skeletons, kept by a verifier
CACHE_MAX = 1024

_OID_SIGNED_DATA = der.OID("1.2.840.113549.1.7.2")
_OID_DATA = der.OID("1.2.840.113549.1.7.1")
_OID_CONTENT_TYPE = der.OID("1.2.840.113549.1.9.3")
_OID_MESSAGE_DIGEST = der.OID("1.2.840.113549.1.9.4")
_OID_SIGNING_TIME = der.OID("1.2.840.113549.1.9.5")
_DIGESTS = {
    der.OID("1.3.14.3.2.26"): "sha1",
    der.OID("2.16.840.1.101.3.4.2.4"): "sha224",
    der.OID("2.16.840.1.101.3.4.2.1"): "sha256",
    der.OID("2.16.840.1.101.3.4.2.2"): "sha384",
    der.OID("2.16.840.1.101.3.4.2.3"): "sha512",
}
_VERSION_1 = der.tlv(der.INTEGER, b"\x01")
#: signed attributes: the type's encoding starts them; the content type is always this
_CONTENT_TYPE_HEAD = der.tlv(der.OID_TAG, _OID_CONTENT_TYPE)
_MESSAGE_DIGEST_HEAD = der.tlv(der.OID_TAG, _OID_MESSAGE_DIGEST)
_CONTENT_TYPE_DATA = der.tlv(
    der.SEQUENCE, _CONTENT_TYPE_HEAD + der.tlv(der.SET, der.tlv(der.OID_TAG, _OID_DATA))
)


#: the digest functions by name, called without ``hashlib.new``'s look-up by name
_HASH_NEW = {name: getattr(hashlib, name) for name in _DIGESTS.values()}


@functools.lru_cache(maxsize=8)
def _message_digest_head(size: int) -> bytes:
    """The message-digest attribute's encoding up to its digest of ``size`` bytes."""
    attr = der.tlv(
        der.SEQUENCE,
        _MESSAGE_DIGEST_HEAD + der.tlv(der.SET, der.tlv(der.OCTET_STRING, bytes(size))),
    )
    return attr[:-size]


def _message_digest(digest: bytes) -> bytes:
    """The message-digest attribute."""
    return _message_digest_head(len(digest)) + digest


# -- signing -----------------------------------------------------------------


class Signer:
    """Makes DER signed-data by one key and certificate (SHA-256, signed attributes).

    What is the same in every signature (identifiers, algorithms, the
    certificate) is encoded once here; :meth:`sign` adds the digest, the
    signing time and the signature value.  The result is what ``openssl cms
    -sign -binary -outform DER`` makes.
    """

    def __init__(self, cert: Certificate, key) -> None:  # type: ignore[no-untyped-def]
        if isinstance(key, rsa.RSAPrivateKey):
            sig_alg = "rsassa_pkcs1v15"
            pad, hash_alg = asympad.PKCS1v15(), hashes.SHA256()
            self._sign = lambda data: key.sign(data, pad, hash_alg)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            sig_alg = "sha256_ecdsa"
            scheme = ec.ECDSA(hashes.SHA256())
            self._sign = lambda data: key.sign(data, scheme)
        else:
            raise CMSError("bad-cert", "unsupported signing key type %s" % type(key).__name__)
        self.cert = cert
        digest_alg = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        sid = cms.IssuerAndSerialNumber(
            {"issuer": cert.asn1.issuer, "serial_number": cert.serial}
        ).dump()
        self._signer_head = _VERSION_1 + sid + digest_alg
        self._sig_alg = algos.SignedDigestAlgorithm({"algorithm": sig_alg}).dump()
        self._digest_algs = der.tlv(der.SET, digest_alg)
        self._detached = der.tlv(der.SEQUENCE, der.tlv(der.OID_TAG, _OID_DATA))
        self._certificates = der.tlv(der.CONTEXT_0, cert.der)
        self._time: Tuple[int, bytes] = (-1, b"")

    def _signing_time(self) -> bytes:
        """The signing-time attribute (UTCTime, as openssl), encoded once a second."""
        now = int(time.time())
        if self._time[0] != now:
            stamp = time.strftime("%y%m%d%H%M%SZ", time.gmtime(now)).encode("ascii")
            attr = der.tlv(
                der.SEQUENCE,
                der.tlv(der.OID_TAG, _OID_SIGNING_TIME)
                + der.tlv(der.SET, der.tlv(der.UTC_TIME, stamp)),
            )
            self._time = (now, attr)
        return self._time[1]

    def sign(self, content: bytes, detached: bool = True) -> bytes:
        """DER signed-data over ``content``, which is carried inside unless ``detached``."""
        digest = _message_digest(hashlib.sha256(content).digest())
        # a DER SET OF is sorted by encoding
        attrs = b"".join(sorted((_CONTENT_TYPE_DATA, self._signing_time(), digest)))
        signature = self._sign(der.tlv(der.SET, attrs))
        signer_info = der.tlv(
            der.SEQUENCE,
            self._signer_head
            + der.tlv(der.CONTEXT_0, attrs)
            + self._sig_alg
            + der.tlv(der.OCTET_STRING, signature),
        )
        encap = self._detached
        if not detached:
            encap = der.tlv(
                der.SEQUENCE,
                der.tlv(der.OID_TAG, _OID_DATA)
                + der.tlv(der.CONTEXT_0, der.tlv(der.OCTET_STRING, content)),
            )
        signed_data = der.tlv(
            der.SEQUENCE,
            _VERSION_1
            + self._digest_algs
            + encap
            + self._certificates
            + der.tlv(der.SET, signer_info),
        )
        return der.tlv(
            der.SEQUENCE,
            der.tlv(der.OID_TAG, _OID_SIGNED_DATA) + der.tlv(der.CONTEXT_0, signed_data),
        )


# -- verifying -----------------------------------------------------------------


class VerifyCache:
    """What does not change between the signatures of one signer, for :func:`verify`.

    * certificates, parsed once, by their DER bytes;
    * skeletons: a detached signed-data is the same bytes up to the signer's
      signed attributes in every message of one signer (structure, digest
      algorithm, certificates, signer identifier).  A signature whose bytes up
      to there equal those of one fully walked before has the same signer
      certificate and digest algorithm, so only the rest (attributes,
      signature) is read.  Found by the signature's length, then by those bytes.

    Nothing here depends on what is trusted: chains are checked by the caller.
    """

    def __init__(self, maxsize: int = CACHE_MAX) -> None:
        self.maxsize = maxsize
        self.certs: Dict[bytes, Certificate] = {}
        self._skeletons: Dict[bytes, _Skeleton] = {}
        self._prefix_lengths: Dict[int, Set[int]] = {}

    def certificate(self, encoded: bytes) -> Certificate:
        cert = self.certs.get(encoded)
        if cert is None:
            if len(self.certs) >= self.maxsize:
                self.certs.clear()
            cert = self.certs[encoded] = Certificate(encoded)
        return cert

    def skeleton(self, data: bytes) -> Optional["_Skeleton"]:
        for length in self._prefix_lengths.get(len(data), ()):
            found = self._skeletons.get(data[:length])
            if found is not None:
                return found
        return None

    def remember(self, data: bytes, skeleton: "_Skeleton") -> None:
        if len(self._skeletons) >= self.maxsize:
            self._skeletons.clear()
            self._prefix_lengths.clear()
        self._skeletons[data[: skeleton.tail]] = skeleton
        self._prefix_lengths.setdefault(len(data), set()).add(skeleton.tail)


class _Skeleton(NamedTuple):
    """A signed-data read up to its signer's signed attributes."""

    cert: Certificate  # the signer's
    certs: List[Certificate]  # all carried
    hash_name: str
    tail: int  # where the signed attributes (or the signature algorithm) start
    content: Optional[bytes]  # attached content, None when detached


def verify(
    signed: bytes, content: Optional[bytes] = None, cache: Optional[VerifyCache] = None
) -> Tuple[bytes, Certificate, List[Certificate]]:
    """Check a signed-data's signature; return (content, signer cert, certs carried).

    ``content`` is required for a detached signature and ignored for an
    attached one.  The signer's certificate is not checked here: see
    :class:`~cc.crypto.certs.TrustStore`.
    """
    cache = cache or VerifyCache()
    try:
        try:
            return _verify(signed, content, cache)
        except der.NotDER:
            # BER (openssl -stream): once more, re-encoded as DER
            signed = cms.ContentInfo.load(signed, strict=False).dump(force=True)
            return _verify(signed, content, cache)
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as ex:
        raise CMSError("bad-signature", "malformed signed-data: %s" % ex) from None


def _verify(
    data: bytes, content: Optional[bytes], cache: VerifyCache
) -> Tuple[bytes, Certificate, List[Certificate]]:
    skeleton = cache.skeleton(data)
    if skeleton is None:
        skeleton = _walk(data, cache)
        if skeleton.content is None:
            cache.remember(data, skeleton)
    if skeleton.content is not None:
        content = skeleton.content
    if content is None:
        raise CMSError("bad-signature", "detached signature without content")
    # SignerInfo (RFC 5652 5.3), from the signed attributes on: [0] signedAttrs,
    # signatureAlgorithm, signature, [1] unsignedAttrs; it ends where the input does
    rest = der.children(data, (der.SEQUENCE, skeleton.tail, skeleton.tail, len(data)))
    signed_over = content
    if rest[0][0] == der.CONTEXT_0:
        digest = _HASH_NEW[skeleton.hash_name](content).digest()
        _check_signed_attrs(data, rest[0], digest)
        signed_over = b"\x31" + der.whole(data, rest[0])[1:]  # signed as a SET OF, not [0]
        rest = rest[1:]
    if len(rest) not in (2, 3):
        raise ValueError("SignerInfo has %d fields after the digest algorithm" % len(rest))
    sig_alg = der.whole(data, der.expect(rest[0], der.SEQUENCE, "signatureAlgorithm"))
    signature = der.content(data, der.expect(rest[1], der.OCTET_STRING, "signature"))
    try:
        check_signature(
            skeleton.cert.public_key, signature, signed_over, sig_alg, skeleton.hash_name
        )
    except InvalidSignature:
        raise CMSError("bad-signature", "signature does not verify") from None
    return content, skeleton.cert, skeleton.certs


def _walk(data: bytes, cache: VerifyCache) -> _Skeleton:
    """ContentInfo { signedData, SignedData { version, digestAlgorithms,
    encapContentInfo, [0] certificates, [1] crls, signerInfos } } (RFC 5652 5.1),
    up to the signer's signed attributes."""
    top = der.expect(der.read(data, 0, len(data)), der.SEQUENCE, "ContentInfo")
    content_type, explicit = der.children(data, top)
    if der.content(data, der.expect(content_type, der.OID_TAG, "contentType")) != _OID_SIGNED_DATA:
        raise CMSError("bad-signature", "not a CMS signed-data")
    (signed_data,) = der.children(data, der.expect(explicit, der.CONTEXT_0, "content"))
    fields = der.children(data, der.expect(signed_data, der.SEQUENCE, "SignedData"))
    der.expect(fields[0], der.INTEGER, "version")  # strict, as openssl: a flipped tag is refused
    der.expect(fields[1], der.SET, "digestAlgorithms")
    encap = der.children(data, der.expect(fields[2], der.SEQUENCE, "encapContentInfo"))
    if der.content(data, der.expect(encap[0], der.OID_TAG, "eContentType")) != _OID_DATA:
        raise CMSError("bad-signature", "signed content is not data")
    content = None
    if len(encap) > 1:
        (octets,) = der.children(data, der.expect(encap[1], der.CONTEXT_0, "eContent"))
        content = der.content(data, der.expect(octets, der.OCTET_STRING, "eContent"))
    certs = []
    for field in fields[3:-1]:
        if field[0] == der.CONTEXT_0:
            certs = [
                cache.certificate(der.whole(data, choice))
                for choice in der.children(data, field)
                if choice[0] == der.SEQUENCE
            ]
    signers = der.children(data, der.expect(fields[-1], der.SET, "signerInfos"))
    if len(signers) != 1:
        raise CMSError("bad-signature", "%d signers, expected one" % len(signers))
    info = der.children(data, der.expect(signers[0], der.SEQUENCE, "SignerInfo"))
    der.expect(info[0], der.INTEGER, "SignerInfo version")
    cert = _find_signer(data, info[1], certs)
    digest_alg = der.children(data, der.expect(info[2], der.SEQUENCE, "digestAlgorithm"))
    hash_name = _DIGESTS.get(der.content(data, digest_alg[0]))
    if hash_name is None:
        raise CMSError("bad-signature", "unsupported digest algorithm")
    return _Skeleton(cert, certs, hash_name, info[2][3], content)


def _find_signer(data: bytes, sid: der.Element, certs: List[Certificate]) -> Certificate:
    if sid[0] == der.SEQUENCE:  # issuerAndSerialNumber
        issuer, serial = der.children(data, sid)
        issuer_der = der.whole(data, der.expect(issuer, der.SEQUENCE, "issuer"))
        number = int.from_bytes(der.content(data, serial), "big", signed=True)
        for cert in certs:
            if cert.issued(issuer_der, number):
                return cert
    elif sid[0] == der.CONTEXT_0_PRIMITIVE:  # subjectKeyIdentifier
        key_id = der.content(data, sid)
        for cert in certs:
            if cert.asn1.key_identifier == key_id:
                return cert
    raise CMSError("bad-signature", "signer certificate not in the signature")


def _check_signed_attrs(data: bytes, attrs: der.Element, digest: bytes) -> None:
    """One content type, ``data``, and one message digest, ``digest`` (RFC 5652 11.1,
    11.2), each compared whole with its DER encoding (what the signature covers)."""
    content_types = digests = 0
    for attr in der.children(data, attrs):
        der.expect(attr, der.SEQUENCE, "Attribute")
        head = data[attr[2] : attr[2] + len(_CONTENT_TYPE_HEAD)]
        if head == _CONTENT_TYPE_HEAD:
            if der.whole(data, attr) != _CONTENT_TYPE_DATA:
                raise CMSError("bad-signature", "the signed content type is not data")
            content_types += 1
        elif head == _MESSAGE_DIGEST_HEAD:
            if der.whole(data, attr) != _message_digest(digest):
                raise CMSError("bad-signature", "content does not match the signed digest")
            digests += 1
    if content_types != 1 or digests != 1:
        raise CMSError("bad-signature", "signed attributes need one content type and one digest")


def _load_content_info(data: bytes, expected: str) -> cms.ContentInfo:
    """The outer structure (the rest is parsed as it is used: callers catch parse errors)."""
    try:
        info = cms.ContentInfo.load(data, strict=False)
        if info["content_type"].native != expected:
            raise ValueError("content type %s" % info["content_type"].native)
    except (ValueError, TypeError, KeyError) as ex:
        raise CMSError("undecryptable", "not a CMS %s: %s" % (expected, ex)) from None
    return info


# -- envelopes -----------------------------------------------------------------


def envelope(content: bytes, recipient: Certificate, key_bits: int = 128) -> bytes:
    """DER enveloped-data of ``content`` for ``recipient`` (RSA key transport, AES-CBC)."""
    if not isinstance(recipient.public_key, rsa.RSAPublicKey):
        raise CMSError("bad-cert", "encryption needs an RSA recipient certificate")
    key = os.urandom(key_bits // 8)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    issuer, serial = recipient.asn1.issuer, recipient.asn1.serial_number
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": cms.RecipientIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": issuer, "serial_number": serial}
                    )
                }
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": recipient.public_key.encrypt(key, asympad.PKCS1v15()),
        }
    )
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo({"ktri": ktri})],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {
                    "algorithm": "aes%d_cbc" % key_bits,
                    "parameters": core.OctetString(iv),
                },
                "encrypted_content": encrypted,
            },
        }
    )
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()


def open_envelope(data: bytes, cert: Certificate, key) -> bytes:  # type: ignore[no-untyped-def]
    """The content of an enveloped-data addressed to ``cert`` (its private ``key``)."""
    info = _load_content_info(data, "enveloped_data")
    enveloped = info["content"]
    try:
        content_key = None
        for recipient in enveloped["recipient_infos"]:
            if recipient.name != "ktri":
                continue
            ktri = recipient.chosen
            rid = ktri["rid"]
            if rid.name == "issuer_and_serial_number":
                match = cert.issued(rid.chosen["issuer"].dump(), rid.chosen["serial_number"].native)
            else:
                match = rid.chosen.native == cert.asn1.key_identifier
            if match:
                content_key = _decrypt_key(ktri, key)
                break
        if content_key is None:
            raise CMSError("undecryptable", "message is not encrypted to this key")
        eci = enveloped["encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        if alg.encryption_cipher != "aes" or alg.encryption_mode != "cbc":
            raise CMSError("undecryptable", "unsupported cipher %s" % alg["algorithm"].native)
        if len(content_key) != alg.key_length:
            raise ValueError("wrong key length")
        decryptor = Cipher(algorithms.AES(content_key), modes.CBC(alg.encryption_iv)).decryptor()
        padded = decryptor.update(eci["encrypted_content"].native) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError):
        # one message for every decryption failure: no padding oracle
        raise CMSError("undecryptable", "cannot decrypt the message") from None


def _decrypt_key(ktri: cms.KeyTransRecipientInfo, key) -> bytes:  # type: ignore[no-untyped-def]
    alg = ktri["key_encryption_algorithm"]
    if alg["algorithm"].native == "rsaes_oaep":
        params = alg["parameters"]
        hash_cls = HASHES[params["hash_algorithm"]["algorithm"].native]
        mgf_cls = HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
        pad: asympad.AsymmetricPadding = asympad.OAEP(asympad.MGF1(mgf_cls()), hash_cls(), None)
    else:
        pad = asympad.PKCS1v15()
    return key.decrypt(ktri["encrypted_key"].native, pad)

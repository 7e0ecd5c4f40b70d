"""CMS (PKCS#7) signed-data and enveloped-data, as ``openssl smime`` / ``openssl cms`` make them.

cryptography 38 (Debian 12) can sign PKCS#7 but can neither verify nor
decrypt it, so this is done here, with :mod:`cryptography` for the
primitives.  Covered:

* signed-data in DER only, detached (or attached, inside an envelope), with or
  without signed attributes, one signer identified by issuer and serial or by
  subject key identifier; SHA-256, -384 or -512 with RSA PKCS#1 v1.5 or ECDSA
  on P-256, P-384 or P-521; the content type, signed or not, must be ``data``.
  Every field the verdict depends on is checked as RFC 5652 and ``openssl cms
  -verify`` do, or more strictly: cc accepts nothing openssl refuses
  (``test_cms_differential``);
* enveloped-data with RSA key transport (PKCS#1 v1.5 or OAEP) and AES-CBC content.

The signed path runs on every message, so it does not build asn1crypto
trees: :func:`verify` walks the input with :mod:`cc.crypto.der` and checks
the sender's own bytes, and :class:`Signer` splices each signature into
parts encoded once per key.  Before the signature is checked, the work is
bounded by the signature's size and the number of certificates it carries,
and only the signer's certificate is parsed.  Certificates and chains:
:mod:`cc.crypto.certs`.
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
from cc.crypto.certs import HASHES, Certificate, CMSError

__all__ = [
    "CMSError",
    "Signer",
    "Verified",
    "VerifyCache",
    "verify",
    "envelope",
    "open_envelope",
]

#: parsed certificates, and signature skeletons, kept by a verifier
CACHE_MAX = 1024

#: defaults of ``cms-max-signature-size`` (bytes, less attached content) and
#: ``cms-max-certificates``: a signer and its intermediates fit many times over
MAX_SIGNATURE_SIZE = 65536
MAX_CERTIFICATES = 8

_OID_SIGNED_DATA = der.OID("1.2.840.113549.1.7.2")
_OID_DATA = der.OID("1.2.840.113549.1.7.1")
_OID_CONTENT_TYPE = der.OID("1.2.840.113549.1.9.3")
_OID_MESSAGE_DIGEST = der.OID("1.2.840.113549.1.9.4")
_OID_SIGNING_TIME = der.OID("1.2.840.113549.1.9.5")
_OID_SUBJECT_KEY_IDENTIFIER = der.OID("2.5.29.14")
#: the allow-list: digests, and signature algorithms as (key type, digest or None: any)
_DIGESTS = {
    der.OID("2.16.840.1.101.3.4.2.1"): "sha256",
    der.OID("2.16.840.1.101.3.4.2.2"): "sha384",
    der.OID("2.16.840.1.101.3.4.2.3"): "sha512",
}
_SIGNATURE_ALGORITHMS = {
    der.OID("1.2.840.113549.1.1.1"): ("rsa", None),  # rsaEncryption, as openssl writes
    der.OID("1.2.840.113549.1.1.11"): ("rsa", "sha256"),
    der.OID("1.2.840.113549.1.1.12"): ("rsa", "sha384"),
    der.OID("1.2.840.113549.1.1.13"): ("rsa", "sha512"),
    der.OID("1.2.840.10045.4.3.2"): ("ecdsa", "sha256"),
    der.OID("1.2.840.10045.4.3.3"): ("ecdsa", "sha384"),
    der.OID("1.2.840.10045.4.3.4"): ("ecdsa", "sha512"),
}
_HASHES = {name: HASHES[name] for name in _DIGESTS.values()}
_NULL = der.tlv(der.NULL, b"")
_VERSION_1 = der.tlv(der.INTEGER, b"\x01")
#: signed attributes: the type's encoding starts them; the content type is always this
_CONTENT_TYPE_HEAD = der.tlv(der.OID_TAG, _OID_CONTENT_TYPE)
_MESSAGE_DIGEST_HEAD = der.tlv(der.OID_TAG, _OID_MESSAGE_DIGEST)
_CONTENT_TYPE_DATA = der.tlv(
    der.SEQUENCE, _CONTENT_TYPE_HEAD + der.tlv(der.SET, der.tlv(der.OID_TAG, _OID_DATA))
)
_REQUIRED_ATTRS = frozenset((_OID_CONTENT_TYPE, _OID_MESSAGE_DIGEST))


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

    * certificates, parsed once, by their DER bytes (``parsed`` counts the parses);
    * skeletons: a detached signed-data is the same bytes up to the signer's
      signed attributes in every message of one signer (structure, digest
      algorithms, certificates, signer identifier).  A signature whose bytes up
      to there equal those of one fully walked before has the same signer
      certificate and digest algorithm, so only the rest (attributes,
      signature) is read.  Found by the signature's length, then by those bytes.

    Nothing here depends on what is trusted: chains are checked by the caller.
    """

    def __init__(self, maxsize: int = CACHE_MAX) -> None:
        self.maxsize = maxsize
        self.parsed = 0
        self.certs: Dict[bytes, Certificate] = {}
        self._skeletons: Dict[bytes, _Skeleton] = {}
        self._prefix_lengths: Dict[int, Set[int]] = {}

    def certificate(self, encoded: bytes) -> Certificate:
        cert = self.certs.get(encoded)
        if cert is None:
            if len(self.certs) >= self.maxsize:
                self.certs.clear()
            self.parsed += 1
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


class _TBS(NamedTuple):
    """A certificate's names, read from its bytes without parsing it."""

    serial: bytes  # the INTEGER's content
    issuer: bytes  # its whole encoding
    key_identifier: Optional[bytes]  # subjectKeyIdentifier's value, if it has one


def _tbs(encoded: bytes) -> _TBS:
    """Certificate { tbsCertificate { [0] version, serialNumber, signature, issuer,
    validity, subject, subjectPublicKeyInfo, [1], [2], [3] extensions } ... } (RFC 5280)."""
    cert = der.expect(der.read(encoded, 0, len(encoded)), der.SEQUENCE, "Certificate")
    tbs = der.children(encoded, der.children(encoded, cert, 3)[0], 10)
    if tbs[0][0] == der.CONTEXT_0:
        tbs = tbs[1:]
    serial, issuer = tbs[0], tbs[2]
    key_identifier = None
    for field in tbs[6:]:
        if field[0] != der.CONTEXT_3:
            continue
        (extensions,) = der.children(encoded, field)
        for ext in der.children(encoded, der.expect(extensions, der.SEQUENCE, "extensions")):
            parts = der.children(encoded, ext, 3)
            if der.content(encoded, parts[0]) == _OID_SUBJECT_KEY_IDENTIFIER:
                (value,) = der.children(encoded, der.expect(parts[-1], der.OCTET_STRING, "value"))
                key_identifier = der.content(encoded, der.expect(value, der.OCTET_STRING, "ski"))
    return _TBS(
        der.content(encoded, der.expect(serial, der.INTEGER, "serialNumber")),
        der.whole(encoded, der.expect(issuer, der.SEQUENCE, "issuer")),
        key_identifier,
    )


class _Skeleton(NamedTuple):
    """A signed-data read up to its signer's signed attributes."""

    cert: Certificate  # the signer's
    carried: List[Certificate]  # the others
    hash_name: str
    tail: int  # where the signed attributes (or the signature algorithm) start
    content: Optional[bytes]  # attached content, None when detached


class Verified(NamedTuple):
    """What :func:`verify` found."""

    content: bytes
    cert: Certificate  # the signer's
    carried: List[Certificate]  # the others, for the chain
    #: who signed what, the same for every encoding of one signature (and for both
    #: ECDSA twins): SHA-256 over the signer's key, the digest algorithm, the content's
    #: digest and the signed attributes' DER (which a sender cannot re-encode)
    replay_key: bytes


def verify(
    signed: bytes,
    content: Optional[bytes] = None,
    cache: Optional[VerifyCache] = None,
    max_size: int = MAX_SIGNATURE_SIZE,
    max_certificates: int = MAX_CERTIFICATES,
) -> Verified:
    """Check a DER signed-data's signature; :class:`CMSError` (``bad-signature``,
    ``bad-cert``) if it cannot be accepted.

    ``content``: the body frame; an attached signature must carry exactly it
    (None: take the attached content, as inside an envelope).  ``max_size``
    bounds the signed-data less its attached content, ``max_certificates`` the
    certificates it carries; both are checked before any certificate is
    parsed, and the signer's is found (by reading names, not parsing) and
    parsed first.  Every carried certificate must parse, as openssl requires.
    The signer's certificate is not checked: see
    :class:`~cc.crypto.certs.TrustStore`.
    """
    try:
        return _verify(signed, content, cache or VerifyCache(), max_size, max_certificates)
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as ex:
        raise CMSError("bad-signature", "malformed signed-data: %s" % ex) from None


def _verify(
    data: bytes,
    content: Optional[bytes],
    cache: VerifyCache,
    max_size: int,
    max_certificates: int,
) -> Verified:
    if content is not None and len(data) > max_size + len(content):  # before any reading
        raise CMSError("bad-signature", "signature larger than %d bytes" % max_size)
    skeleton = cache.skeleton(data)
    if skeleton is None:
        skeleton = _walk(data, cache, max_certificates)
        if skeleton.content is None:
            cache.remember(data, skeleton)
    if skeleton.content is not None:
        if content is not None and content != skeleton.content:
            raise CMSError("bad-signature", "attached content differs from the body frame")
        content = skeleton.content
    if content is None:
        raise CMSError("bad-signature", "detached signature without content")
    if len(data) - (len(content) if skeleton.content is not None else 0) > max_size:
        raise CMSError("bad-signature", "signature larger than %d bytes" % max_size)
    # SignerInfo (RFC 5652 5.3), from the signed attributes on: [0] signedAttrs,
    # signatureAlgorithm, signature; it ends where the input does (no unsignedAttrs)
    rest = der.children(data, (der.SEQUENCE, skeleton.tail, skeleton.tail, len(data)), 4)
    digest = _HASH_NEW[skeleton.hash_name](content).digest()
    signed_over = content
    attrs = b""
    if rest[0][0] == der.CONTEXT_0:
        _check_signed_attrs(data, rest[0], digest)
        attrs = b"\x31" + der.whole(data, rest[0])[1:]  # signed as a SET OF, not [0]
        signed_over = attrs
        rest = rest[1:]
    if len(rest) != 2:
        raise CMSError("bad-signature", "SignerInfo: unsigned attributes or fields missing")
    scheme = _signature_scheme(der.whole(data, rest[0]), skeleton.hash_name)
    signature = der.content(data, der.expect(rest[1], der.OCTET_STRING, "signature"))
    cert = skeleton.cert
    _check_signature(cert, scheme, signature, signed_over, skeleton.hash_name)
    replay_key = hashlib.sha256(
        b"|".join((cert.key_id, skeleton.hash_name.encode(), digest, attrs))
    ).digest()
    return Verified(content, cert, skeleton.carried, replay_key)


def _walk(data: bytes, cache: VerifyCache, max_certificates: int) -> _Skeleton:
    """ContentInfo { signedData, SignedData { version, digestAlgorithms,
    encapContentInfo, [0] certificates, signerInfos } } (RFC 5652 5.1), up to the
    signer's signed attributes; every field checked, no CRLs."""
    top = der.expect(der.read(data, 0, len(data)), der.SEQUENCE, "ContentInfo")
    content_type, explicit = der.children(data, top, 2)
    if der.content(data, der.expect(content_type, der.OID_TAG, "contentType")) != _OID_SIGNED_DATA:
        raise CMSError("bad-signature", "not a CMS signed-data")
    (signed_data,) = der.children(data, der.expect(explicit, der.CONTEXT_0, "content"))
    fields = der.children(data, der.expect(signed_data, der.SEQUENCE, "SignedData"), 6)
    if len(fields) != 5 or fields[3][0] != der.CONTEXT_0:
        raise CMSError(
            "bad-signature", "SignedData needs its certificates [0] and no CRLs [1] (RFC 5652 5.1)"
        )
    version = der.integer(data, fields[0], "version")
    digest_algs = der.children(data, der.expect(fields[1], der.SET, "digestAlgorithms"), 8)
    encap = der.children(data, der.expect(fields[2], der.SEQUENCE, "encapContentInfo"), 2)
    if der.content(data, der.expect(encap[0], der.OID_TAG, "eContentType")) != _OID_DATA:
        raise CMSError("bad-signature", "signed content is not data")
    content = None
    if len(encap) > 1:
        (octets,) = der.children(data, der.expect(encap[1], der.CONTEXT_0, "eContent"))
        content = der.content(data, der.expect(octets, der.OCTET_STRING, "eContent"))
    try:
        certs = der.children(data, fields[3], max_certificates)
    except der.TooMany:
        raise CMSError(
            "bad-signature", "more than %d certificates in the signature" % max_certificates
        ) from None
    for choice in certs:
        der.expect(choice, der.SEQUENCE, "certificate")  # no attribute or other certificates
    signers = der.children(data, der.expect(fields[4], der.SET, "signerInfos"), 2)
    if len(signers) != 1:
        raise CMSError("bad-signature", "%d signers, expected one" % len(signers))
    info = der.children(data, der.expect(signers[0], der.SEQUENCE, "SignerInfo"), 7)
    sid = info[1]
    # RFC 5652 5.1, 5.3: version 1 with issuerAndSerialNumber, 3 with subjectKeyIdentifier
    wanted = 1 if sid[0] == der.SEQUENCE else 3
    if version != wanted or der.integer(data, info[0], "SignerInfo version") != wanted:
        raise CMSError("bad-signature", "versions do not match the signer identifier")
    found = _find_signer(data, sid, certs)
    cert = cache.certificate(der.whole(data, found))
    hash_name = _digest_name(der.whole(data, info[2]))
    if hash_name not in {_digest_name(der.whole(data, alg)) for alg in digest_algs}:
        raise CMSError("bad-signature", "digestAlgorithms lacks the signer's digest algorithm")
    others = [cache.certificate(der.whole(data, choice)) for choice in certs if choice is not found]
    return _Skeleton(cert, others, hash_name, info[3][1], content)


def _find_signer(data: bytes, sid: der.Element, certs: List[der.Element]) -> der.Element:
    """The carried certificate ``sid`` names, exactly: the issuer's encoding and the
    serial number's, or the subjectKeyIdentifier extension's value."""
    if sid[0] == der.SEQUENCE:  # issuerAndSerialNumber
        issuer, serial = der.children(data, sid, 2)
        issuer_der = der.whole(data, der.expect(issuer, der.SEQUENCE, "issuer"))
        der.integer(data, serial, "serialNumber")
        number = der.content(data, serial)
        for choice in certs:
            tbs = _tbs(der.whole(data, choice))
            if tbs.serial == number and tbs.issuer == issuer_der:
                return choice
    elif sid[0] == der.CONTEXT_0_PRIMITIVE:  # subjectKeyIdentifier
        key_id = der.content(data, sid)
        for choice in certs:
            if _tbs(der.whole(data, choice)).key_identifier == key_id:
                return choice
    else:
        raise CMSError("bad-signature", "signer identifier of unknown kind")
    raise CMSError("bad-signature", "signer certificate not in the signature")


@functools.lru_cache(maxsize=64)
def _digest_name(algorithm: bytes) -> str:
    """``sha256``, ``sha384`` or ``sha512`` for a DigestAlgorithmIdentifier, whose
    parameters are absent or NULL (RFC 5754 2)."""
    top = der.expect(der.read(algorithm, 0, len(algorithm)), der.SEQUENCE, "digestAlgorithm")
    fields = der.children(algorithm, top, 3)
    name = _DIGESTS.get(der.content(algorithm, der.expect(fields[0], der.OID_TAG, "digest")))
    if name is None:
        raise CMSError("bad-signature", "digest algorithm not allowed (SHA-256, -384, -512)")
    if fields[1:] and der.whole(algorithm, fields[1]) != _NULL or len(fields) > 2:
        raise CMSError("bad-signature", "digest algorithm parameters other than NULL")
    return name


@functools.lru_cache(maxsize=64)
def _signature_scheme(algorithm: bytes, hash_name: str) -> str:
    """``rsa`` or ``ecdsa`` for a signatureAlgorithm that the allow-list has for digest
    ``hash_name``: rsaEncryption or sha*WithRSAEncryption, parameters NULL or absent
    (RFC 4055 5); ecdsa-with-SHA*, parameters absent (RFC 5758 3.2)."""
    top = der.expect(der.read(algorithm, 0, len(algorithm)), der.SEQUENCE, "signatureAlgorithm")
    fields = der.children(algorithm, top, 3)
    oid = der.content(algorithm, der.expect(fields[0], der.OID_TAG, "signatureAlgorithm"))
    params = [der.whole(algorithm, field) for field in fields[1:]]
    scheme = _SIGNATURE_ALGORITHMS.get(oid)
    if scheme is None or scheme[1] not in (None, hash_name):
        raise CMSError("bad-signature", "signature algorithm not allowed with %s" % hash_name)
    if params not in ([], [_NULL] if scheme[0] == "rsa" else []):
        raise CMSError("bad-signature", "signature algorithm parameters not as the RFCs say")
    return scheme[0]


def _check_signature(
    cert: Certificate, scheme: str, signature: bytes, signed_over: bytes, hash_name: str
) -> None:
    """``signature`` by ``cert``'s key, which must make ``scheme`` signatures (its size or
    curve were checked with the certificate)."""
    if scheme != cert.scheme:
        raise CMSError("bad-signature", "a %s signature by a %s key" % (scheme, cert.scheme))
    key = cert.public_key
    try:
        if scheme == "rsa":
            key.verify(signature, signed_over, asympad.PKCS1v15(), _HASHES[hash_name]())
        else:
            key.verify(signature, signed_over, ec.ECDSA(_HASHES[hash_name]()))
    except InvalidSignature:
        raise CMSError("bad-signature", "signature does not verify") from None


def _check_signed_attrs(data: bytes, attrs: der.Element, digest: bytes) -> None:
    """One content type, ``data``, and one message digest, ``digest`` (RFC 5652 11.1,
    11.2), each compared whole with its DER encoding (what the signature covers); no
    attribute type twice, every one with values.

    Runs on every message: the two required attributes are recognised by comparing
    bytes, the others (signing time, capabilities: the same for many messages) by
    :func:`_attribute_type`, which remembers encodings it has checked.
    """
    digest_attr = _message_digest(digest)
    seen = set()
    for attr in der.children(data, attrs, 16):
        encoded = der.whole(data, attr)
        if encoded == _CONTENT_TYPE_DATA:
            kind = _OID_CONTENT_TYPE
        elif encoded == digest_attr:
            kind = _OID_MESSAGE_DIGEST
        else:
            kind = _attribute_type(encoded)
        if kind in seen:
            raise CMSError("bad-signature", "signed attribute repeated")
        seen.add(kind)
    if len(seen & _REQUIRED_ATTRS) != 2:
        raise CMSError("bad-signature", "signed attributes need a content type and a digest")


@functools.lru_cache(maxsize=256)
def _attribute_type(encoded: bytes) -> bytes:
    """The type of an Attribute { attrType, SET OF value } with at least one value, other
    than content type and message digest (which have one DER encoding, compared whole)."""
    top = der.expect(der.read(encoded, 0, len(encoded)), der.SEQUENCE, "Attribute")
    oid, values = der.children(encoded, top, 2)
    kind = der.content(encoded, der.expect(oid, der.OID_TAG, "attrType"))
    if not der.children(encoded, der.expect(values, der.SET, "attrValues")):
        raise CMSError("bad-signature", "signed attribute without a value")
    if kind == _OID_CONTENT_TYPE:
        raise CMSError("bad-signature", "the signed content type is not data")
    if kind == _OID_MESSAGE_DIGEST:
        raise CMSError("bad-signature", "content does not match the signed digest")
    return kind


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

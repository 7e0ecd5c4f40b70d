"""CMS (PKCS#7) signed-data and enveloped-data, as ``openssl smime`` / ``openssl cms`` make them.

Built from :mod:`asn1crypto` structures and :mod:`cryptography` primitives
only, because cryptography 38 (Debian 12) can sign PKCS#7 but can neither
verify nor decrypt it.  Covered:

* signed-data, detached or attached, with or without signed attributes, RSA
  (PKCS#1 v1.5 or PSS) and ECDSA signers identified by issuer and serial or by
  subject key identifier;
* enveloped-data with RSA key transport (PKCS#1 v1.5 or OAEP) and AES-CBC content;
* certificate chains: signature, validity period, CA flag and key usage of
  each link up to a trusted CA.

Every failure is a :class:`CMSError` whose ``code`` says what kind it is.
"""

import datetime
import hashlib
import os
from typing import Dict, List, Optional, Sequence, Tuple

from asn1crypto import algos, cms, core, pem
from asn1crypto import x509 as ax509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "CMSError",
    "Certificate",
    "load_certificate",
    "load_private_key",
    "sign",
    "verify",
    "envelope",
    "open_envelope",
]

#: links followed from a signer certificate up to a trusted CA
MAX_CHAIN = 8
#: parsed certificates kept by a verifier
CERT_CACHE_MAX = 1024

_HASHES = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CMSError(ValueError):
    """A signature, certificate or envelope that cannot be accepted.

    ``code``: ``bad-signature``, ``untrusted``, ``expired``, ``bad-cert`` or
    ``undecryptable``.
    """

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class Certificate:
    """An X.509 certificate: its ASN.1 structure and its public key, parsed once."""

    __slots__ = ("asn1", "der", "public_key", "_info")

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.asn1 = ax509.Certificate.load(der)
        self.public_key = serialization.load_der_public_key(self.asn1.public_key.dump())
        self._info: Optional[Dict[str, object]] = None

    @property
    def subject(self) -> ax509.Name:
        return self.asn1.subject

    @property
    def issuer_serial(self) -> Tuple[bytes, int]:
        return self.asn1.issuer.dump(), self.asn1.serial_number

    def info(self) -> Dict[str, object]:
        """Who signed: ``subject`` (one line), ``serial``, ``not_before``, ``not_after``,
        and ``CN``, ``O``, ``OU``, ``C``, ``ST``, ``L``, ``emailAddress`` where present (as the
        original).
        """
        if self._info is None:
            names = {
                "common_name": "CN",
                "organization_name": "O",
                "organizational_unit_name": "OU",
                "country_name": "C",
                "state_or_province_name": "ST",
                "locality_name": "L",
                "email_address": "emailAddress",
            }
            info: Dict[str, object] = {
                "subject": self.asn1.subject.human_friendly,
                "serial": self.asn1.serial_number,
                "not_before": self.asn1.not_valid_before.isoformat(),
                "not_after": self.asn1.not_valid_after.isoformat(),
            }
            for key, value in self.asn1.subject.native.items():
                if key in names:
                    info[names[key]] = value if isinstance(value, str) else ", ".join(value)
            self._info = info
        return self._info


def load_certificate(path: str) -> Certificate:
    """A certificate from a PEM (or DER) file."""
    with open(path, "rb") as f:
        data = f.read()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return Certificate(data)


def load_private_key(path: str):  # type: ignore[no-untyped-def]
    """An unencrypted private key from a PEM file."""
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


# -- signing -----------------------------------------------------------------


def _signed_attrs(content: bytes, hash_name: str) -> cms.CMSAttributes:
    digest = hashlib.new(hash_name, content).digest()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": now})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
        ]
    )


def sign(content: bytes, cert: Certificate, key, detached: bool = True) -> bytes:  # type: ignore
    """DER signed-data over ``content`` by ``key``, with ``cert`` embedded (SHA-256)."""
    attrs = _signed_attrs(content, "sha256")
    to_sign = attrs.dump()  # DER SET OF, sorted: what the verifier re-encodes
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, asympad.PKCS1v15(), hashes.SHA256())
        sig_alg = "rsassa_pkcs1v15"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        sig_alg = "sha256_ecdsa"
    else:
        raise CMSError("bad-cert", "unsupported signing key type %s" % type(key).__name__)
    issuer, serial = cert.asn1.issuer, cert.asn1.serial_number
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": issuer, "serial_number": serial}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_alg}),
            "signature": signature,
        }
    )
    encap: Dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": encap,
            "certificates": [cert.asn1],
            "signer_infos": [signer],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


# -- verifying -----------------------------------------------------------------


def _load_content_info(der: bytes, expected: str) -> cms.ContentInfo:
    """The outer structure (the rest is parsed as it is used: callers catch parse errors)."""
    try:
        info = cms.ContentInfo.load(der, strict=False)
        if info["content_type"].native != expected:
            raise ValueError("content type %s" % info["content_type"].native)
    except (ValueError, TypeError, KeyError) as ex:
        code = "undecryptable" if expected == "enveloped_data" else "bad-signature"
        raise CMSError(code, "not a CMS %s: %s" % (expected, ex)) from None
    return info


def _same_name(a: ax509.Name, b: ax509.Name) -> bool:
    # byte equality first: asn1crypto's normalising comparison costs as much as a signature check
    return a.dump() == b.dump() or a == b


def _check_signature(
    public_key, signature: bytes, data: bytes, sig_alg: algos.SignedDigestAlgorithm, hash_name: str
) -> None:  # type: ignore[no-untyped-def]
    """Raise InvalidSignature (or CMSError for what is not supported)."""
    algo = sig_alg["algorithm"].native
    if hash_name not in _HASHES:
        raise CMSError("bad-signature", "unsupported digest %s" % hash_name)
    hash_alg = _HASHES[hash_name]()
    if isinstance(public_key, rsa.RSAPublicKey):
        if algo == "rsassa_pss":
            params = sig_alg["parameters"]
            mgf_hash = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
            pad: asympad.AsymmetricPadding = asympad.PSS(
                asympad.MGF1(mgf_hash()), params["salt_length"].native
            )
            hash_alg = _HASHES[params["hash_algorithm"]["algorithm"].native]()
        else:
            pad = asympad.PKCS1v15()
        public_key.verify(signature, data, pad, hash_alg)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_alg))
    else:
        raise CMSError("bad-signature", "unsupported key type %s" % type(public_key).__name__)


def _find_signer(signer: cms.SignerInfo, certs: Sequence[Certificate]) -> Certificate:
    sid = signer["sid"]
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            if cert.asn1.serial_number == sid.chosen["serial_number"].native and _same_name(
                cert.asn1.issuer, sid.chosen["issuer"]
            ):
                return cert
        elif cert.asn1.key_identifier == sid.chosen.native:
            return cert
    raise CMSError("bad-signature", "signer certificate not in the signature")


def verify(
    der: bytes,
    content: Optional[bytes] = None,
    cert_cache: Optional[Dict[bytes, Certificate]] = None,
) -> Tuple[bytes, Certificate, List[Certificate]]:
    """Check a signed-data's signature; return (content, signer cert, certs carried).

    ``content`` is required for a detached signature and ignored for an
    attached one.  The signer's certificate is not checked here: see
    :class:`TrustStore`.  ``cert_cache`` (DER -> Certificate) saves parsing
    the same embedded certificates again and again.
    """
    info = _load_content_info(der, "signed_data")
    try:
        return _verify(info, content, {} if cert_cache is None else cert_cache)
    except (ValueError, TypeError, KeyError) as ex:
        raise CMSError("bad-signature", "malformed signed-data: %s" % ex) from None


def _certificate(der: bytes, cache: Dict[bytes, Certificate]) -> Certificate:
    cert = cache.get(der)
    if cert is None:
        if len(cache) >= CERT_CACHE_MAX:
            cache.clear()
        cert = cache[der] = Certificate(der)
    return cert


def _verify(
    info: cms.ContentInfo, content: Optional[bytes], cache: Dict[bytes, Certificate]
) -> Tuple[bytes, Certificate, List[Certificate]]:
    signed = info["content"]
    encap = signed["encap_content_info"]
    if encap["content"].native is not None:
        content = encap["content"].native
        if not isinstance(content, bytes):
            raise CMSError("bad-signature", "signed content is not data")
    if content is None:
        raise CMSError("bad-signature", "detached signature without content")
    certs = [
        _certificate(choice.chosen.dump(), cache)
        for choice in signed["certificates"]
        if choice.name == "certificate"
    ]
    signers = list(signed["signer_infos"])
    if len(signers) != 1:
        raise CMSError("bad-signature", "%d signers, expected one" % len(signers))
    signer = signers[0]
    cert = _find_signer(signer, certs)
    hash_name = signer["digest_algorithm"]["algorithm"].native
    attrs = signer["signed_attrs"]
    if attrs.native is not None:
        digest = None
        for attr in attrs:
            if attr["type"].native == "message_digest":
                digest = attr["values"][0].native
        if hash_name not in _HASHES or digest is None:
            raise CMSError("bad-signature", "no message digest in the signed attributes")
        if hashlib.new(hash_name, content).digest() != digest:
            raise CMSError("bad-signature", "content does not match the signed digest")
        raw = attrs.dump()
        data = b"\x31" + raw[1:]  # signed over as a SET OF, not as [0] IMPLICIT
    else:
        data = content
    try:
        _check_signature(
            cert.public_key,
            signer["signature"].native,
            data,
            signer["signature_algorithm"],
            hash_name,
        )
    except InvalidSignature:
        raise CMSError("bad-signature", "signature does not verify") from None
    return content, cert, certs


class TrustStore:
    """Trusted CA certificates; checks a signer's chain up to one of them."""

    def __init__(self, cas: Sequence[Certificate]) -> None:
        self.cas = list(cas)

    def check(
        self,
        cert: Certificate,
        extra: Sequence[Certificate],
        now: Optional[datetime.datetime] = None,
    ) -> datetime.datetime:
        """Check ``cert`` for signing, chained through ``extra`` to a CA; return when it expires.

        Raises :class:`CMSError` (``untrusted``, ``expired``, ``bad-cert``).
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        _check_usage(cert, ca=False)
        expires = _check_time(cert, now)
        current = cert
        for _ in range(MAX_CHAIN):
            issuer = current.asn1.issuer
            for ca in self.cas:
                if _same_name(ca.subject, issuer) and _signed_by(current, ca):
                    _check_usage(ca, ca=True)
                    return min(expires, _check_time(ca, now))
            for link in extra:
                if (
                    link is not current
                    and _same_name(link.subject, issuer)
                    and _signed_by(current, link)
                ):
                    _check_usage(link, ca=True)
                    expires = min(expires, _check_time(link, now))
                    current = link
                    break
            else:
                break
        raise CMSError(
            "untrusted",
            "certificate %s is not issued by a trusted CA" % cert.asn1.subject.human_friendly,
        )


def _signed_by(cert: Certificate, issuer: Certificate) -> bool:
    asn1 = cert.asn1
    try:
        _check_signature(
            issuer.public_key,
            asn1["signature_value"].native,
            asn1["tbs_certificate"].dump(),
            asn1["signature_algorithm"],
            asn1.hash_algo,
        )
    except (InvalidSignature, CMSError, KeyError, ValueError):
        return False
    return True


def _check_time(cert: Certificate, now: datetime.datetime) -> datetime.datetime:
    asn1 = cert.asn1
    if not asn1.not_valid_before <= now <= asn1.not_valid_after:
        raise CMSError(
            "expired",
            "certificate %s is valid %s .. %s"
            % (asn1.subject.human_friendly, asn1.not_valid_before, asn1.not_valid_after),
        )
    return asn1.not_valid_after


def _check_usage(cert: Certificate, ca: bool) -> None:
    asn1 = cert.asn1
    usage = asn1.key_usage_value
    name = asn1.subject.human_friendly
    if ca:
        if not asn1.ca:
            raise CMSError("bad-cert", "certificate %s is not a CA" % name)
        if usage is not None and "key_cert_sign" not in usage.native:
            raise CMSError("bad-cert", "CA certificate %s may not sign certificates" % name)
        return
    if usage is not None and not usage.native & {"digital_signature", "non_repudiation"}:
        raise CMSError("bad-cert", "certificate %s may not sign (key usage)" % name)
    ext_usage = asn1.extended_key_usage_value
    if ext_usage is not None and not set(ext_usage.native) & {
        "email_protection",
        "any_extended_key_usage",
    }:
        raise CMSError("bad-cert", "certificate %s is not for S/MIME (extended key usage)" % name)


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


def open_envelope(der: bytes, cert: Certificate, key) -> bytes:  # type: ignore[no-untyped-def]
    """The content of an enveloped-data addressed to ``cert`` (its private ``key``)."""
    info = _load_content_info(der, "enveloped_data")
    enveloped = info["content"]
    try:
        content_key = None
        for recipient in enveloped["recipient_infos"]:
            if recipient.name != "ktri":
                continue
            ktri = recipient.chosen
            rid = ktri["rid"]
            if rid.name == "issuer_and_serial_number":
                match = rid.chosen[
                    "serial_number"
                ].native == cert.asn1.serial_number and _same_name(
                    rid.chosen["issuer"], cert.asn1.issuer
                )
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
        hash_cls = _HASHES[params["hash_algorithm"]["algorithm"].native]
        mgf_cls = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
        pad: asympad.AsymmetricPadding = asympad.OAEP(asympad.MGF1(mgf_cls()), hash_cls(), None)
    else:
        pad = asympad.PKCS1v15()
    return key.decrypt(ktri["encrypted_key"].native, pad)

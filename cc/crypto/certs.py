"""X.509 for CMS signers: certificates, signature schemes, chains to trusted CAs, CRLs.

The checks are the ones ``openssl smime -verify -crl_check`` makes of a
signer: each link's signature and validity period; every issuer a CA
(``basicConstraints CA:TRUE``, ``keyCertSign`` where key usage is given)
whose ``pathLenConstraint`` holds; the signer allowed to sign (key usage,
extended key usage); and, where CRLs are given, a current CRL from the
signer's issuer that does not list it.

Every failure is a :class:`CMSError` whose ``code`` says what kind it is.
"""

import datetime
import functools
import hashlib
from typing import Dict, List, Optional, Sequence, Set, Tuple

from asn1crypto import algos, pem
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asympad

from cc.crypto.der import check as check_der
from cc.errors import CodedError

__all__ = [
    "CMSError",
    "Certificate",
    "RevocationList",
    "TrustStore",
    "check_signature",
    "load_certificate",
    "load_crls",
    "load_private_key",
]

#: links followed from a signer certificate up to a trusted CA
MAX_CHAIN = 8

#: keys a certificate may hold: RSA of this many bits at least, or ECDSA on these curves
MIN_RSA_BITS = 2048
CURVES = ("secp256r1", "secp384r1", "secp521r1")

#: digests too weak for a certificate's or CRL's signature (as OpenSSL 3 at level 1)
WEAK_HASHES = ("md5", "sha1")

HASHES = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CMSError(CodedError):
    """A signature, certificate or envelope that cannot be accepted.

    ``code``: ``bad-signature``, ``untrusted``, ``expired``, ``bad-cert``,
    ``revoked`` or ``undecryptable``.
    """


class Certificate:
    """An X.509 certificate: its ASN.1 structure and its public key, parsed once.

    Raises :class:`CMSError` (``bad-cert``) for what cannot be parsed or whose
    key :mod:`cryptography` does not support (an unknown curve, say).
    """

    __slots__ = ("asn1", "der", "public_key", "scheme", "key_id", "issuer_der", "serial", "_info")

    def __init__(self, der: bytes) -> None:
        self.der = der
        try:
            check_der(der)  # asn1crypto also reads BER, which a CA never signs
            self.asn1 = ax509.Certificate.load(der, strict=True)
            self.asn1.native  # parse it all now: a damaged one fails here, not in a later check
            if self.asn1.dump(force=True) != der:  # asn1crypto passes over fields X.509 has not
                raise ValueError("not a DER X.509 certificate")
            tbs = self.asn1["tbs_certificate"]
            if self.asn1["signature_algorithm"].dump() != tbs["signature"].dump():
                raise ValueError("two different signature algorithms (RFC 5280 4.1.1.2)")
            self.public_key = serialization.load_der_public_key(self.asn1.public_key.dump())
        except UnsupportedAlgorithm as ex:
            raise CMSError("bad-cert", "unsupported public key: %s" % ex) from None
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as ex:
            raise CMSError("bad-cert", "malformed certificate: %s" % ex) from None
        #: ``rsa`` or ``ecdsa``: the signatures the key makes
        self.scheme = _check_key(self.public_key)
        #: who holds the key, in one encoding: SHA-256 of the SubjectPublicKeyInfo as
        #: cryptography writes it (the same for every certificate of that key)
        self.key_id = hashlib.sha256(
            self.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
        #: as encoded in the certificate: what a signer identifier is compared with first
        self.issuer_der = self.asn1.issuer.dump()
        self.serial: int = self.asn1.serial_number
        self._info: Optional[Dict[str, object]] = None

    @property
    def subject(self) -> ax509.Name:
        return self.asn1.subject

    @property
    def name(self) -> str:
        return self.asn1.subject.human_friendly

    def issued(self, issuer_der: bytes, serial: int) -> bool:
        """Whether this is the certificate with ``serial`` from the issuer named ``issuer_der``."""
        if serial != self.serial:
            return False
        return issuer_der == self.issuer_der or self.asn1.issuer == ax509.Name.load(issuer_der)

    def info(self) -> Dict[str, object]:
        """Who signed: ``subject`` and ``issuer`` (one line each), ``serial``,
        ``fingerprint`` (SHA-256 of the certificate, hex), ``not_before``, ``not_after``,
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
                "subject": self.name,
                "issuer": self.asn1.issuer.human_friendly,
                "serial": self.serial,
                "fingerprint": hashlib.sha256(self.der).hexdigest(),
                "not_before": self.asn1.not_valid_before.isoformat(),
                "not_after": self.asn1.not_valid_after.isoformat(),
            }
            for key, value in self.asn1.subject.native.items():
                if key in names:
                    info[names[key]] = value if isinstance(value, str) else ", ".join(value)
            self._info = info
        return self._info


def _check_key(key) -> str:  # type: ignore[no-untyped-def]
    """``rsa`` or ``ecdsa``; refuse (``bad-cert``) a key outside :data:`MIN_RSA_BITS` and
    :data:`CURVES`."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return "rsa"
        problem = "RSA key of %d bits (%d at least)" % (key.key_size, MIN_RSA_BITS)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in CURVES:
            return "ecdsa"
        problem = "ECDSA key on %s (%s only)" % (key.curve.name, "/".join(CURVES))
    else:
        problem = "unsupported public key type %s" % type(key).__name__
    raise CMSError("bad-cert", problem)


def _read_pem_or_der(path: str, kind: str) -> List[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if not pem.detect(data):
        return [data]
    found = [der for name, _, der in pem.unarmor(data, multiple=True) if name == kind]
    if not found:
        raise ValueError("no %s in %s" % (kind, path))
    return found


def load_certificate(path: str) -> Certificate:
    """A certificate from a PEM (or DER) file."""
    return Certificate(_read_pem_or_der(path, "CERTIFICATE")[0])


def load_private_key(path: str):  # type: ignore[no-untyped-def]
    """An unencrypted private key from a PEM file."""
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def same_name(a: ax509.Name, b: ax509.Name) -> bool:
    # byte equality first: asn1crypto's normalising comparison costs as much as a signature check
    return a.dump() == b.dump() or a == b


# -- signatures ------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _scheme(
    sig_alg_der: bytes, hash_name: str
) -> Tuple[Optional[asympad.AsymmetricPadding], hashes.HashAlgorithm]:
    """Padding (for RSA) and hash of a signature algorithm, parsed once per encoding."""
    if hash_name not in HASHES:
        raise CMSError("bad-signature", "unsupported digest %s" % hash_name)
    sig_alg = algos.SignedDigestAlgorithm.load(sig_alg_der)
    if sig_alg["algorithm"].native != "rsassa_pss":
        return asympad.PKCS1v15(), HASHES[hash_name]()
    params = sig_alg["parameters"]
    mgf_hash = HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
    pss = asympad.PSS(asympad.MGF1(mgf_hash()), params["salt_length"].native)
    return pss, HASHES[params["hash_algorithm"]["algorithm"].native]()


def check_signature(
    public_key, signature: bytes, data: bytes, sig_alg_der: bytes, hash_name: str
) -> None:  # type: ignore[no-untyped-def]
    """Raise InvalidSignature (or CMSError for what is not supported).

    ``sig_alg_der``: the encoded AlgorithmIdentifier (RSA PKCS#1 v1.5 or PSS,
    ECDSA); ``hash_name``: the digest (``sha256``), unless PSS names its own.
    """
    pad, hash_alg = _scheme(sig_alg_der, hash_name)
    if isinstance(public_key, rsa.RSAPublicKey):
        assert pad is not None
        public_key.verify(signature, data, pad, hash_alg)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_alg))
    else:
        raise CMSError("bad-signature", "unsupported key type %s" % type(public_key).__name__)


def _signed_by(asn1, issuer: Certificate) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``asn1`` (a certificate or CRL) carries a valid signature of ``issuer``."""
    tbs = "tbs_certificate" if isinstance(asn1, ax509.Certificate) else "tbs_cert_list"
    try:
        if asn1["signature_algorithm"].hash_algo in WEAK_HASHES:
            return False
        check_signature(
            issuer.public_key,
            asn1["signature"].native if tbs == "tbs_cert_list" else asn1["signature_value"].native,
            asn1[tbs].dump(),
            asn1["signature_algorithm"].dump(),
            asn1["signature_algorithm"].hash_algo,
        )
    except (InvalidSignature, CMSError, KeyError, ValueError):
        return False
    return True


# -- revocation ------------------------------------------------------------------


class RevocationList:
    """One CRL: its issuer, validity and revoked serial numbers.

    Its signature is checked against the issuer certificate a chain
    arrives with (a CA named in ``cms-verify-ca`` or an intermediate), once
    per issuer.
    """

    def __init__(self, der: bytes, source: str) -> None:
        self.source = source
        self.asn1 = acrl.CertificateList.load(der)
        tbs = self.asn1["tbs_cert_list"]
        self.issuer: ax509.Name = tbs["issuer"]
        self.this_update: datetime.datetime = tbs["this_update"].native
        self.next_update: Optional[datetime.datetime] = tbs["next_update"].native
        self.revoked: Set[int] = {
            entry["user_certificate"].native for entry in tbs["revoked_certificates"]
        }
        self._signers: Dict[bytes, bool] = {}

    def issued_by(self, issuer: Certificate) -> bool:
        verdict = self._signers.get(issuer.der)
        if verdict is None:
            usage = issuer.asn1.key_usage_value
            verdict = same_name(self.issuer, issuer.subject) and _signed_by(self.asn1, issuer)
            if usage is not None and "crl_sign" not in usage.native:
                verdict = False
            self._signers[issuer.der] = verdict
        return verdict

    def current(self, now: datetime.datetime) -> bool:
        return self.this_update <= now and (self.next_update is None or now <= self.next_update)


def load_crls(path: str) -> List[RevocationList]:
    """The CRLs in a PEM (one or more ``X509 CRL`` blocks) or DER file; ValueError if none."""
    return [RevocationList(der, path) for der in _read_pem_or_der(path, "X509 CRL")]


# -- chains ----------------------------------------------------------------------


class TrustStore:
    """Trusted CA certificates and the CRLs to check signers against."""

    def __init__(self, cas: Sequence[Certificate], crls: Sequence[RevocationList] = ()) -> None:
        self.cas = list(cas)
        self.crls = list(crls)

    def check(
        self,
        cert: Certificate,
        extra: Sequence[Certificate],
        now: Optional[datetime.datetime] = None,
    ) -> datetime.datetime:
        """Check ``cert`` for signing, chained through ``extra`` (the certificates a
        signature carries) to a CA; return when the verdict runs out (the first expiry of
        a link or of the CRL used).

        Raises :class:`CMSError` (``untrusted``, ``expired``, ``bad-cert``, ``revoked``).
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        _check_usage(cert, ca=False)
        expires = _check_time(cert, now)
        chain = self._chain(cert, extra)
        for depth in range(1, len(chain)):
            ca = chain[depth]
            _check_usage(ca, ca=True)
            _check_path_length(ca, chain[1:depth])
            expires = min(expires, _check_time(ca, now))
        if self.crls:
            expires = min(expires, self._check_revocation(cert, chain[1], now))
        return expires

    def _chain(self, cert: Certificate, extra: Sequence[Certificate]) -> List[Certificate]:
        """``cert``, the links from ``extra`` that issued it, and the trusted CA at the top."""
        chain = [cert]
        current = cert
        for _ in range(MAX_CHAIN):
            issuer = current.asn1.issuer
            for ca in self.cas:
                if same_name(ca.subject, issuer) and _signed_by(current.asn1, ca):
                    chain.append(ca)
                    return chain
            for link in extra:
                if (
                    link not in chain
                    and same_name(link.subject, issuer)
                    and _signed_by(current.asn1, link)
                ):
                    chain.append(link)
                    current = link
                    break
            else:
                break
        raise CMSError("untrusted", "certificate %s is not issued by a trusted CA" % cert.name)

    def _check_revocation(
        self, cert: Certificate, issuer: Certificate, now: datetime.datetime
    ) -> datetime.datetime:
        """When the CRLs that clear ``cert`` run out; raise if one lists it or none is current."""
        lists = [crl for crl in self.crls if crl.issued_by(issuer)]
        if not lists:
            raise CMSError("untrusted", "no CRL from %s in cms-crl" % issuer.name)
        for crl in lists:
            if cert.serial in crl.revoked:
                raise CMSError(
                    "revoked", "certificate %s is revoked (%s)" % (cert.name, crl.source)
                )
        current = [crl for crl in lists if crl.current(now)]
        if not current:
            raise CMSError(
                "untrusted",
                "the CRL from %s is not current (next update %s)"
                % (issuer.name, max(str(crl.next_update) for crl in lists)),
            )
        never = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
        return min(crl.next_update or never for crl in current)


def _check_time(cert: Certificate, now: datetime.datetime) -> datetime.datetime:
    asn1 = cert.asn1
    if not asn1.not_valid_before <= now <= asn1.not_valid_after:
        raise CMSError(
            "expired",
            "certificate %s is valid %s .. %s"
            % (cert.name, asn1.not_valid_before, asn1.not_valid_after),
        )
    return asn1.not_valid_after


def _check_path_length(ca: Certificate, below: Sequence[Certificate]) -> None:
    """``ca``'s pathLenConstraint: how many intermediate CAs may follow it (self-issued
    ones are not counted, RFC 5280 4.2.1.9)."""
    limit = ca.asn1.max_path_length
    if limit is None:
        return
    count = sum(1 for link in below if not link.asn1.self_issued)
    if count > limit:
        raise CMSError(
            "bad-cert",
            "CA %s allows %d intermediate CAs below it, the chain has %d" % (ca.name, limit, count),
        )


def _check_usage(cert: Certificate, ca: bool) -> None:
    asn1 = cert.asn1
    usage = asn1.key_usage_value
    name = cert.name
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

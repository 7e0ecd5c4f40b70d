"""A throwaway CMS keystore for the signed benchmarks, made with the cryptography package.

The tests make their keys with the ``openssl`` command (``test/pki.py``), so
that the project's CMS code is never checked against itself; a benchmark only
needs keys that work, and must run from the installed package, where
``test/`` is not.  Layout as ``cms-keystore`` expects: ``<name>.crt`` and
``private/<name>.key`` (PEM), a CA ``ca`` and S/MIME leaves signed by it.
"""

import datetime
import os
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["make_keystore"]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cc bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _unsigned(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
    start: datetime.datetime, end: datetime.datetime,
) -> x509.CertificateBuilder:
    """A certificate of ``subject`` by ``issuer`` valid from ``start`` to ``end``, unsigned."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _write(directory: str, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
    with open(os.path.join(directory, name + ".crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    path = os.path.join(directory, "private", name + ".key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def make_keystore(directory: str, leaves: Sequence[str], ca: str = "ca", days: int = 2) -> str:
    """Write CA ``ca`` and a P-256 leaf (CN = its name) per ``leaves`` into ``directory``.

    Returns ``directory``, for ``cms-keystore``; the CA is what ``cms-verify-ca`` names.
    """
    os.makedirs(os.path.join(directory, "private"), exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _unsigned(_name(ca), _name(ca), ca_key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )  # key_cert_sign, crl_sign
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory, ca, ca_key, ca_cert)
    for name in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _unsigned(_name(name), ca_cert.subject, key.public_key(), start, end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=False,
            )  # digital_signature, key_encipherment
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(directory, name, key, cert)
    return directory

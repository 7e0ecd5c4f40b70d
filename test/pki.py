"""A throwaway PKI made with the ``openssl`` command, and openssl's CMS operations.

Tests must not check the project's CMS code against itself: every CA,
certificate, signature and envelope that a test feeds in is made here by
``openssl``, and the project's own output is checked with ``openssl`` too.
Keystore layout as ``cms-keystore`` expects: ``<name>.crt``, ``private/<name>.key``.
"""

import os
import subprocess
import tempfile
from typing import List, Optional

#: S/MIME end-entity extensions, as an operator would give a cc host
LEAF_EXT = """\
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
CA_EXT = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
NOSIGN_EXT = """\
basicConstraints = CA:FALSE
keyUsage = keyEncipherment
"""
# `openssl ca` is the only openssl 3.0 command that sets dates in the past
CA_CONF = """\
[ca]
default_ca = expired
[expired]
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = none
x509_extensions = leaf
[anything]
commonName = supplied
[leaf]
""" + LEAF_EXT


def openssl(*args: str, data: Optional[bytes] = None) -> bytes:
    """Run ``openssl args``; return stdout, raise with stderr on failure."""
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), proc.stderr.decode()))
    return proc.stdout


class PKI:
    """CAs ``ca`` and ``ca2``; hosts ``user1``, ``server``, ``host2`` (from ca), ``stranger``
    (from ca2), ``expired`` (from ca, valid in 2020 only), ``nosign`` (no signing key usage)."""

    def __init__(self, directory: Optional[str] = None) -> None:
        self.dir = directory or tempfile.mkdtemp(prefix="ccpki-")
        os.makedirs(os.path.join(self.dir, "private"), exist_ok=True)
        self.make_ca("ca")
        self.make_ca("ca2")
        for name in ("user1", "server", "host2"):
            self.make_leaf(name, "ca")
        self.make_leaf("stranger", "ca2")
        self.make_leaf("nosign", "ca", ext=NOSIGN_EXT)
        self.make_expired("expired", "ca")

    def crt(self, name: str) -> str:
        return os.path.join(self.dir, name + ".crt")

    def key(self, name: str) -> str:
        return os.path.join(self.dir, "private", name + ".key")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _write(self, name: str, text: str) -> str:
        path = self.path(name)
        with open(path, "w", encoding="utf8") as f:
            f.write(text)
        return path

    def _newkey(self, name: str) -> None:
        openssl(
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            self.key(name),
        )

    def make_ca(self, name: str) -> None:
        self._newkey(name)
        ext = self._write(name + ".ext", "[v3]\n" + CA_EXT)
        openssl(
            "req",
            "-new",
            "-x509",
            "-key",
            self.key(name),
            "-subj",
            "/O=cc test/CN=" + name,
            "-days",
            "30",
            "-config",
            ext,
            "-extensions",
            "v3",
            "-out",
            self.crt(name),
        )

    def _csr(self, name: str) -> str:
        self._newkey(name)
        csr = self.path(name + ".csr")
        openssl(
            "req", "-new", "-key", self.key(name), "-subj", "/O=cc test/CN=" + name, "-out", csr
        )
        return csr

    def make_leaf(self, name: str, ca: str, ext: str = LEAF_EXT) -> None:
        csr = self._csr(name)
        extfile = self._write(name + ".ext", ext)
        openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.crt(ca),
            "-CAkey",
            self.key(ca),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            extfile,
            "-out",
            self.crt(name),
        )

    def make_expired(self, name: str, ca: str) -> None:
        csr = self._csr(name)
        cadir = self.path("ca-db")
        os.makedirs(os.path.join(cadir, "newcerts"), exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "w").close()
        self._write("ca-db/serial", "1000\n")
        conf = self._write("ca-db/ca.conf", CA_CONF.format(dir=cadir))
        openssl(
            "ca",
            "-batch",
            "-config",
            conf,
            "-cert",
            self.crt(ca),
            "-keyfile",
            self.key(ca),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20201231000000Z",
            "-in",
            csr,
            "-out",
            self.crt(name),
            "-notext",
        )

    # -- CMS with openssl --------------------------------------------------------

    def sign(self, name: str, data: bytes, *extra: str, detached: bool = True) -> bytes:
        """DER signature of ``data`` by ``name``, from ``openssl cms -sign``."""
        args = [
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-signer",
            self.crt(name),
            "-inkey",
            self.key(name),
            *extra,
        ]
        if not detached:
            args.append("-nodetach")
        return openssl(*args, data=data)

    def smime_sign(self, name: str, data: bytes, *extra: str) -> bytes:
        """Detached DER signature from ``openssl smime -sign`` (the original's tool)."""
        return openssl(
            "smime",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-signer",
            self.crt(name),
            "-inkey",
            self.key(name),
            *extra,
            data=data
        )

    def encrypt(self, recipient: str, data: bytes, *extra: str) -> bytes:
        """DER enveloped-data from ``openssl cms -encrypt`` (AES-128 unless ``extra`` says)."""
        cipher = [] if any(e.startswith("-aes") for e in extra) else ["-aes128"]
        return openssl(
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            *cipher,
            "-recip",
            self.crt(recipient),
            *extra,
            data=data
        )

    def verify(self, signature: bytes, content: Optional[bytes], ca: str = "ca") -> bytes:
        """``openssl smime -verify`` of a DER signature; returns the content it verified."""
        sig = self._write_bytes("check.sig", signature)
        args: List[str] = [
            "smime",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            sig,
            "-CAfile",
            self.crt(ca),
        ]
        if content is not None:
            args += ["-content", self._write_bytes("check.body", content)]
        return openssl(*args)

    def decrypt(self, recipient: str, der: bytes) -> bytes:
        """``openssl smime -decrypt`` of a DER enveloped-data."""
        path = self._write_bytes("check.env", der)
        return openssl(
            "smime",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            path,
            "-recip",
            self.crt(recipient),
            "-inkey",
            self.key(recipient),
        )

    def _write_bytes(self, name: str, data: bytes) -> str:
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

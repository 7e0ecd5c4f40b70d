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
#: a CA that allows no intermediate CA below it
CA_PATHLEN0_EXT = CA_EXT.replace("CA:TRUE", "CA:TRUE, pathlen:0")
NOSIGN_EXT = """\
basicConstraints = CA:FALSE
keyUsage = keyEncipherment
"""
# `openssl ca` is the only openssl 3.0 command that sets dates in the past, and the one that
# keeps the database CRLs are made from
CA_CONF = """\
[ca]
default_ca = expired
[expired]
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
default_md = sha256
default_crl_days = 30
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
    (from ca2), ``expired`` (from ca, valid in 2020 only), ``nosign`` (no signing key usage).

    :meth:`make_chains` adds intermediate CAs, :meth:`make_ec` P-256 keys, :meth:`revoke`
    and :meth:`make_crl` CRLs of ``ca``.
    """

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

    def _newkey(self, name: str, algorithm: str = "RSA", option: str = "") -> None:
        """A key; ``option`` (``-pkeyopt``) defaults to RSA-2048 or P-256."""
        if not option:
            option = "rsa_keygen_bits:2048" if algorithm == "RSA" else "ec_paramgen_curve:P-256"
        openssl("genpkey", "-algorithm", algorithm, "-pkeyopt", option, "-out", self.key(name))

    def make_ca(self, name: str, ext: str = CA_EXT, algorithm: str = "RSA") -> None:
        self._newkey(name, algorithm)
        ext = self._write(name + ".ext", "[v3]\n" + ext)
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

    def _csr(
        self, name: str, algorithm: str = "RSA", option: str = "", cn: Optional[str] = None
    ) -> str:
        self._newkey(name, algorithm, option)
        csr = self.path(name + ".csr")
        subject = "/O=cc test/CN=" + (cn or name)
        openssl("req", "-new", "-key", self.key(name), "-subj", subject, "-out", csr)
        return csr

    def make_leaf(
        self,
        name: str,
        ca: str,
        ext: str = LEAF_EXT,
        algorithm: str = "RSA",
        option: str = "",
        cn: Optional[str] = None,
    ) -> None:
        """A certificate ``name`` from ``ca``; its CN is ``cn`` (default: ``name``)."""
        csr = self._csr(name, algorithm, option, cn)
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

    def _ca(self, ca: str) -> List[str]:
        """``openssl ca`` arguments for CA ``ca``, its database made on first use."""
        cadir = self.path(ca + "-db")
        conf = os.path.join(cadir, "ca.conf")
        if not os.path.exists(conf):
            os.makedirs(os.path.join(cadir, "newcerts"))
            open(os.path.join(cadir, "index.txt"), "w").close()
            self._write(ca + "-db/serial", "1000\n")
            self._write(ca + "-db/crlnumber", "01\n")
            self._write(ca + "-db/ca.conf", CA_CONF.format(dir=cadir))
        return ["ca", "-batch", "-config", conf, "-cert", self.crt(ca), "-keyfile", self.key(ca)]

    def make_expired(
        self, name: str, ca: str, start: str = "20200101000000Z", end: str = "20201231000000Z"
    ) -> None:
        """A leaf valid from ``start`` to ``end`` (``YYYYMMDDHHMMSSZ``; 2020 by default)."""
        csr = self._csr(name)
        openssl(
            *self._ca(ca),
            "-startdate",
            start,
            "-enddate",
            end,
            "-in",
            csr,
            "-out",
            self.crt(name),
            "-notext",
        )

    def make_chains(self) -> None:
        """``inter`` (CA under ca) with leaf ``viainter``; ``notca`` (a leaf of ca) with
        ``undernotca`` under it; ``ca0`` (pathlen:0), its CA ``inter0`` and leaf ``deep``
        under that, and leaf ``shallow`` right under ca0."""
        self.make_leaf("inter", "ca", ext=CA_EXT)
        self.make_leaf("viainter", "inter")
        self.make_leaf("notca", "ca")
        self.make_leaf("undernotca", "notca")
        self.make_ca("ca0", CA_PATHLEN0_EXT)
        self.make_leaf("inter0", "ca0", ext=CA_EXT)
        self.make_leaf("deep", "inter0")
        self.make_leaf("shallow", "ca0")

    def make_ec(self) -> None:
        """P-256 keys: ``ec1`` (leaf of ca), ``ecca`` (CA) and its leaf ``ec2``."""
        self.make_leaf("ec1", "ca", algorithm="EC")
        self.make_ca("ecca", algorithm="EC")
        self.make_leaf("ec2", "ecca", algorithm="EC")

    def revoke(self, name: str, ca: str = "ca") -> None:
        """Mark ``name``'s certificate revoked in ``ca``'s database (``openssl ca -revoke``)."""
        openssl(*self._ca(ca), "-revoke", self.crt(name))

    def make_crl(self, filename: str, ca: str = "ca", *extra: str) -> str:
        """PEM CRL of ``ca`` (``openssl ca -gencrl``) at ``filename`` in the keystore; ``extra``
        e.g. ``-crl_nextupdate``.  Returns its path."""
        path = self.path(filename)
        openssl(*self._ca(ca), "-gencrl", *extra, "-out", path)
        return path

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
            data=data,
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
            data=data,
        )

    def verify(
        self,
        signature: bytes,
        content: Optional[bytes],
        ca: str = "ca",
        crl: str = "",
        tool: str = "smime",
    ) -> bytes:
        """``openssl smime -verify`` (or ``tool`` ``cms``) of a DER signature (with ``crl``:
        ``-crl_check`` against that CRL file); returns the content it verified."""
        sig = self._write_bytes("check.sig", signature)
        cafile = self.crt(ca)
        if crl:  # smime takes CRLs only from the CA store
            with open(cafile, "rb") as f, open(crl, "rb") as g:
                cafile = self._write_bytes("check.store", f.read() + g.read())
        args: List[str] = [
            tool,
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            sig,
            "-CAfile",
            cafile,
        ]
        if crl:
            args.append("-crl_check")
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

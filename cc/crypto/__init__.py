"""Signed and encrypted CC messages: the ``cms-*`` options of a config section.

The format is the original's, readable and writable with ``openssl smime``:

* signed: the signature frame is a DER CMS detached signature over the exact
  body bytes;
* signed and encrypted: the body frame is ``ENC1`` and the signature frame a
  DER enveloped-data (AES) holding an attached signed-data of the body;
* a blob is never encrypted; when signing, the body carries
  ``blob_hash = "SHA-256:<hex>"`` (``SHA-1:`` is accepted, as the original sent it).

Receiving, a context that verifies rejects unsigned, badly signed, untrusted,
expired, revoked, tampered, undecryptable, stale and replayed messages with a
:class:`~cc.message.MessageError` whose ``code`` names the reason.  Without any
``cms-*`` option there is no context at all (:meth:`CryptoContext.from_config`
returns None), so the unsigned path does no crypto work.

A replay is recognised by who signed what (:attr:`cc.crypto.cms.Verified.replay_key`),
never by the bytes on the wire: a captured message re-encoded, its ECDSA
signature twinned or its signed-data wrapped in an envelope is the same message.
"""

import datetime
import hashlib
import heapq
import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import skytools
from cryptography.hazmat.primitives.asymmetric import rsa
from skytools.config import ConfigError

from cc.crypto.certs import (
    Certificate,
    CMSError,
    RevocationList,
    TrustStore,
    load_certificate,
    load_crls,
    load_private_key,
)
from cc.crypto.cms import (
    MAX_CERTIFICATES,
    MAX_SIGNATURE_SIZE,
    Signer,
    Verified,
    VerifyCache,
    envelope,
    open_envelope,
    verify,
)
from cc.message import DEFAULT_LIMITS, BodyLimits, CCMessage, MessageError
from cc.security import CMS_OPTIONS

__all__ = ["CryptoContext", "ReplayCache", "OPTIONS"]

#: options that turn a context on (``cms-keystore`` alone does not)
OPTIONS = CMS_OPTIONS

#: body frame of an encrypted message
ENC_MARK = b"ENC1"

#: how long signatures are remembered when ``cms-time-window`` is off
DEFAULT_REPLAY_SECONDS = 300.0

#: default of ``cms-replay-cache-size``: live entries (about 200 bytes each: 200 MB when full)
DEFAULT_REPLAY_CACHE_SIZE = 1000000

#: an envelope's own overhead beyond the signed-data it holds (recipient info, padding)
ENVELOPE_OVERHEAD = 8192

log = logging.getLogger("cc.crypto")

#: signer certificates whose chain (and CRL) verdict is remembered, each until the first
#: expiry of a link or CRL; a new context (a reload) starts with none
TRUSTED_CACHE_MAX = 1024

_BLOB_HASHES = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256}


class ReplayCache:
    """Who signed what (replay keys), each kept until the time in which the message would
    be accepted ends: never forgotten sooner.

    When ``maxsize`` live entries leave no room, :meth:`add` refuses the new one
    (``replay-cache-full``): the message is refused rather than a live entry
    forgotten, since a forgotten one could be replayed.  Kept by the process
    across reloads; a reload may change ``maxsize``.
    """

    def __init__(self, maxsize: int = DEFAULT_REPLAY_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._expires: Dict[bytes, float] = {}
        self._queue: List[Tuple[float, bytes]] = []  # a heap of (expiry, key), one per entry

    def __len__(self) -> int:
        return len(self._expires)

    def add(self, key: bytes, expires: float, now: Optional[float] = None) -> bool:
        """Remember ``key`` until ``expires`` (POSIX time); False if it is still remembered.

        Raises :class:`~cc.message.MessageError` ``replay-cache-full`` when full.
        """
        now = time.time() if now is None else now
        queue = self._queue
        while queue and queue[0][0] <= now:
            del self._expires[heapq.heappop(queue)[1]]
        if key in self._expires:
            return False
        if len(queue) >= self.maxsize:
            raise MessageError(
                "replay-cache-full",
                "replay cache full: %d signed messages within their time window "
                "(cms-replay-cache-size)" % len(queue),
            )
        self._expires[key] = expires
        heapq.heappush(queue, (expires, key))
        return True


class CryptoContext:
    """Signs, encrypts, verifies and decrypts CC messages for one config section.

    ::

        # directory with <name>.crt and private/<name>.key (PEM)
        #cms-keystore = /etc/cc/keys
        # sign every message this process creates with this key
        #cms-sign = host1
        # accept only messages signed by a certificate from these CAs
        #cms-verify-ca = ca
        # encrypt to this certificate (needs cms-sign)
        #cms-encrypt = server
        # accept only messages encrypted to this key (needs cms-verify-ca)
        #cms-decrypt = server
        # reject messages whose time is further than this from now (seconds, 0 = off)
        #cms-time-window = 0
        # refuse signers these CRLs revoke (PEM; relative to cms-keystore; re-read on SIGHUP)
        #cms-crl = ca.crl
        # signed messages remembered against replay (peak rate x 2 x cms-time-window)
        #cms-replay-cache-size = 1000000
        # refuse signatures larger than this (bytes, less the content an envelope carries)
        #cms-max-signature-size = 65536
        # refuse signatures carrying more certificates than this
        #cms-max-certificates = 8
    """

    def __init__(
        self,
        keystore: str = "",
        sign_name: str = "",
        verify_ca: Optional[List[str]] = None,
        encrypt_name: str = "",
        decrypt_name: str = "",
        time_window: float = 0.0,
        replay: Optional[ReplayCache] = None,
        crl_files: Optional[List[str]] = None,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
        max_signature_size: int = MAX_SIGNATURE_SIZE,
        max_certificates: int = MAX_CERTIFICATES,
    ) -> None:
        self.keystore = keystore
        if encrypt_name and not sign_name:
            raise ConfigError("cms-encrypt needs cms-sign: encrypted messages are signed inside")
        if decrypt_name and not verify_ca:
            raise ConfigError("cms-decrypt needs cms-verify-ca: the decrypted body must be signed")
        if crl_files and not verify_ca:
            raise ConfigError("cms-crl needs cms-verify-ca: CRLs are checked when verifying")
        if not math.isfinite(time_window) or time_window < 0:
            raise ConfigError("cms-time-window must be a finite number of seconds, 0 = off")
        if min(replay_cache_size, max_signature_size, max_certificates) <= 0:
            raise ConfigError(
                "cms-replay-cache-size, cms-max-signature-size and cms-max-certificates "
                "must be positive"
            )
        self.signer: Optional[Signer] = None
        if sign_name:
            try:
                self.signer = Signer(self._cert(sign_name), self._key(sign_name))
            except CMSError as ex:
                raise ConfigError("cms-sign = %s: %s" % (sign_name, ex.msg)) from None
        self.encrypt_cert = self._cert(encrypt_name) if encrypt_name else None
        if self.encrypt_cert is not None and not isinstance(
            self.encrypt_cert.public_key, rsa.RSAPublicKey
        ):
            raise ConfigError("cms-encrypt = %s: encryption needs an RSA key" % encrypt_name)
        self.decrypt_cert: Optional[Certificate] = None
        self.decrypt_key = None
        if decrypt_name:
            self.decrypt_cert, self.decrypt_key = self._cert(decrypt_name), self._key(decrypt_name)
        self.trust: Optional[TrustStore] = None
        if verify_ca:
            crls = [crl for path in crl_files or [] for crl in self._crls(path)]
            self.trust = TrustStore([self._cert(n) for n in verify_ca], crls)
        self.time_window = time_window
        self.replay = replay if replay is not None else ReplayCache()
        self.replay.maxsize = replay_cache_size
        self.max_signature_size = max_signature_size
        self.max_certificates = max_certificates
        self._trusted: Dict[bytes, float] = {}  # a verdict's end, POSIX time
        self._signatures = VerifyCache()
        if self.verifying and time_window <= 0:
            log.warning(
                "verifying without cms-time-window: a signed message is refused as a replay "
                "only for %d s after it is first seen; after that it is accepted again",
                DEFAULT_REPLAY_SECONDS,
            )

    @classmethod
    def from_config(
        cls, cf: skytools.Config, replay: Optional[ReplayCache] = None
    ) -> Optional["CryptoContext"]:
        """The context a section asks for, or None when it has no ``cms-*`` option."""
        if not any(cf.has_option(opt) and cf.get(opt) for opt in OPTIONS):
            return None
        return cls(
            keystore=cf.getfile("cms-keystore", ""),
            sign_name=cf.get("cms-sign", ""),
            verify_ca=cf.getlist("cms-verify-ca", []),
            encrypt_name=cf.get("cms-encrypt", ""),
            decrypt_name=cf.get("cms-decrypt", ""),
            time_window=cf.getfloat("cms-time-window", 0),
            replay=replay,
            crl_files=cf.getlist("cms-crl", []),
            replay_cache_size=cf.getint("cms-replay-cache-size", DEFAULT_REPLAY_CACHE_SIZE),
            max_signature_size=cf.getbytes("cms-max-signature-size", str(MAX_SIGNATURE_SIZE)),
            max_certificates=cf.getint("cms-max-certificates", MAX_CERTIFICATES),
        )

    # -- keystore ------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        name = parts[-1]
        if "/" in name or name.startswith("."):
            raise ConfigError("bad key name %r in cms-* option" % name)
        return os.path.join(self.keystore, *parts)

    def _cert(self, name: str) -> Certificate:
        path = self._path(name + ".crt")
        try:
            return load_certificate(path)
        except (OSError, ValueError) as ex:
            raise ConfigError("cannot load certificate %s: %s" % (path, ex)) from None

    def _key(self, name: str):  # type: ignore[no-untyped-def]
        path = self._path("private", name + ".key")
        try:
            return load_private_key(path)
        except (OSError, ValueError, TypeError) as ex:
            raise ConfigError("cannot load private key %s: %s" % (path, ex)) from None

    def _crls(self, path: str) -> List[RevocationList]:
        path = os.path.join(self.keystore, os.path.expanduser(path))
        try:
            return load_crls(path)
        except (OSError, ValueError) as ex:
            raise ConfigError("cannot load CRL %s: %s" % (path, ex)) from None

    @property
    def verifying(self) -> bool:
        return self.trust is not None

    # -- sending ---------------------------------------------------------------

    def seal(self, msg: CCMessage) -> CCMessage:
        """``msg`` (just built, unsigned) signed and encrypted as configured."""
        signer = self.signer
        if signer is None:
            return msg
        body = msg.get_body()
        body_bytes = msg.body_bytes
        blob = msg.blob
        if blob is not None:
            body = dict(body, blob_hash="SHA-256:" + hashlib.sha256(blob).hexdigest())
            body_bytes = json.dumps(body).encode("utf8")
        if self.encrypt_cert is not None:
            signed = signer.sign(body_bytes, detached=False)
            body_frame, signature = ENC_MARK, envelope(signed, self.encrypt_cert)
        else:
            body_frame = body_bytes
            signature = signer.sign(body_bytes)
        frames = msg.route + [b"", msg.type.encode("ascii"), body_frame, signature]
        if blob is not None:
            frames.append(blob)
        sealed = CCMessage(frames)
        sealed.set_body(body, None)
        return sealed

    # -- receiving --------------------------------------------------------------

    def open(self, msg: CCMessage, limits: BodyLimits = DEFAULT_LIMITS) -> Dict[str, Any]:
        """The checked body of ``msg``; raise MessageError when it must be rejected.

        Called by the receive path's :class:`~cc.message.BodyGate`; the
        verified (decrypted) body is parsed within its ``limits``.
        """
        if msg.checked:
            return msg.get_body()
        body_bytes = msg.body_bytes
        signature = msg.signature
        verified: Optional[Verified] = None
        try:
            if self.decrypt_key is not None:
                if body_bytes != ENC_MARK:
                    raise MessageError("unencrypted", "expect encrypted message")
                if not signature:
                    raise MessageError("undecryptable", "encrypted message without envelope")
                if len(signature) > self.max_signature_size + limits.max_size + ENVELOPE_OVERHEAD:
                    raise MessageError("undecryptable", "envelope larger than its limits")
                signed = open_envelope(signature, self.decrypt_cert, self.decrypt_key)
                verified = self._verify(signed, None)
            elif body_bytes == ENC_MARK:
                raise MessageError("undecryptable", "got encrypted msg but cannot decrypt it")
            elif self.trust is not None:
                if not signature:
                    raise MessageError("unsigned", "expect signed message")
                verified = self._verify(signature, body_bytes)
        except CMSError as ex:
            raise MessageError(ex.code, ex.msg) from None
        if verified is not None:
            body_bytes = verified.content
        body = limits.parse(body_bytes, msg.type)
        expires = self._check_time(body)
        self._check_blob(body, msg.blob, signed=verified is not None)
        if verified is not None:
            if not self.replay.add(verified.replay_key, expires):
                raise MessageError("replay", "message seen before (replay)")
            msg.set_body(body, verified.cert.info())
        else:
            msg.set_body(body, None)
        return body

    def _verify(self, signed: bytes, content: Optional[bytes]) -> Verified:
        assert self.trust is not None
        verified = verify(
            signed, content, self._signatures, self.max_signature_size, self.max_certificates
        )
        cert = verified.cert
        now = time.time()
        expires = self._trusted.get(cert.der)
        if expires is None or expires < now:
            moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            expires = self.trust.check(cert, verified.carried, moment).timestamp()
            if len(self._trusted) >= TRUSTED_CACHE_MAX:
                self._trusted.clear()
            self._trusted[cert.der] = expires
        return verified

    def _check_time(self, body: Dict[str, Any]) -> float:
        """Check the body's ``time`` against ``cms-time-window``; return until when the
        message would be accepted, which is how long the replay cache keeps it."""
        now = time.time()
        if self.time_window <= 0:
            return now + DEFAULT_REPLAY_SECONDS
        stamp = body.get("time")
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
            raise MessageError("stale", "message has no valid time (a number)")
        try:
            stamp = float(stamp)
        except OverflowError:  # an integer beyond any float
            stamp = math.inf
        if not math.isfinite(stamp):
            raise MessageError("stale", "message time is not finite")
        diff = abs(now - stamp)
        if diff > self.time_window:
            raise MessageError(
                "stale", "time diff bigger than %s s: %.1f s" % (self.time_window, diff)
            )
        return stamp + self.time_window

    def _check_blob(self, body: Dict[str, Any], blob: Optional[bytes], signed: bool) -> None:
        declared = body.get("blob_hash")
        if blob is None:
            if declared:
                raise MessageError("blob-hash", "blob hash exists without blob")
            return
        if not signed and not self.verifying:
            return  # nothing to protect: the body itself is not authenticated
        if not declared or not isinstance(declared, str):
            raise MessageError("blob-hash", "blob hash missing")
        kind, _, hexdigest = declared.partition(":")
        hasher = _BLOB_HASHES.get(kind)
        if hasher is None:
            raise MessageError("blob-hash", "unsupported hash type %s" % kind[:20])
        if hasher(blob).hexdigest() != hexdigest.lower():
            raise MessageError("blob-hash", "blob hash does not match")

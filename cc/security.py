"""The door to :mod:`cc.crypto`: its code is loaded only when a section turns it on.

cc.crypto pulls in cryptography and asn1crypto, about 12 MB per process
(6 MB of it private).  A host agent runs six processes that, on most
fleets, neither sign nor use CURVE; they should not pay for it.  The
server, the daemons and the proxy handler ask here, and the import happens
only for a section with a ``cms-*`` or ``curve-*`` option.
"""

from typing import TYPE_CHECKING, Optional

import skytools
import zmq

from cc.options import Option

if TYPE_CHECKING:
    from cc.crypto import CryptoContext, ReplayCache
    from cc.crypto.curve import CurveServer

__all__ = [
    "CMS_DECLARED",
    "CURVE_SERVER_DECLARED",
    "CURVE_CLIENT_DECLARED",
    "CMS_OPTIONS",
    "crypto_context",
    "replay_cache",
    "curve_server",
    "curve_client",
    "check_curve_client",
]

#: options that turn a CMS context on (``cms-keystore`` alone does not)
CMS_OPTIONS = (
    "cms-sign",
    "cms-verify-ca",
    "cms-encrypt",
    "cms-decrypt",
    "cms-time-window",
    "cms-crl",  # alone it is refused (it needs cms-verify-ca), not ignored
)


#: the cms-* options (read by :meth:`cc.crypto.CryptoContext.from_config`)
CMS_DECLARED = (
    Option("cms-keystore", "path", None, "directory of the keys and certificates the cms-*"
           " options name", example="/etc/cc/keys"),
    Option("cms-sign", "str", None, "sign every message sent with this key", protects=True),
    Option("cms-verify-ca", "list", None, "accept only messages signed under these CAs",
           protects=True),
    Option("cms-encrypt", "str", None, "encrypt every message sent to this certificate",
           protects=True),
    Option("cms-decrypt", "str", None, "accept only messages encrypted to this key",
           protects=True),
    Option("cms-time-window", "seconds", 0, "refuse signatures older or newer than this",
           protects=True),
    Option("cms-crl", "list", None, "certificate revocation lists (with cms-verify-ca)",
           protects=True),
    Option("cms-replay-cache-size", "int", 1000000, "signatures remembered until their window"
           " ends; when full, new signed messages are refused (size: messages/s x 2 x window)",
           protects=True),
    Option("cms-max-signature-size", "bytes", "64k", "a signature frame larger than this is"
           " refused unread", protects=True),
    Option("cms-max-certificates", "int", 8, "a signature carrying more certificates is"
           " refused before any is parsed", protects=True),
)  # fmt: skip

#: CURVE on a bound socket (read by :class:`cc.crypto.curve.CurveServer`)
CURVE_SERVER_DECLARED = (
    Option("curve-server-key", "path", None, "the server's secret certificate: turns CURVE on",
           example="/etc/cc/curve/server.key_secret", protects=True),
    Option("curve-clients-dir", "path", None, "public certificates of the clients let in",
           example="/etc/cc/curve/clients", protects=True),
)  # fmt: skip

#: CURVE on a connecting socket (read by :func:`cc.crypto.curve.configure_client`)
CURVE_CLIENT_DECLARED = (
    Option("curve-client-key", "path", None, "own secret certificate",
           example="/etc/cc/curve/host1.key_secret", protects=True),
    Option("curve-remote-key", "path", None, "the remote server's public certificate",
           example="/etc/cc/curve/server.key", protects=True),
)  # fmt: skip


def _any_set(cf: skytools.Config, options: "tuple[str, ...]") -> bool:
    return any(cf.has_option(opt) and cf.get(opt) for opt in options)


def crypto_context(
    cf: skytools.Config, replay: "Optional[ReplayCache]" = None
) -> "Optional[CryptoContext]":
    """The CMS context ``cf`` asks for, or None (and no crypto code loaded)."""
    if not _any_set(cf, CMS_OPTIONS):
        return None
    from cc.crypto import CryptoContext

    return CryptoContext.from_config(cf, replay)


def replay_cache(cf: skytools.Config) -> "Optional[ReplayCache]":
    """A replay cache when ``cf`` turns CMS on (to keep across reloads), else None."""
    if not _any_set(cf, CMS_OPTIONS):
        return None
    from cc.crypto import ReplayCache

    return ReplayCache()


def curve_server(zctx: zmq.Context, cf: skytools.Config) -> "Optional[CurveServer]":
    """The CURVE server setup ``cf`` asks for (``curve-server-key``), or None."""
    if not _any_set(cf, ("curve-server-key",)):
        return None
    from cc.crypto.curve import CurveServer

    return CurveServer.from_config(zctx, cf)


def check_curve_client(cf: skytools.Config) -> None:
    """Load the CURVE client keys ``cf`` names (a config check: ConfigError if they do not)."""
    if _any_set(cf, ("curve-client-key", "curve-remote-key")):
        from cc.crypto.curve import load_client_keys

        load_client_keys(cf)


def curve_client(sock: zmq.Socket, cf: skytools.Config) -> bool:
    """Make ``sock`` a CURVE client if ``cf`` has ``curve-client-key`` or ``curve-remote-key``."""
    if not _any_set(cf, ("curve-client-key", "curve-remote-key")):
        return False
    from cc.crypto.curve import configure_client

    return configure_client(sock, cf)

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

if TYPE_CHECKING:
    from cc.crypto import CryptoContext, ReplayCache
    from cc.crypto.curve import CurveServer

__all__ = ["CMS_OPTIONS", "crypto_context", "replay_cache", "curve_server", "curve_client"]

#: options that turn a CMS context on (``cms-keystore`` alone does not)
CMS_OPTIONS = (
    "cms-sign",
    "cms-verify-ca",
    "cms-encrypt",
    "cms-decrypt",
    "cms-time-window",
    "cms-crl",  # alone it is refused (it needs cms-verify-ca), not ignored
)


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


def curve_client(sock: zmq.Socket, cf: skytools.Config) -> bool:
    """Make ``sock`` a CURVE client if ``cf`` has ``curve-client-key`` or ``curve-remote-key``."""
    if not _any_set(cf, ("curve-client-key", "curve-remote-key")):
        return False
    from cc.crypto.curve import configure_client

    return configure_client(sock, cf)

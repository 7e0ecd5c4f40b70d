"""CURVE encryption and client allow-lists for links between ccs.

Keys are pyzmq's certificate files (``zmq.auth.create_certificates``, or
``cc-keygen``): ``<name>.key`` holds the public key, ``<name>.key_secret``
both.  The server side turns CURVE on for its ROUTER socket and runs a ZAP
authenticator (a thread of pyzmq's) that admits only clients whose public
certificate is in ``curve-clients-dir``; SIGHUP re-reads that directory.
Clients (proxy handler, daemons) name their own secret certificate and the
server's public one.
"""

import logging
import os
from typing import Optional

import skytools
import zmq
import zmq.auth
from skytools.config import ConfigError
from zmq.auth.thread import ThreadAuthenticator

__all__ = [
    "CurveServer",
    "configure_client",
    "load_client_keys",
    "load_server_key",
    "TEMPLATE_SERVER",
    "TEMPLATE_CLIENT",
]

log = logging.getLogger("cc.crypto.curve")

TEMPLATE_SERVER = """\
# CURVE on the server socket: its secret certificate, and the directory of
# public certificates of the clients allowed in (re-read on SIGHUP)
#curve-server-key = /etc/cc/curve/server.key_secret
#curve-clients-dir = /etc/cc/curve/clients
"""

TEMPLATE_CLIENT = """\
# CURVE to the remote cc: own secret certificate, the server's public one
#curve-client-key = /etc/cc/curve/host1.key_secret
#curve-remote-key = /etc/cc/curve/server.key
"""


def _load(path: str, secret: bool, option: str) -> "tuple[bytes, Optional[bytes]]":
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as ex:
        raise ConfigError("%s: cannot load %s: %s" % (option, path, ex)) from None
    if secret and not secret_key:
        raise ConfigError("%s: %s holds no secret key (use the .key_secret file)" % (option, path))
    return public, secret_key


def load_server_key(cf: skytools.Config) -> "tuple[bytes, Optional[bytes]]":
    """The server's key pair from ``curve-server-key`` (ConfigError when it does not load)."""
    return _load(cf.getfile("curve-server-key"), True, "curve-server-key")


class CurveServer:
    """CURVE and the ZAP allow-list for one server socket."""

    def __init__(self, zctx: zmq.Context, cf: skytools.Config) -> None:
        self.public, self.secret = load_server_key(cf)
        self.clients_dir = ""
        self.auth = ThreadAuthenticator(zctx, log=log)
        self.auth.start()
        self.configure(cf)

    @classmethod
    def from_config(cls, zctx: zmq.Context, cf: skytools.Config) -> Optional["CurveServer"]:
        """The CURVE setup a section asks for, or None without ``curve-server-key``."""
        if not cf.get("curve-server-key", ""):
            return None
        return cls(zctx, cf)

    def configure(self, cf: skytools.Config) -> None:
        """(Re-)read the allowed clients; without ``curve-clients-dir`` any key gets in."""
        clients_dir = cf.getfile("curve-clients-dir", "")
        if clients_dir and not os.path.isdir(clients_dir):
            raise ConfigError("curve-clients-dir: %s is not a directory" % clients_dir)
        if clients_dir:
            self.auth.configure_curve(domain="*", location=clients_dir)
            count = len([n for n in os.listdir(clients_dir) if n.endswith(".key")])
            log.info("CURVE: %d allowed client keys in %s", count, clients_dir)
        else:
            self.auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
            log.warning("CURVE without curve-clients-dir: any client key is let in")
        self.clients_dir = clients_dir

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a CURVE server."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def load_client_keys(cf: skytools.Config) -> "Optional[tuple[bytes, Optional[bytes], bytes]]":
    """(public, secret, the server's public) key of a CURVE client section, or None
    without ``curve-*`` options; ConfigError when they do not load."""
    key_file = cf.get("curve-client-key", "")
    remote_file = cf.get("curve-remote-key", "")
    if not key_file and not remote_file:
        return None
    if not (key_file and remote_file):
        raise ConfigError("CURVE needs both curve-client-key and curve-remote-key")
    public, secret = _load(os.path.expanduser(key_file), True, "curve-client-key")
    server_public, _ = _load(os.path.expanduser(remote_file), False, "curve-remote-key")
    return public, secret, server_public


def configure_client(sock: zmq.Socket, cf: skytools.Config) -> bool:
    """Make ``sock`` (before it connects) a CURVE client if the section says so."""
    keys = load_client_keys(cf)
    if keys is None:
        return False
    public, secret, server_public = keys
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
    return True

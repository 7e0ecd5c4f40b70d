"""The ``zmq_*`` INI options, applied to a socket the same way everywhere.

Used for the server's ROUTER, the proxy's DEALER and daemons' connections,
with the original's option names and defaults, plus heartbeat and reconnect
tuning that libzmq 4 offers.
"""

import logging
from typing import Any, Dict

import skytools
import zmq
from skytools.config import ConfigError

from cc.options import Option

__all__ = ["configure_socket", "OPTIONS", "TEMPLATE"]

log = logging.getLogger("cc.sockopts")

#: INI template fragment, shared by every component that owns a socket
TEMPLATE = """\
# ZeroMQ tuning; sizes take K, M, G suffixes
#zmq_hwm = 100
#zmq_linger = 500
#zmq_rcvbuf = 0
#zmq_sndbuf = 0
#zmq_tcp_keepalive = 1
#zmq_tcp_keepalive_intvl = 15
#zmq_tcp_keepalive_idle = 240
#zmq_tcp_keepalive_cnt = 4
# ZMTP heartbeats (ms; 0 = off) and reconnect back-off (ms)
#zmq_heartbeat_ivl = 0
#zmq_heartbeat_timeout = 0
#zmq_heartbeat_ttl = 0
#zmq_reconnect_ivl = 100
#zmq_reconnect_ivl_max = 0
"""

# option -> (default, zmq constant, reader)
_INT_OPTIONS = (
    ("zmq_linger", 500, "LINGER"),
    ("zmq_tcp_keepalive_intvl", 15, "TCP_KEEPALIVE_INTVL"),
    ("zmq_tcp_keepalive_idle", 240, "TCP_KEEPALIVE_IDLE"),
    ("zmq_tcp_keepalive_cnt", 4, "TCP_KEEPALIVE_CNT"),
    ("zmq_heartbeat_ivl", 0, "HEARTBEAT_IVL"),
    ("zmq_heartbeat_timeout", 0, "HEARTBEAT_TIMEOUT"),
    ("zmq_heartbeat_ttl", 0, "HEARTBEAT_TTL"),
    ("zmq_reconnect_ivl", 100, "RECONNECT_IVL"),
    ("zmq_reconnect_ivl_max", 0, "RECONNECT_IVL_MAX"),
)


#: the declarations (the default of zmq_hwm is the server's and the daemons'; handlers with
#: a queue of their own give theirs to :func:`configure_socket`)
OPTIONS = (
    Option("zmq_hwm", "int", 100, "high-water mark in both directions"),
    Option("zmq_rcvbuf", "bytes", "0", "kernel receive buffer; 0: the system's"),
    Option("zmq_sndbuf", "bytes", "0", "kernel send buffer; 0: the system's"),
    Option("zmq_tcp_keepalive", "int", 1, "TCP keepalive: 1 on, 0 off"),
) + tuple(
    Option(name, "int", default, "ZMQ_%s (ms, or seconds for TCP keepalive)" % const)
    for name, default, const in _INT_OPTIONS
)


def configure_socket(sock: zmq.Socket, cf: skytools.Config, **defaults: Any) -> Dict[str, int]:
    """Apply the ``zmq_*`` options of ``cf`` to ``sock``; return the values used.

    ``defaults`` overrides the built-in default of an option (``zmq_hwm=1``).
    """
    used: Dict[str, int] = {}

    def getint(name: str, default: int) -> int:
        value = cf.getint(name, defaults.get(name, default))
        if value < 0:
            raise ConfigError("%s must not be negative" % name)
        used[name] = value
        return value

    hwm = getint("zmq_hwm", 100)
    if hwm < 1:
        raise ConfigError("zmq_hwm must be at least 1 (every queue is bounded)")
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for name, default, const in _INT_OPTIONS:
        value = getint(name, default)
        if name.startswith("zmq_heartbeat") and not value:
            continue
        sock.setsockopt(getattr(zmq, const), value)
    keepalive = getint("zmq_tcp_keepalive", 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1 if keepalive > 0 else 0)
    for name, const in (("zmq_rcvbuf", zmq.RCVBUF), ("zmq_sndbuf", zmq.SNDBUF)):
        size = cf.getbytes(name, str(defaults.get(name, "0")))
        used[name] = size
        if size > 0:
            sock.setsockopt(const, size)
    return used

"""What a handler may use of the server that runs it: :class:`ServerView`.

Handlers get this view and never the server, so the server can change inside
without breaking them: everything a handler does beyond its own sockets and
files goes through the few methods here.  The view also keeps what handlers
offer the server's pages (statswriter's stores, taskrouter's registrations),
so that the pages read what was registered instead of looking inside handlers.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import zmq
from tornado.ioloop import IOLoop

from cc.message import CCMessage
from cc.policy import foreign_host
from cc.stats import Stats
from cc.statsstore import StatsStore

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler import CCHandler
    from cc.server import CCServer

__all__ = ["ServerView"]

#: host -> what a taskrouter knows of its registration
Registrations = Dict[str, Dict[str, Any]]


class ServerView:
    """The server as a handler sees it: the one thing the server hands a handler.

    Sending (out of the server's ROUTER socket):

    * :meth:`send`: a message this server made (a reply), sealed as ``cms-*`` says;
    * :meth:`relay`: frames passing through, sent as they came (their signature intact);
    * :meth:`seal` and :meth:`open_body`: the server's crypto, for a handler's own
      sockets (a ping and its pong);
    * :meth:`get_handler` and :meth:`forward`: another handler, by section name, and
      passing a message on to it (``forward-to``).

    Running: :attr:`io_loop`, :attr:`zctx` (for a handler's own sockets),
    :attr:`stats` (counters: ``stats.inc(name, n)``).

    Reporting: :meth:`add_status_source` (an infofile section),
    :meth:`add_state_source` (a ``pub.state`` key), :meth:`add_stats_store`
    (the reports ``metrics-http`` shows), :meth:`add_registrations` (the
    fleet page's task hosts); each with a ``remove_`` twin for stop().

    Read-only facts: :attr:`endpoint`, :attr:`hostname`, :attr:`pidfile`,
    :attr:`verbosity`.

    The metrics pages read what handlers added: :meth:`stats_stores`,
    :meth:`registered_hosts`.
    """

    __slots__ = ("_server", "_stores", "_registrations", "reload_ok")

    def __init__(self, server: "CCServer") -> None:
        self._server = server
        # kept per handler instance, not per section: on reload a section's new handler
        # adds its own before the old one's stop() removes the old's, and the handlers
        # of a reload that failed remove only their own
        self._stores: List[StatsStore] = []
        self._registrations: List[Callable[[], Registrations]] = []
        #: whether the latest reload took the new config (jobmgr HUPs its daemons only then)
        self.reload_ok = True

    # -- sending ---------------------------------------------------------------

    def send(self, msg: CCMessage) -> None:
        """Send a message made here (a reply) out of the ROUTER, sealed where configured."""
        self._server.send(msg)

    def relay(self, frames: List[bytes]) -> None:
        """Send frames made elsewhere out of the ROUTER as they are; the first is the peer."""
        self._server.cclocal.send_multipart(frames)

    def seal(self, msg: CCMessage) -> CCMessage:
        """``msg``, made here, signed (and encrypted) as ``cms-*`` says."""
        return self._server.seal(msg)

    def open_body(self, msg: CCMessage) -> Dict[str, Any]:
        """``msg``'s body, through the server's gate (bounded, verified where configured)."""
        return self._server.open_body(msg)

    def forward(self, target: "CCHandler", msg: CCMessage) -> str:
        """Pass ``msg`` on to ``target`` (``forward-to``) through the server's message path:
        a crash is contained, logged and answered, a stopped target gets nothing.  Returns
        ``ok``, ``crashed`` or ``stopping``."""
        return self._server.forward(target, msg)

    def get_handler(self, name: str) -> "CCHandler":
        """The handler of section ``name``; while a reload builds handlers, the new one."""
        return self._server.handlers.get(name)

    # -- running ---------------------------------------------------------------

    @property
    def io_loop(self) -> IOLoop:
        return self._server.io_loop

    @property
    def zctx(self) -> zmq.Context:
        return self._server.zctx

    @property
    def stats(self) -> Stats:
        return self._server.stats

    # -- reporting -------------------------------------------------------------

    def add_status_source(self, name: str, lines: Callable[[], List[str]]) -> None:
        """Add a ``[name]`` section (``lines()``) to the infofile, e.g. jobmgr's job states."""
        self._server.add_status_source(name, lines)

    def remove_status_source(self, name: str, lines: Callable[[], List[str]]) -> None:
        self._server.remove_status_source(name, lines)

    def add_state_source(self, key: str, value: Callable[[], Any]) -> None:
        """Add ``key: value()`` to ``pub.state`` and ``/status``, e.g. jobmgr's jobs."""
        self._server.add_state_source(key, value)

    def remove_state_source(self, key: str, value: Callable[[], Any]) -> None:
        self._server.remove_state_source(key, value)

    def add_stats_store(self, store: StatsStore) -> None:
        """Show ``store``'s reports on ``/metrics``, ``/status`` and the fleet page."""
        self._stores.append(store)

    def remove_stats_store(self, store: StatsStore) -> None:
        if store in self._stores:
            self._stores.remove(store)

    def add_registrations(self, hosts: Callable[[], Registrations]) -> None:
        """Show ``hosts()`` (host -> what its registration says) on the fleet page."""
        self._registrations.append(hosts)

    def remove_registrations(self, hosts: Callable[[], Registrations]) -> None:
        if hosts in self._registrations:  # ==: a bound method is a new object at every access
            self._registrations.remove(hosts)

    def stats_stores(self) -> List[StatsStore]:
        """The stores handlers added (for the metrics pages)."""
        return list(self._stores)

    def registered_hosts(self) -> Registrations:
        """Every taskrouter's registered hosts (for the fleet page)."""
        hosts: Registrations = {}
        for source in self._registrations:
            hosts.update(source())
        return hosts

    # -- facts -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The address the ROUTER is bound to (the port picked, where ``*`` asked for one)."""
        return self._server.endpoint

    @property
    def hostname(self) -> str:
        """This host's name in messages (``[ccserver] hostname``; fixed until a restart)."""
        return self._server.settings.hostname

    @property
    def pidfile(self) -> str:
        """The server's pidfile ("" without one): a child must not write over it."""
        return self._server.pidfile or ""

    @property
    def verifies(self) -> bool:
        """Whether the server's gate verifies signers (``cms-verify-ca``)."""
        crypto = self._server.crypto
        return crypto is not None and crypto.verifying

    def foreign_host(self, signer: Optional[Dict[str, Any]], host: Any) -> str:
        """Why ``signer`` may not act for ``host`` (its CN, or ``host-signers``), or ''."""
        return foreign_host(signer, host, self._server.gate.host_signers)

    @property
    def has_policy(self) -> bool:
        """Whether the server's gate decides by signer who sends which type (``policy``)."""
        return self._server.gate.policy is not None

    @property
    def verbosity(self) -> List[str]:
        """The ``-q`` / ``-v`` flags the server was started with, for its children."""
        options = self._server.options
        if getattr(options, "quiet", False):
            return ["-q"]
        return ["-v"] * (getattr(options, "verbose", 0) or 0)

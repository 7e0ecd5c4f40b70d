"""Handlers: the plug-ins a ``[routes]`` entry sends messages to.

A handler is a class in a module of its own that names it in ``CC_HANDLER``.
A config section selects one by short name (``handler = proxy``), by module
path (``handler = cc.handler.proxy``, as the original), or with the original's
legacy key ``plugin =``.  Adding a handler means adding its module and one
line in :data:`HANDLERS`.
"""

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple, Type

import skytools
from skytools.config import ConfigError

from cc.loader import load_class
from cc.message import CCMessage
from cc.options import Option

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler.serverview import ServerView

__all__ = ["CCHandler", "HANDLERS", "load_handler_class", "HandlerConfigError"]

#: short name -> module
HANDLERS: Dict[str, str] = {
    "dbhandler": "cc.handler.database",
    "delay": "cc.handler.delay",
    "disposer": "cc.handler.disposer",
    "echo": "cc.handler.echo",
    "filter": "cc.handler.filter",
    "infowriter": "cc.handler.infowriter",
    "jobmgr": "cc.handler.jobmgr",
    "locallogger": "cc.handler.locallogger",
    "logwriter": "cc.handler.logwriter",
    "proxy": "cc.handler.proxy",
    "statswriter": "cc.handler.statswriter",
    "tailwriter": "cc.handler.tailwriter",
    "taskrouter": "cc.handler.taskrouter",
}


#: what every handler section has: which handler it is
HANDLER_KEYS = (
    Option("handler", "str", None, "the handler: a short name (proxy) or a module path"),
    Option("plugin", "str", None, "the original's name for handler"),
)


class HandlerConfigError(ConfigError):
    """A handler section that cannot work; names the section."""


def handler_type_name(hcf: skytools.Config) -> str:
    """The handler named by a section: ``plugin`` (legacy) first, else ``handler``."""
    if hcf.has_option("plugin"):
        return hcf.get("plugin")
    return hcf.get("handler")


def load_handler_class(section: str, name: str) -> Type["CCHandler"]:
    """Import the handler ``name`` (short name or module path) for ``section``."""
    where = "[%s]: " % section
    return load_class("handler", name, HANDLERS, "CC_HANDLER", CCHandler, HandlerConfigError, where)


class CCHandler:
    """Base of every handler.

    Override:

    * :meth:`handle_msg` (required): take one message; runs on the IOLoop
      and must not block; ``msg.get_body()`` is its body, already opened
      (and verified where configured) by the server;
    * :meth:`reads_body` (optional): say no for messages passed on unread;
    * :meth:`stop` (optional): release sockets and threads, flush; may
      return an awaitable that the server waits for (bounded) on shutdown;
    * :meth:`on_sighup` (optional): the server got SIGHUP; reopen files
      (logrotate moved them).  Called for every running handler, kept
      across the reload or not, even when the new config is refused;
    * :meth:`reconfigure` (optional): take a changed section in place on
      reload instead of being replaced by a new instance;
    * :meth:`check_config` (optional, a classmethod): check the sections the
      handler's section refers to, before anything is made.

    Class attributes: ``CC_ROLES``, the server roles it may run in;
    ``OPTIONS``, the options of its section, declared once (:mod:`cc.options`);
    ``REFERENCES``, options naming other handler sections (``forward-to``),
    so that a reload knows what a handler depends on; ``SECTION_LISTS``,
    options listing other sections it reads (jobmgr's ``daemons``), whose
    changes count as changes of its own; ``STOPS_FIRST``, a handler whose
    children send through this server (jobmgr): it stops in a stage of its
    own before every other, so their last messages (a runner's
    ``task.unregister``) still find the proxies running.

    A handler gets ``server``, a :class:`~cc.handler.serverview.ServerView`:
    all it may use of the server (send, relay, seal, other handlers, status
    and state sources, a few facts), never the server itself; ``io_loop``,
    ``zctx`` and ``stats`` are the view's, at hand; ``log`` is the logger
    ``cc.handler.<section>``.  Messages a handler creates go out through
    :meth:`reply` or ``server.send(msg)``, which sign them where ``cms-sign``
    is set.

    ``CC_ROLES`` names the seed's roles: ``local``, ``proxy``,
    ``end-service``; the original's ``remote`` in a handler means an
    end-service handler (see :mod:`cc.handlerset`).
    """

    CC_ROLES: Tuple[str, ...] = ("local", "proxy", "end-service")
    #: the options of the handler's section (:mod:`cc.options`), checked before it is made
    OPTIONS: Tuple[Option, ...] = ()
    REFERENCES: Tuple[str, ...] = ()
    SECTION_LISTS: Tuple[str, ...] = ()
    STOPS_FIRST = False

    def __init__(self, hname: str, hcf: skytools.Config, server: "ServerView") -> None:
        self.hname = hname
        self.cf = hcf
        self.server = server
        self.io_loop = server.io_loop
        self.zctx = server.zctx
        self.stats = server.stats
        self.log = logging.getLogger("cc.handler.%s" % hname)

    @classmethod
    def check_config(cls, hcf: skytools.Config, server_cf: skytools.Config) -> List[str]:
        """Check what the section refers to beyond its own options (jobmgr: its job
        sections) before anything is made: at start, on reload and by ``--check``.
        Raise :class:`HandlerConfigError`; return warnings.  The default has nothing more."""
        return []

    def handle_msg(self, msg: CCMessage) -> None:
        raise NotImplementedError

    def reads_body(self, msgtype: str) -> bool:
        """Whether this handler reads the body of ``msgtype`` messages (the default: yes).

        The server opens the body once, before any handler sees the message,
        when a handler on its route reads it: bounded, and verified where
        ``[ccserver]`` has ``cms-verify-ca``, ``cms-decrypt`` or
        ``cms-time-window``.  A refused message reaches only the handlers that
        say no here (they pass it on unread, as a proxy does); for them
        ``msg.get_body()`` raises.
        """
        return True

    def stop(self) -> Optional[Awaitable[Any]]:
        """Release resources; the default has none."""
        return None

    def on_sighup(self) -> None:
        """Reopen what logrotate may have moved; the default has nothing to reopen."""

    def reconfigure(self, hcf: skytools.Config) -> Optional[Callable[[], None]]:
        """Reload found this handler's config changed: how to take ``hcf`` in place.

        Return a function that applies it, called once every handler of the
        new config has been made; nothing may change before.  Raise
        :class:`HandlerConfigError` if ``hcf`` is wrong (the reload is then
        refused as a whole).  The default, None, has the handler replaced.
        """
        return None

    # -- helpers -------------------------------------------------------------

    def reply(self, msg: CCMessage, msgtype: str, **fields: Any) -> None:
        """Send a message of ``msgtype`` back along ``msg``'s route (signed where configured)."""
        self.server.send(msg.reply(msgtype, fields))

    def reply_error(self, msg: CCMessage, text: str, code: str) -> None:
        self.server.send(msg.error_reply(text, code))

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.hname)

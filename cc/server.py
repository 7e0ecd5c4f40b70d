"""cc-server: one ROUTER socket, prefix routes, handlers.

``cc-server [options] config.ini`` reads ``[ccserver]`` and ``[routes]``,
binds ``cc-socket`` and hands each message to every handler whose route
pattern is a dotted prefix of its type.  Command line and config conventions
are skytools ``BaseScript``'s (``-d``, ``-v``, ``-q``, ``-s``, ``-k``, ``-r``,
``--ini``, ``-V``).  SIGHUP re-reads the config and swaps routes and changed
handlers in place; SIGINT and SIGTERM stop gracefully.
"""

import ipaddress
import logging
import optparse
import os
import platform
import resource
import sys
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
)

import skytools
import tornado
import zmq
from skytools.config import ConfigError

import cc
from cc import sockopts
from cc.dispatch import Dispatcher
from cc.files.atomic import write_atomic
from cc.handler import CCHandler
from cc.handler.serverview import ServerView
from cc.handlerset import ROLES, HandlerSet, RoutePlan
from cc.hostname import configured_hostname
from cc.message import GATE_OPTIONS, BodyGate, CCMessage, set_hostname
from cc.msgtypes import StateMessage
from cc.options import REQUIRED, Option, check_section, template
from cc.peerwaits import PeerWaits
from cc.process import (
    SCRIPT_IGNORED,
    SCRIPT_OPTIONS,
    START_ERRORS,
    CCProcess,
    Periodic,
    run_process,
)
from cc.ratelog import RateLimitedLog
from cc.routing import RouteTable
from cc.security import (
    CMS_DECLARED,
    CURVE_SERVER_DECLARED,
    crypto_context,
    curve_server,
    replay_cache,
)
from cc.sockopts import configure_socket
from cc.stats import BUCKET_SECONDS, format_time
from cc.stream import CCStream

if TYPE_CHECKING:
    from cc.crypto import CryptoContext, ReplayCache
    from cc.crypto.curve import CurveServer
    from cc.metrics import MetricsServer

__all__ = ["CCServer", "main"]

# log formats ("%%" because skytools interpolates config values)
LOG_FORMAT = "%%(asctime)s %%(process)s %%(levelname)s %%(name)s: %%(message)s"
LOG_FORMAT_VERBOSE = "%%(asctime)s,%%(msecs)03d %%(levelname)s %%(name)s: %%(message)s"

#: file descriptors asked for when the hard limit is unlimited
FD_LIMIT_WANTED = 65536

#: seconds the server waits for handlers to stop on shutdown
HANDLER_STOP_TIMEOUT = 30.0

class Settings:
    """The ``[ccserver]`` options, read and checked once."""

    OPTIONS = (
        Option("cc-socket", "url", REQUIRED, "bind URL of the ROUTER socket (tcp://127.0.0.1:*"
               " picks a free port)", example="tcp://127.0.0.1:22632"),
        Option("cc-role", "enum", "insecure", "local (loopback only), proxy, end-service or"
               " remote (= proxy + end-service); without it every handler may run (insecure,"
               " warned)", choices=ROLES, example="local", protects=True),
        Option("cc-allow-public", "bool", False, "let a local server listen on a public address"),
        Option("cc-stats", "int", 1, "stats: 0 = none, 1 = totals, 2 = also per message type"),
        Option("stats-period", "seconds", 30, "seconds between stats lines, pub.stats and"
               " infofile rewrites"),
        Option("state-period", "seconds", 300, "seconds between pub.state reports (also sent at"
               " start and on change) when a [routes] pattern other than * names them"),
        Option("hostname", "str", None, "the host's name in every message of this cc and of"
               " jobmgr's daemons (default: the machine's name)"),
        Option("metrics-http", "str", None, "[address:]port of the HTTP server with /metrics,"
               " /status and /fleet", example="127.0.0.1:9632"),
        Option("infofile", "path", None, "server status file, rewritten every stats-period",
               example="~/log/%(job_name)s.info"),
        Option("infofile-level", "int", 2, "what the infofile holds, 0-3"),
        Option("cc-max-message-size", "bytes", "64M", "a larger frame costs its sender the"
               " connection; a larger message is rejected", protects=True),
        Option("peer-wait-bytes", "bytes", "32M", "replies waiting for one client whose pipe is"
               " full, at the most; more are dropped"),
        Option("peer-wait-total", "bytes", "256M", "replies waiting for all clients, at the most"),
        Option("zmq_nthreads", "int", 1, "libzmq I/O threads"),
    )  # fmt: skip

    def __init__(self, cf: skytools.Config) -> None:
        self.socket_url = cf.get("cc-socket")
        self.role = cf.get("cc-role", "insecure")
        if self.role not in ROLES:
            raise ConfigError(
                "cc-role = %s: use local, proxy, end-service or remote"
                " (or leave it out to run insecure)" % self.role
            )
        self.role_set = cf.has_option("cc-role")
        if (
            self.role == "local"
            and not is_loopback(self.socket_url)
            and not cf.getboolean("cc-allow-public", False)
        ):
            raise ConfigError(
                "cc-role = local listens on loopback or ipc:// only, not cc-socket = %s;"
                " set cc-allow-public = yes if this is really meant" % self.socket_url
            )
        self.stats_level = cf.getint("cc-stats", 1)
        self.stats_period = cf.getfloat("stats-period", 30)
        if self.stats_period <= 0:
            raise ConfigError("stats-period must be positive")
        self.state_period = cf.getfloat("state-period", 300)
        if self.state_period <= 0:
            raise ConfigError("state-period must be positive")
        self.metrics_http = cf.get("metrics-http", "")
        self.hostname = configured_hostname(cf)
        self.infofile = cf.getfile("infofile", "")
        self.infofile_level = cf.getint("infofile-level", 2)
        self.nthreads = cf.getint("zmq_nthreads", 1)
        self.max_message_size = cf.getbytes("cc-max-message-size", "64M")
        self.peer_wait_bytes = cf.getbytes("peer-wait-bytes", "32M")
        self.peer_wait_total = cf.getbytes("peer-wait-total", "256M")
        if not 0 < self.peer_wait_bytes <= self.peer_wait_total:
            raise ConfigError("peer-wait-bytes must be positive and at most peer-wait-total")


#: every option of [ccserver], in --ini's order
SERVER_OPTIONS = (
    Settings.OPTIONS
    + SCRIPT_OPTIONS
    + GATE_OPTIONS
    + sockopts.OPTIONS
    + CMS_DECLARED
    + CURVE_SERVER_DECLARED
)


#: the options --ini prints set, not commented out
INI_ACTIVE = ("cc-role", "logfile", "pidfile")


def is_loopback(url: str) -> bool:
    """Whether a bind URL is reachable only from this host (loopback TCP, ipc, inproc)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rpartition(":")[0].strip("[]")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CCServer(CCProcess):
    """cc-server: routes CC messages from one ROUTER socket to handlers.

    Its ``[ccserver]`` options are declared in :data:`SERVER_OPTIONS`, from
    which ``--ini`` prints the template (a docstring would vanish under
    ``python -OO``).
    """

    sighup_reloads = True
    log = logging.getLogger("cc.server")
    cf_defaults = {
        "logfmt_console": LOG_FORMAT,
        "logfmt_file": LOG_FORMAT,
        "logfmt_console_verbose": LOG_FORMAT_VERBOSE,
        "logfmt_file_verbose": LOG_FORMAT_VERBOSE,
        "logdatefmt_console_verbose": "%%H:%%M:%%S",
        "logdatefmt_file_verbose": "%%H:%%M:%%S",
    }

    def __init__(self, args: Sequence[str]) -> None:
        self.routes: RouteTable[CCHandler] = RouteTable()
        #: all that handlers see of this server
        self.view = ServerView(self)
        self.handlers = HandlerSet(self.view)
        self.endpoint = ""
        self.zctx: zmq.Context = None  # type: ignore[assignment]
        self.cclocal: CCStream = None  # type: ignore[assignment]
        self._ratelog = RateLimitedLog(self.log)
        self._status_sources: Dict[str, Callable[[], List[str]]] = {}
        self._state_sources: Dict[str, Callable[[], Any]] = {}
        self.replay: Optional["ReplayCache"] = None  # one for all reloads, made when first needed
        self.crypto: Optional["CryptoContext"] = None
        #: opens every body a handler reads: bounded, and verified where cms-* asks
        self.gate = BodyGate()
        self.curve: Optional["CurveServer"] = None
        self.metrics: Optional["MetricsServer"] = None
        super().__init__("ccserver", args)
        #: the message path; routes and gate are set when the socket opens and on reload
        self.dispatcher = Dispatcher(self.send, self.stats, self.log)

    # -- config --------------------------------------------------------------

    def init_optparse(
        self, parser: Optional[optparse.OptionParser] = None
    ) -> optparse.OptionParser:
        """skytools' options, with the usage that cc-server(1) shows."""
        p = super().init_optparse(parser)
        p.set_usage("%prog [options] config.ini")
        p.add_option(
            "--check",
            action="store_true",
            help="check the config (every section, keys and CAs), start nothing; exit 0 or 1",
        )
        return p

    def print_version(self) -> None:
        print("cc-server version %s, Skytools version %s" % (cc.__version__, skytools.__version__))

    def print_ini(self) -> None:
        """A config that runs as printed: a local cc answering echo and logging locally."""
        print("[ccserver]")
        print(template(SERVER_OPTIONS, active=INI_ACTIVE))
        print("[routes]\necho = h:echo\nlog = h:locallog\n")
        print("[h:echo]\nhandler = echo\n")
        print("[h:locallog]\nhandler = locallogger")

    def reload(self) -> None:
        """Read and check the config (at start, before forking; ``-r`` and ``--check`` too);
        SIGHUP uses :meth:`_apply_reload`, with the same checks."""
        super().reload()
        if self.options.cmd in ("stop", "kill"):
            return  # a broken config must not keep an operator from stopping the server
        try:
            loaded = self._load(self.cf)
        except START_ERRORS as ex:
            if self.options.cmd == "reload":
                raise ConfigError("%s\nreload not sent: the running server keeps its config" % ex)
            raise
        self.settings, self.crypto, self.gate, self.plan, self.config_warnings = loaded
        set_hostname(self.settings.hostname)

    def _load(
        self, cf: skytools.Config
    ) -> Tuple[Settings, Optional["CryptoContext"], BodyGate, RoutePlan, List[str]]:
        """Everything ``cf`` says, checked, nothing started: the settings, the CMS context,
        the gate, the route plan (handler and job sections) and the warnings."""
        warnings = check_section(cf, SERVER_OPTIONS, SCRIPT_IGNORED)
        settings = Settings(cf)
        if cf.get("curve-server-key", ""):
            from cc.crypto.curve import load_server_key  # crypto: only where configured

            load_server_key(cf)
        crypto = self._crypto_context(cf)
        gate = BodyGate.from_config(cf, crypto)
        plan = self._load_plan(cf, settings)
        return settings, crypto, gate, plan, warnings + plan.warnings

    def _crypto_context(self, cf: skytools.Config) -> Optional["CryptoContext"]:
        """``cf``'s CMS context, or None; the crypto code is loaded only when configured."""
        if self.replay is None:
            self.replay = replay_cache(cf)
        return crypto_context(cf, self.replay)

    def _load_plan(self, cf: skytools.Config, settings: Settings) -> RoutePlan:
        return RoutePlan(cf, settings.role, {"job_name": self.job_name})

    # -- lifecycle -------------------------------------------------------------

    def start_process(self) -> None:
        settings = self.settings
        self.log.info("cc-server version %s starting", cc.__version__)
        for text in self.config_warnings:
            self.log.warning("%s", text)
        if not settings.role_set:
            self.log.warning(
                'CC is running in insecure mode, please add "cc-role = local" or '
                '"cc-role = remote" option to config (or proxy, end-service): '
                "no role guards which handlers run"
            )
        self._raise_fd_limit()
        self.zctx = zmq.Context(settings.nthreads)
        self.curve = curve_server(self.zctx, self.cf)
        sock = self.zctx.socket(zmq.ROUTER)
        try:
            if self.curve is not None:
                self.curve.apply(sock)
            used = configure_socket(sock, self.cf)
            # bounded before allocation; only on this bound socket: a peer whose connection
            # libzmq drops reconnects, a connecting socket would stay cut off for good
            sock.setsockopt(zmq.MAXMSGSIZE, settings.max_message_size)
            sock.bind(settings.socket_url)
        except BaseException:
            sock.close(0)
            raise
        self.linger = used["zmq_linger"]
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        waits = PeerWaits(settings.peer_wait_bytes, settings.peer_wait_total)
        self.cclocal = CCStream(
            sock, self.io_loop, self.stats, qmaxsize=used["zmq_hwm"], name="ccserver", waits=waits
        )
        self.add_status_source("waiting", waits.summary)
        self.routes, retired = self.handlers.apply(self.plan)
        self._configure_dispatcher()
        self.cclocal.on_recv_batch(self.dispatcher.dispatch)
        self._start_reports()
        if settings.metrics_http:
            from cc.metrics import MetricsServer  # tornado.web: only where asked for

            self.metrics = MetricsServer(self, settings.metrics_http)
            address = self.metrics.address
            self.log.info("metrics on http://%s/metrics, fleet page on http://%s/fleet",
                          address, address)  # fmt: skip
        self.log.info(
            "listening on %s (role %s, %d routes%s%s)",
            self.endpoint,
            settings.role,
            len(self.plan.routes),
            ", CURVE" if self.curve is not None else "",
            ", cms" if self.crypto is not None else "",
        )

    def _configure_dispatcher(self) -> None:
        settings = self.settings
        self.dispatcher.configure(
            self.routes, self.gate, settings.max_message_size, settings.stats_level
        )

    def _raise_fd_limit(self) -> None:
        """Every connected peer costs a file descriptor: take what the hard limit allows."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, FD_LIMIT_WANTED)
        if soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            except (ValueError, OSError) as ex:
                self.log.warning("cannot raise the file descriptor limit to %d: %s", want, ex)
        self.log.info("file descriptor limit %d: about %d peers", soft, soft - 64)

    def _start_reports(self) -> None:
        others: List[Periodic] = []
        if self.settings.infofile_level >= 3:
            others.append((lambda: self.stats.snapshot(time.time()), BUCKET_SECONDS))
        self.start_reports(self.settings.stats_period, self.settings.state_period, others)

    async def stop_process(self, running: bool) -> None:
        """Stop the handlers, also those a start that failed later (metrics-http) had made."""
        handlers = self.handlers.all()
        if running:
            self._announce_stop()
        if running or handlers:
            self.log.info("stopping: %d handlers", len(handlers))
            for stage in self.handlers.stop_stages():  # what forwards before its target
                await self._stop_handlers(stage, final=True)

    def _announce_stop(self) -> None:
        """A last ``pub.state`` with ``stopped: true``, routed before the handlers (proxies too)
        stop: the fleet page shows a host that stopped cleanly, and its jobs, as stopped."""
        state = dict(self.state(), stopped=True)
        msg = StateMessage(job_name=self.job_name, service_type=self.service_name, state=state)
        self.publish_local(msg.to_message(), final=True)

    def reload_process(self) -> None:
        """Re-read the INI; swap routes and changed handlers, or keep running as before.

        Then every running handler gets :meth:`CCHandler.on_sighup`, so log
        writers reopen their files whatever became of the config.
        """
        self.log.info("SIGHUP: reloading %s", self.cf.filename)
        try:
            self._apply_reload()
        finally:
            for handler in self.handlers.all():
                try:
                    handler.on_sighup()
                except Exception:
                    self.log.exception("%s: on_sighup failed", handler.hname)

    def _apply_reload(self) -> None:
        try:
            cf = self.load_config()
            settings, crypto, gate, plan, warnings = self._load(cf)
            for text in warnings:
                self.log.warning("%s", text)
            if settings.socket_url != self.settings.socket_url:
                self.log.warning("cc-socket changed: takes effect only after a restart")
            if settings.hostname != self.settings.hostname:
                self.log.warning("hostname changed: takes effect only after a restart")
                settings.hostname = self.settings.hostname
            routes, retired = self.handlers.apply(plan)
            if self.curve is not None:
                self.curve.configure(cf)
        except START_ERRORS as ex:
            self.log.error("reload failed, keeping the running config: %s", ex)
            self.stats.inc("count.reload_failed")
            self.view.reload_ok = False
            return
        self.view.reload_ok = True
        self.crypto, self.gate = crypto, gate
        self.cf, self.settings, self.plan, self.routes = cf, settings, plan, routes
        self._configure_dispatcher()
        self._start_reports()
        self.io_loop.add_callback(self._stop_handlers, retired)
        self.log.info(
            "reloaded: %d routes, %d handlers (%d retired)",
            len(plan.routes),
            len(self.handlers.all()),
            len(retired),
        )

    async def _stop_handlers(self, handlers: List[CCHandler], final: bool = False) -> None:
        """Stop handlers in parallel; each gets no more messages once its stop() is done.

        The socket is still read meanwhile, so what daemons send while they exit
        reaches the handlers that are still finishing their work.
        """
        pending: Dict[str, Awaitable[Any]] = {}
        stopped = self.dispatcher.stopped if final else set()  # retired on reload: no route leads there
        for handler in handlers:
            try:
                result = handler.stop()
            except Exception:
                self.log.exception("stopping %s failed", handler.hname)
                result = None
            if result is None:
                stopped.add(handler)
            else:
                pending[handler.hname] = _marked_when_done(handler, result, stopped)
        await self.wait_bounded(pending, HANDLER_STOP_TIMEOUT)

    async def close_process(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        if self.cclocal is not None:
            self.cclocal.close()
        if self.curve is not None:
            self.curve.stop()
        if self.zctx is not None:
            self.zctx.destroy(getattr(self, "linger", 0))
        if not self.exit_code:
            self.log.info("stopped")

    # -- message path: cc.dispatch.Dispatcher ------------------------------------

    def publish_local(self, msg: CCMessage, final: bool = False) -> None:
        """Route a message made here as if received, when a route names its type.

        The catch-all ``*`` does not count: configs that send all traffic to a
        filter or disposer must not start getting the server's own reports.
        Nothing is sent once handlers are being stopped, but for the ``final`` state.
        """
        if self._stopping and self._stopping.is_set() and not final:
            return
        if self.routes.names(msg.type):
            self.dispatcher.route(msg)

    def forward(self, target: CCHandler, msg: CCMessage) -> str:
        """A handler's ``forward-to``: ``target`` takes ``msg`` as if routed to it."""
        return self.dispatcher.forward(target, msg)

    # -- services for handlers, through cc.handler.serverview.ServerView --------------

    def seal(self, msg: CCMessage) -> CCMessage:
        """``msg``, created by this server, signed (and encrypted) as ``cms-*`` says."""
        crypto = self.crypto
        return msg if crypto is None else crypto.seal(msg)

    def open_body(self, msg: CCMessage) -> Dict[str, Any]:
        """Pass ``msg``, received on a handler's own socket (a pong), through the server's gate."""
        return self.gate.open(msg)

    def send(self, msg: CCMessage) -> None:
        """Send a message this server created (a reply) out of the ROUTER, sealed."""
        self.cclocal.send_cmsg(self.seal(msg))

    def add_status_source(self, name: str, lines: Callable[[], List[str]]) -> None:
        """Add a ``[name]`` section (``lines()``) to the infofile, e.g. jobmgr's job states."""
        self._status_sources[name] = lines

    def remove_status_source(self, name: str, lines: Callable[[], List[str]]) -> None:
        if self._status_sources.get(name) == lines:
            del self._status_sources[name]

    def add_state_source(self, key: str, value: Callable[[], Any]) -> None:
        """Add ``key: value()`` to ``pub.state`` and ``/status``, e.g. jobmgr's jobs."""
        self._state_sources[key] = value

    def remove_state_source(self, key: str, value: Callable[[], Any]) -> None:
        if self._state_sources.get(key) == value:
            del self._state_sources[key]

    # -- stats ---------------------------------------------------------------------

    def write_stats(self) -> None:
        """The stats line and ``pub.stats`` (``cc-stats`` 1 and more), then the infofile."""
        settings = self.settings
        if settings.stats_level <= 0:
            self.stats.end_period()
            return
        period = self.stats.end_period()
        period.setdefault("count", 0)
        self.report_stats(period)
        if settings.infofile and settings.infofile_level > 0:
            try:
                write_atomic(settings.infofile, self._infofile_text())
            except OSError as ex:
                self._ratelog.error(
                    "infofile", "cannot write infofile %s: %s", settings.infofile, ex
                )

    def publish_report(self, msg: CCMessage) -> None:
        self.publish_local(msg)

    def state(self) -> Dict[str, Any]:
        """What ``pub.state`` and ``/status`` say about this server."""
        state = super().state()
        state.update(
            role=self.settings.role,
            socket=self.endpoint,
            routes={p: [h.hname for h in hs] for p, hs in self.routes.patterns()},
            handlers={h.hname: type(h).__name__ for h in self.handlers.all()},
        )
        state.update((key, value()) for key, value in list(self._state_sources.items()))
        return state

    def _infofile_text(self) -> str:
        now = time.time()
        times = os.times()
        lines = [
            "name: %s" % self.job_name,
            "version: %s" % cc.__version__,
            "service: %s" % self.service_name,
            "pid: %d" % os.getpid(),
            "started: %s" % format_time(self.started),
            "status: running",
            "time-consumed: %s %s %s %s" % times[:4],
            "info-period: %s" % self.settings.stats_period,
            "info-written: %s" % format_time(now),
            "platform: %s" % platform.platform(),
            "python: %s" % platform.python_version(),
            "skytools: %s" % getattr(skytools, "__version__", "?"),
            "libzmq: %s" % zmq.zmq_version(),
            "pyzmq: %s" % zmq.__version__,
            "tornado: %s" % tornado.version,
            "socket: %s" % self.endpoint,
            "role: %s" % self.settings.role,
            "",
        ]
        lines.extend(self.stats.infofile_sections(self.settings.infofile_level))
        for name, source in list(self._status_sources.items()):
            lines.extend(["[%s]" % name, *source(), ""])
        return "\n".join(lines) + "\n"


async def _marked_when_done(
    handler: CCHandler, stopping: Awaitable[Any], stopped: Set[CCHandler]
) -> None:
    """Await a handler's stop and mark it stopped in the same loop step (a done-callback runs
    a step later, when a message routed meanwhile would find its workers gone)."""
    try:
        await stopping
    finally:
        stopped.add(handler)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``cc-server``."""
    args = sys.argv[1:] if argv is None else list(argv)
    run_process(lambda: CCServer(args), "cc-server")


if __name__ == "__main__":
    main()

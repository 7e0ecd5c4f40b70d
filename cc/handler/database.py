"""dbhandler: call allowed PostgreSQL functions on a set of connections; answer every call."""

import asyncio
import collections
import concurrent.futures
from typing import Any, Deque, List, Optional, Tuple

from cc.audit import AUDIT_OPTIONS, AuditTrail
from cc.db.call import CallError, CallPolicy, DBCall
from cc.db.session import DBSession
from cc.handler import CCHandler, HandlerConfigError
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.msgtypes import wants_reply
from cc.policy import FORBIDDEN, Policy
from cc.ratelog import RateLimitedLog

CC_HANDLER = "DBHandler"

#: seconds stop() lets running calls finish before cancelling them, then waits for the cancels
STOP_GRACE = 5.0
STOP_CANCEL_WAIT = 2.0
#: threads that open connections (libpq connects synchronously); the calls need none
OPENER_THREADS = 4


class DBHandler(CCHandler):
    """Calls ``db[.<name>]`` requests' functions on a database; replies rows or an ``error``.

    Requests carry ``function`` (schema-qualified; ``public`` when not),
    ``params`` (a list: positional; an object: named ``name => value``; or a
    string holding either), ``return`` (``no``/absent, ``one``, ``all``,
    ``json``) and optionally ``ident``, echoed in the reply.  Only functions in
    ``allowed-functions`` are called (``*``: any; empty: none), checked before
    any database work; with ``function-policy``, only by the signers it names
    for the function (see :mod:`cc.policy`; needs ``cms-verify-ca``).  Every
    failure is answered with ``error`` (``msg``, ``code``: not-allowed,
    forbidden, bad-request, sql-error with ``sqlstate``, timeout,
    db-unavailable, bad-reply, overloaded, shutting-down, internal-error).
    With ``audit-log`` every call, allowed or refused, is one JSON line (see
    :mod:`cc.audit`).  A verifying server with neither ``policy`` nor
    ``function-policy`` warns at start: every trusted key may call every
    allowed function.

    ``worker-threads`` (the original's name) is how many calls run at once:
    one connection each, opened on first use, autocommit, re-opened after the
    database restarts.  Calls run asynchronously on the IOLoop (see
    :mod:`cc.db.session`), which never waits on the database; at most
    ``zmq_hwm`` requests wait for a free connection (more are refused, counted).

    ::

        [h:db]
        handler = dbhandler
        db = dbname=confdb host=/var/run/postgresql
        # comma list of schema.function names, or *; empty allows nothing
        allowed-functions = confdb.get_config, confdb.set_state
        # calls at once, one connection each
        #worker-threads = 10
        # seconds; 0 leaves the server's statement_timeout
        #statement-timeout = 0
        # seconds to connect (libpq's connect_timeout in db does not apply)
        #connect-timeout = 10
        # requests waiting for a free connection at the most
        #zmq_hwm = 1000
        # section of the signers that may call each function (needs cms-verify-ca)
        #function-policy =
        # JSON lines: every call, allowed or refused
        #audit-log =

    Stats: ``<section>.calls``, ``.ok``, ``.errors``, ``.errors.<code>``,
    ``.db_time`` (seconds spent in the database), ``.dropped``.
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("db", "str", REQUIRED, "libpq connect string", example="dbname=confdb"),
        Option("allowed-functions", "list", None, "schema.function names that may be called,"
               " or *; empty allows nothing", protects=True),
        Option("worker-threads", "int", 10, "calls at once, one connection each"),
        Option("zmq_hwm", "int", 1000, "calls waiting for a connection, at the most"),
        Option("statement-timeout", "seconds", 0, "0 leaves the server's statement_timeout"),
        Option("connect-timeout", "seconds", 10, "seconds to connect"),
        Option("function-policy", "str", None, "section of signers allowed per function",
               protects=True),
    ) + AUDIT_OPTIONS  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        try:
            self.policy = CallPolicy(hcf.getlist("allowed-functions", []))
        except ValueError as ex:
            raise HandlerConfigError("[%s]: %s" % (hname, ex)) from None
        self.signers = Policy.from_section(hcf, "function-policy")
        if self.signers is not None and not server.verifies:
            raise HandlerConfigError("[%s]: function-policy needs cms-verify-ca" % hname)
        if server.verifies and self.signers is None and not server.has_policy:
            self.log.warning("no policy: every key the CAs trust may call every allowed function"
                             " (set function-policy or [ccserver] policy)")  # fmt: skip
        self.audit = AuditTrail.from_config(hcf, self.stats, self.log)
        nsessions = hcf.getint("worker-threads", 10)
        if nsessions < 1:
            raise HandlerConfigError("[%s]: worker-threads must be at least 1" % hname)
        self.qmaxsize = max(1, hcf.getint("zmq_hwm", 1000))
        self.prefix = hname + "."
        self._ratelog = RateLimitedLog(self.log)
        self._pending: Deque[Tuple[CCMessage, DBCall]] = collections.deque()
        self._opener = concurrent.futures.ThreadPoolExecutor(
            min(OPENER_THREADS, nsessions), thread_name_prefix=hname
        )
        self.sessions = [
            DBSession(
                hcf.get("db"),
                self.io_loop,
                self._opener,
                statement_timeout=hcf.getfloat("statement-timeout", 0),
                connect_timeout=hcf.getfloat("connect-timeout", 10),
                log=self.log,
            )
            for _ in range(nsessions)
        ]
        self._idle: List[DBSession] = list(self.sessions)
        self._stopping = False
        self._all_done: Optional[asyncio.Future] = None
        self._timer: object = None
        self.log.info("%d connections, %s", nsessions, "any function" if self.policy.any else
                      "%d functions allowed" % len(self.policy.names))  # fmt: skip

    def handle_msg(self, msg: CCMessage) -> None:
        if self._stopping:
            self._answer(msg, CallError("shutting-down", "database handler is stopping"))
            return
        body = msg.get_body()  # opened (decrypted, verified) by the server's gate
        try:
            call = DBCall.from_body(body, self.policy)
            refused = self.signers.refusal(call.name, msg.signer) if self.signers else ""
            if refused:
                raise CallError(FORBIDDEN, refused)
        except CallError as ex:
            self._ratelog.warning(ex.code, "%s: %s (%s)", msg.type, ex.msg, ex.code)
            self._audit(msg, body.get("function"), ex.code, ex.msg)
            self._answer(msg, ex, body.get("ident"))
            return
        self._audit(msg, call.name, "allowed")
        if self._idle:
            self._start(self._idle.pop(), msg, call)
        elif len(self._pending) < self.qmaxsize:
            self._pending.append((msg, call))
        else:
            self.stats.inc(self.prefix + "dropped")
            self._ratelog.warning("full", "queue full (%d waiting), refusing", self.qmaxsize)
            self._answer(msg, CallError("overloaded", "database handler queue full"), call.ident)

    def _audit(self, msg: CCMessage, function: Any, outcome: str, why: str = "") -> None:
        if self.audit is not None:
            self.audit.record(msg.type, msg.signer, function=str(function)[:200],
                              outcome=outcome, msg=why or None)  # fmt: skip

    def _start(self, session: DBSession, msg: CCMessage, call: DBCall) -> None:
        session.run(call, msg.type, lambda outcome, spent: self._done(session, msg, call,
                                                                      outcome, spent))  # fmt: skip

    def _done(self, session: DBSession, msg: CCMessage, call: DBCall, outcome: Any,
              spent: float) -> None:  # fmt: skip
        stats = self.stats
        stats.inc(self.prefix + "calls")
        stats.inc(self.prefix + "db_time", spent)
        if isinstance(outcome, CallError):
            self._ratelog.warning(outcome.code, "%s: %s (%s)", call.name, outcome.msg,
                                  outcome.code)  # fmt: skip
            self._answer(msg, outcome, call.ident)
        else:
            stats.inc(self.prefix + "ok")
            if outcome is not None:
                self.server.send(msg.reply(*outcome))
        if self._pending and not self._stopping:
            self._start(session, *self._pending.popleft())
        else:
            self._idle.append(session)
            if self._all_done is not None and len(self._idle) == len(self.sessions):
                self._finish()

    def _answer(self, msg: CCMessage, err: CallError, ident: Any = None) -> None:
        """Count a failed call and, if the caller waits for one, send its ``error`` reply."""
        self.stats.inc(self.prefix + "errors")
        self.stats.inc(self.prefix + "errors." + err.code)
        if wants_reply(msg.type, msg.route):
            self.server.send(err.reply(msg, ident))

    def on_sighup(self) -> None:
        """logrotate moved the audit trail: reopen it."""
        if self.audit is not None:
            self.audit.reopen()

    def stop(self):
        """Refuse waiting requests, let running ones finish (cancelled after ``STOP_GRACE``).

        Returns a future done when every connection is closed; nothing needs
        to await it for the calls to end.
        """
        self._stopping = True
        while self._pending:
            msg, call = self._pending.popleft()
            self._answer(msg, CallError("shutting-down", "database handler is stopping"),
                         call.ident)  # fmt: skip
        self._all_done = self.io_loop.asyncio_loop.create_future()
        if len(self._idle) == len(self.sessions):
            self._finish()
        else:
            self._timer = self.io_loop.call_later(STOP_GRACE, self._cancel_running)
        return self._all_done

    def _cancel_running(self) -> None:
        self.log.warning("cancelling calls still running after %.0f s", STOP_GRACE)
        for session in self.sessions:
            session.cancel()
        self._timer = self.io_loop.call_later(STOP_CANCEL_WAIT, self._finish)

    def _finish(self) -> None:
        if self._all_done is None or self._all_done.done():
            return
        self._all_done.set_result(None)  # first: closing answers calls, which come back here
        if self._timer is not None:
            self.io_loop.remove_timeout(self._timer)
        for session in self.sessions:
            session.close()  # a call that ignored its cancel is answered here
        self._opener.shutdown(wait=False)
        if self.audit is not None:
            self.audit.close()

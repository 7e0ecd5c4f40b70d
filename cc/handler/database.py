"""dbhandler: call allowed PostgreSQL functions in a pool of worker threads; answer every call."""

import asyncio
import collections
import select
import threading
import time
from typing import Any, Deque, Dict, List, Optional

import psycopg2
import zmq

from cc.dbcall import CallError, CallPolicy, DBCall, classify, first_line
from cc.handler import CCHandler, HandlerConfigError
from cc.message import CCMessage, MessageError
from cc.msgtypes import wants_reply
from cc.ratelog import RateLimitedLog
from cc.stream import CCStream

CC_HANDLER = "DBHandler"

#: seconds stop() lets running calls finish before cancelling them, then waits for the workers
STOP_GRACE = 5.0
STOP_CANCEL_WAIT = 2.0

# worker -> handler frames: [worker id] [kind] [seconds in the database] [reply frames...]
READY, BYE, OK = b"ready", b"bye", b"ok"
STOP = b"stop"
#: requests a worker holds at once: one running, one waiting in its pipe, so that a busy worker
#: goes on to the next call without waiting for the loop thread (a thread hop each way)
PREFETCH = 2


class DBHandler(CCHandler):
    """Calls ``db[.<name>]`` requests' functions on a database; replies rows or an ``error``.

    Requests carry ``function`` (schema-qualified; ``public`` when not),
    ``params`` (a list: positional; an object: named ``name => value``; or a
    string holding either), ``return`` (``no``/absent, ``one``, ``all``,
    ``json``) and optionally ``ident``, echoed in the reply.  Only functions in
    ``allowed-functions`` are called (``*``: any; empty: none), checked before
    any database work.  Every failure is answered with ``error`` (``msg``,
    ``code``: not-allowed, bad-request, sql-error with ``sqlstate``, timeout,
    db-unavailable, bad-reply, overloaded, shutting-down, internal-error).

    Each of ``worker-threads`` threads keeps one connection (opened on first
    use, autocommit, re-opened after the database restarts); the IOLoop only
    hands requests to idle workers over an inproc socket, and queues at most
    ``zmq_hwm`` requests while all are busy (more are refused, counted).

    ::

        [h:db]
        handler = dbhandler
        db = dbname=confdb host=/var/run/postgresql
        # comma list of schema.function names, or *; empty allows nothing
        allowed-functions = confdb.get_config, confdb.set_state
        #worker-threads = 10
        # seconds; 0 leaves the server's statement_timeout
        #statement-timeout = 0
        # seconds libpq may take to connect (overrides connect_timeout in db)
        #connect-timeout = 10
        # requests waiting for a free worker at the most
        #zmq_hwm = 1000

    Stats: ``<section>.calls``, ``.ok``, ``.errors``, ``.errors.<code>``,
    ``.db_time`` (seconds spent in the database), ``.dropped``.
    """

    CC_ROLES = ("remote",)

    def __init__(self, hname, hcf, ccscript):
        super().__init__(hname, hcf, ccscript)
        try:
            policy = CallPolicy(hcf.getlist("allowed-functions", []))
        except ValueError as ex:
            raise HandlerConfigError("[%s]: %s" % (hname, ex)) from None
        nworkers = hcf.getint("worker-threads", 10)
        if nworkers < 1:
            raise HandlerConfigError("[%s]: worker-threads must be at least 1" % hname)
        self.qmaxsize = max(1, hcf.getint("zmq_hwm", 1000))
        self.prefix = hname + "."
        self._ratelog = RateLimitedLog(self.log)
        self._pending: Deque[List[bytes]] = collections.deque()
        self._load: Dict[bytes, int] = {}  # ready workers -> requests they hold
        self._stopping = False
        self._byes = 0
        self._all_gone: Optional[asyncio.Future] = None
        self._timer: object = None

        addr = "inproc://cc.dbhandler.%s.%x" % (hname, id(self))
        sock = self.zctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(addr)
        self.stream = CCStream(sock, self.io_loop, self.stats, qmaxsize=nworkers, name=hname)
        self.stream.on_recv(self._on_worker)
        self.workers: Dict[bytes, DBWorker] = {}
        for i in range(nworkers):
            worker = DBWorker(
                "w%d" % i,
                self.zctx,
                addr,
                hcf.get("db"),
                policy,
                statement_timeout=hcf.getfloat("statement-timeout", 0),
                connect_timeout=hcf.getint("connect-timeout", 10),
                log=self.log.getChild("w%d" % i),
            )
            self.workers[worker.wid] = worker
            worker.start()
        self.log.info("%d workers, %s", nworkers, "any function" if policy.any else
                      "%d functions allowed" % len(policy.names))  # fmt: skip

    # -- loop side ---------------------------------------------------------------

    def handle_msg(self, msg: CCMessage) -> None:
        if self._stopping:
            self._refuse(msg.frames, "shutting-down", "database handler is stopping")
            return
        wid = self._least_loaded()
        if wid is not None:
            self._send_to(wid, msg.frames)
        elif len(self._pending) < self.qmaxsize:
            self._pending.append(msg.frames)
        else:
            self.stats.inc(self.prefix + "dropped")
            self._ratelog.warning("full", "queue full (%d waiting), refusing", self.qmaxsize)
            self._refuse(msg.frames, "overloaded", "database handler queue full")

    def _least_loaded(self) -> Optional[bytes]:
        best, best_load = None, PREFETCH
        for wid, load in self._load.items():
            if load < best_load:
                best, best_load = wid, load
                if not load:
                    break
        return best

    def _send_to(self, wid: bytes, frames: List[bytes]) -> None:
        self._load[wid] += 1
        self.stream.send_multipart([wid] + frames)

    def _refuse(self, frames: List[bytes], code: str, text: str) -> None:
        msg = CCMessage(frames)
        self.stats.inc(self.prefix + "errors")
        self.stats.inc(self.prefix + "errors." + code)
        if wants_reply(msg.type, msg.route):
            self.cclocal.send_cmsg(CallError(code, text).reply(msg))

    def _on_worker(self, frames: List[bytes]) -> None:
        wid, kind = frames[0], frames[1]
        if kind == BYE:
            self._byes += 1
            if self._all_gone is not None:
                self._check_gone()
            return
        if kind == READY:
            self._load[wid] = 0
            if self._stopping:
                self.stream.send_multipart([wid, STOP])
        else:
            self._load[wid] -= 1
            stats = self.stats
            stats.inc(self.prefix + "calls")
            stats.inc(self.prefix + "db_time", float(frames[2]))
            if kind == OK:
                stats.inc(self.prefix + "ok")
            else:
                stats.inc(self.prefix + "errors")
                stats.inc(self.prefix + "errors." + kind.decode())
            if len(frames) > 3:
                self.cclocal.send_multipart(frames[3:])
        pending = self._pending
        while pending and self._load[wid] < PREFETCH and not self._stopping:
            self._send_to(wid, pending.popleft())

    def stop(self):
        """Refuse waiting requests, let held ones finish (cancelled after ``STOP_GRACE``).

        Returns a future done when every worker has gone and the socket is closed;
        nothing needs to await it for the workers to stop.
        """
        self._stopping = True
        while self._pending:
            self._refuse(self._pending.popleft(), "shutting-down", "database handler is stopping")
        for wid in self._load:
            # queued behind the requests the worker holds: those are still answered
            self.stream.send_multipart([wid, STOP])
        self._all_gone = self.io_loop.asyncio_loop.create_future()
        self._timer = self.io_loop.call_later(STOP_GRACE, self._cancel_running)
        self._check_gone()
        return self._all_gone

    def _check_gone(self) -> None:
        if self._byes == len(self.workers):
            self._finish()

    def _cancel_running(self) -> None:
        self.log.warning("cancelling calls still running after %.0f s", STOP_GRACE)
        for worker in self.workers.values():
            worker.cancel()
        self._timer = self.io_loop.call_later(STOP_CANCEL_WAIT, self._finish)

    def _finish(self) -> None:
        if self._all_gone is None or self._all_gone.done():
            return
        self.io_loop.remove_timeout(self._timer)
        if self._byes < len(self.workers):
            self.log.error("%d workers did not stop; leaving them", len(self.workers) - self._byes)
        self.stream.close()
        self._all_gone.set_result(None)


class DBWorker(threading.Thread):
    """One thread, one connection: takes requests from the handler's socket, answers on it.

    It never dies on a request: every failure becomes an ``error`` reply, and
    a broken connection is dropped and re-opened for the next call.
    """

    def __init__(
        self,
        name: str,
        zctx: zmq.Context,
        addr: str,
        dsn: str,
        policy: CallPolicy,
        statement_timeout: float,
        connect_timeout: int,
        log: Any,
    ) -> None:
        super().__init__(name="dbhandler-" + name, daemon=True)
        self.wid = name.encode()
        self.zctx = zctx
        self.addr = addr
        self.dsn = dsn
        self.policy = policy
        self.statement_timeout_ms = int(statement_timeout * 1000)
        self.connect_timeout = connect_timeout
        self.log = log
        self._ratelog = RateLimitedLog(log)
        self.conn: Optional[psycopg2.extensions.connection] = None

    def run(self) -> None:
        sock = self.zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.wid)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(self.addr)
        try:
            sock.send_multipart([READY, b"0"])
            while True:
                frames = sock.recv_multipart()
                if frames[0] == STOP:
                    break
                sock.send_multipart(self.process(frames))
        except zmq.ContextTerminated:
            pass
        finally:
            self._close_db()
            try:
                sock.send_multipart([BYE, b"0"], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            sock.close()

    def cancel(self) -> None:
        """Cancel the running statement (called from the loop thread; libpq allows it)."""
        conn = self.conn
        if conn is not None:
            try:
                conn.cancel()
            except psycopg2.Error:
                pass

    def process(self, frames: List[bytes]) -> List[bytes]:
        """One request's frames -> [kind, seconds, reply frames...]."""
        msg = CCMessage(frames)
        call: Optional[DBCall] = None
        ident = None
        spent = 0.0
        try:
            try:
                body = msg.get_body()
            except MessageError as ex:
                raise CallError(ex.code, ex.msg) from None
            ident = body.get("ident")
            call = DBCall.from_body(body, self.policy)
            started = time.perf_counter()
            try:
                result = self.execute(call, msg.type)
            finally:
                spent = time.perf_counter() - started
            reply = msg.reply(*result).frames if result else []
            return [OK, b"%.6f" % spent] + reply
        except CallError as ex:
            self._ratelog.warning(
                ex.code, "%s: %s (%s)", call.name if call else msg.type, ex.msg, ex.code
            )
            fail = ex
        except Exception:
            self.log.exception("call failed: %r", msg)
            fail = CallError("internal-error", "internal error in the database handler")
        reply = fail.reply(msg, ident).frames
        kind = fail.code.encode()
        return [kind, b"%.6f" % spent] + (reply if wants_reply(msg.type, msg.route) else [])

    def execute(self, call: DBCall, req: str) -> Any:
        conn = self._connection()
        query, values = call.statement()
        try:
            with conn.cursor() as cur:
                cur.execute(query, values)
                return call.fetch(cur, req)
        except psycopg2.Error as ex:
            err = classify(ex, conn)
            if err.code == "db-unavailable":
                self._close_db()
            raise err from None

    def _connection(self) -> psycopg2.extensions.connection:
        conn = self.conn
        if conn is not None and not _alive(conn):
            self.log.info("database connection lost, reconnecting")
            self._close_db()
            conn = None
        if conn is None:
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout)
                conn.autocommit = True
                if self.statement_timeout_ms > 0:
                    with conn.cursor() as cur:
                        cur.execute("set statement_timeout = %d" % self.statement_timeout_ms)
            except psycopg2.Error as ex:
                if conn is not None:
                    conn.close()
                raise CallError("db-unavailable", "cannot connect: %s" % first_line(ex)) from None
            self.conn = conn
        return conn

    def _close_db(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass


def _alive(conn: psycopg2.extensions.connection) -> bool:
    """Whether an idle connection is still worth using, without a round trip.

    An idle autocommit connection that never LISTENs has nothing to read
    unless the server has said goodbye (restart, terminated backend, crash);
    libpq only notices that on the next query, which would then fail.  Rare
    harmless input (a parameter status report) costs just a reconnect.
    """
    if conn.closed:
        return False
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return not poller.poll(0)

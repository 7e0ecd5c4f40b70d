"""One PostgreSQL connection for dbhandler, driven by the IOLoop: one call at a time, no blocking.

psycopg2's asynchronous mode sends a statement and hands back the socket;
the IOLoop watches it and :meth:`DBSession._read` reads the result when it
is there.  Worker threads would have to pass the GIL back and forth on
every call, which cost more CPU than the calls themselves (see the note on
issue 5); here the only thread hop is opening a connection, done on an
executor thread because libpq resolves host names and authenticates
synchronously, bounded by ``connect-timeout``.
"""

import concurrent.futures
import logging
import select
import time
from typing import Any, Callable, Dict, Optional, Tuple

import psycopg2
import psycopg2.extensions
from tornado.ioloop import IOLoop

from cc.db.call import CallError, DBCall, classify, first_line

__all__ = ["DBSession"]

_OK = psycopg2.extensions.POLL_OK
_READ = psycopg2.extensions.POLL_READ

_PENDING = object()  # a call's outcome while its result is not in yet

#: SQL texts a connection keeps (one per function and parameter shape); more start afresh
MAX_TEXTS = 1000

#: done(result or CallError, seconds in the database); result is what DBCall.fetch returns
Done = Callable[[Any, float], None]


class DBSession:
    """A lazily opened async connection that runs :class:`DBCall`\\ s one after another.

    :meth:`run` takes a call only when :attr:`busy` is false; ``done`` is
    called on the loop thread with what :meth:`DBCall.fetch` returned or a
    :class:`CallError`, never with an exception escaping.  The socket is
    watched for as long as the connection is open, so a server that goes
    away (restart, terminated backend) is noticed while idle, and the next
    call opens a new connection.
    """

    def __init__(
        self,
        dsn: str,
        io_loop: IOLoop,
        opener: concurrent.futures.Executor,
        statement_timeout: float,
        connect_timeout: float,
        log: logging.Logger,
    ) -> None:
        self.dsn = dsn
        self.io_loop = io_loop
        self.opener = opener
        self.statement_timeout_ms = int(statement_timeout * 1000)
        self.connect_timeout = connect_timeout
        self.log = log
        self.conn: Optional[psycopg2.extensions.connection] = None
        self.busy = False
        self._call: Optional[DBCall] = None
        self._req = ""
        self._done: Optional[Done] = None
        self._cursor: Any = None
        self._started = 0.0
        self._fd = -1
        self._events = 0  # what the IOLoop watches the socket for
        self._texts: Dict[Tuple[Any, ...], str] = {}  # DBCall.shape() -> SQL text

    # -- the call ------------------------------------------------------------------

    def run(self, call: DBCall, req: str, done: Done) -> None:
        """Start ``call`` (request type ``req``); ``done`` gets its outcome."""
        assert not self.busy
        self.busy = True
        self._call, self._req, self._done = call, req, done
        if self.conn is None:
            future = self.opener.submit(open_connection, self.dsn, self.connect_timeout,
                                        self.statement_timeout_ms)  # fmt: skip
            self.io_loop.add_future(future, self._opened)
        else:
            self._execute()

    def _opened(self, future: "concurrent.futures.Future[Any]") -> None:
        try:
            conn = future.result()
        except CallError as ex:
            self._finish(ex)
            return
        except Exception as ex:  # a bug, or libpq failing in a way not foreseen
            self.log.exception("opening a connection failed")
            self._finish(CallError("db-unavailable", "cannot connect: %s" % ex))
            return
        if not self.busy:  # closed while opening
            conn.close()
            return
        self.conn, self._fd, self._cursor = conn, conn.fileno(), None
        self._texts.clear()  # quoting follows the connection's encoding
        self._events = IOLoop.READ
        self.io_loop.add_handler(self._fd, self._on_socket, IOLoop.READ)
        self._execute()

    def _execute(self) -> None:
        conn, call = self.conn, self._call
        assert conn is not None and call is not None
        self._started = time.perf_counter()
        try:
            key = call.shape()
            text = self._texts.get(key)
            if text is None:
                if len(self._texts) >= MAX_TEXTS:
                    self._texts.clear()
                text = self._texts[key] = call.statement().as_string(conn)
            if self._cursor is None:
                self._cursor = conn.cursor()  # one per connection: each call reads its result
            self._cursor.execute(text, call.values())  # async: sends, does not wait
        except psycopg2.Error as ex:
            outcome: Any = self._failure(ex)
        except (ValueError, TypeError) as ex:  # a value libpq cannot take (NUL in a string)
            outcome = CallError("bad-request", "cannot pass parameters: %s" % ex)
        else:
            outcome = self._read()
        if outcome is not _PENDING:
            # not from within run(): done() starts the next call, which could finish at
            # once too, and a queue of such calls would recurse
            self.io_loop.add_callback(self._finish, outcome)

    def _on_socket(self, fd: Any, events: int) -> None:
        if self.busy:
            outcome = self._read()
            if outcome is not _PENDING:
                self._finish(outcome)
            return
        # idle: the server said goodbye (or sent a notice, which costs a reconnect)
        self.log.info("database connection lost, reconnecting on the next call")
        self._drop()

    def _read(self) -> Any:
        """The call's outcome if its result is in, else ``_PENDING`` (the socket watched).

        Never raises: whatever fails becomes the call's :class:`CallError`.
        """
        assert self.conn is not None and self._call is not None
        try:
            state = self.conn.poll()
            if state != _OK:
                self._watch(IOLoop.READ if state == _READ else IOLoop.READ | IOLoop.WRITE)
                return _PENDING
            return self._call.fetch(self._cursor, self._req)
        except CallError as ex:  # return = json without a proper reply
            return ex
        except psycopg2.Error as ex:
            return self._failure(ex)
        except Exception:  # a bug or a value not foreseen: the connection's state is unknown
            self.log.exception("reading the result of %s failed", self._call.name)
            self._drop()
            return CallError("internal-error", "internal error in the database handler")

    def _failure(self, ex: "psycopg2.Error") -> CallError:
        err = classify(ex, self.conn)
        if err.code == "db-unavailable":
            self._drop()
        return err

    def _finish(self, outcome: Any) -> None:
        if not self.busy:  # answered already (closed while the result was on its way)
            return
        if self.conn is not None:
            self._watch(IOLoop.READ)
        done = self._done
        spent = time.perf_counter() - self._started if self._started else 0.0
        self.busy = False
        self._started = 0.0
        self._call = self._done = None
        assert done is not None
        done(outcome, spent)

    def _watch(self, events: int) -> None:
        if self._events != events:
            self.io_loop.update_handler(self._fd, events)
            self._events = events

    # -- stopping ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the server to cancel the running statement; its call then fails with ``timeout``."""
        if self.busy and self.conn is not None:
            try:
                self.conn.cancel()
            except psycopg2.Error as ex:
                self.log.warning("cannot cancel: %s", first_line(ex))

    def close(self) -> None:
        """Drop the connection; a call still running is answered ``db-unavailable``."""
        self._drop()
        if self.busy:
            self._finish(CallError("db-unavailable", "connection closed while the call ran"))

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.io_loop.remove_handler(self._fd)
            self._events = 0
            try:
                conn.close()
            except psycopg2.Error:
                pass


def open_connection(dsn: str, timeout: float, statement_timeout_ms: int) -> Any:
    """Executor thread: an async connection, open and set up within ``timeout`` seconds.

    libpq ignores ``connect_timeout`` for asynchronous connections, so the
    bound is kept here; a stalled server costs one opener thread that long.
    """
    deadline = time.monotonic() + timeout
    conn = None
    try:
        conn = psycopg2.connect(dsn, async_=1)
        _wait(conn, deadline)
        if statement_timeout_ms > 0:
            cur = conn.cursor()  # kept until done: psycopg2 polls through it
            cur.execute("set statement_timeout = %d" % statement_timeout_ms)
            _wait(conn, deadline)
            cur.close()
    except psycopg2.Error as ex:
        if conn is not None:
            conn.close()
        raise CallError("db-unavailable", "cannot connect: %s" % first_line(ex)) from None
    except CallError:
        conn.close()
        raise
    return conn


def _wait(conn: Any, deadline: float) -> None:
    while True:
        state = conn.poll()
        if state == _OK:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise CallError("db-unavailable", "cannot connect: timed out")
        fd = conn.fileno()
        if state == _READ:
            select.select([fd], [], [], left)
        else:
            select.select([], [fd], [], left)

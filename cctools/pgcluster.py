"""A throwaway PostgreSQL cluster, for tests and the demo that need a real database.

:class:`PgCluster` runs ``initdb`` into a temporary directory, starts the
server with ``pg_ctl`` on a free TCP port on 127.0.0.1 and a unix socket in
that directory, creates a test database, and removes everything in
:meth:`PgCluster.destroy`.  Run as root it does all of this as the
``postgres`` user (``initdb`` refuses root).  Tests can stop and start the
server to see how their code takes a database restart.

Given a ``dsn``, that database is used instead and no cluster is started
(:attr:`PgCluster.can_restart` is then False).  Without server binaries
:meth:`PgCluster.create` raises :class:`NoServer`.  The tests' helper
(test/pgcluster.py) turns that into a skip; ``cc-demo`` into a note.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import List, Optional

import psycopg2

__all__ = ["PgCluster", "PgError", "NoServer", "find_bindir"]

#: seconds pg_ctl may take to start or stop the server
PG_CTL_TIMEOUT = 60
#: settings for speed, not durability: the data is thrown away
FAST_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=60",
)


class PgError(RuntimeError):
    """initdb or pg_ctl failed; the message has their output and the server log's end."""


class NoServer(PgError):
    """No PostgreSQL server binaries (initdb) were found and no dsn was given."""


def find_bindir() -> Optional[str]:
    """The directory holding ``initdb`` and ``pg_ctl``: ``CC_TEST_PGBIN``, the newest
    Debian install under /usr/lib/postgresql, or ``PATH``; None if there is none."""
    env = os.environ.get("CC_TEST_PGBIN")
    if env:
        return env
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        found.sort(key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (pg_ctl needs a number; a start
    that loses the race is retried with another port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One PostgreSQL cluster in a temporary directory, or an external database.

    :param dbname: the database to create and connect to
    :param dsn: use this existing database instead of starting a cluster
    :param basedir: where the temporary directory goes (default: the system's)
    """

    def __init__(
        self, dbname: str = "cctest", dsn: Optional[str] = None, basedir: Optional[str] = None
    ) -> None:
        self.dbname = dbname
        self.external_dsn = dsn
        self.bindir = None if dsn else find_bindir()
        self.tmpdir: Optional[str] = None
        self.port = 0
        self.user: Optional[str] = None
        self.basedir = basedir

    # -- addresses --------------------------------------------------------------

    @property
    def can_restart(self) -> bool:
        return self.external_dsn is None

    @property
    def datadir(self) -> str:
        assert self.tmpdir
        return os.path.join(self.tmpdir, "data")

    @property
    def logfile(self) -> str:
        assert self.tmpdir
        return os.path.join(self.tmpdir, "postgresql.log")

    def dsn(self, dbname: Optional[str] = None) -> str:
        """libpq connection string for ``dbname`` (default: the test database)."""
        if self.external_dsn:
            return self.external_dsn
        return "host=%s port=%d dbname=%s user=postgres" % (
            self.tmpdir,
            self.port,
            dbname or self.dbname,
        )

    def connect(self, dbname: Optional[str] = None) -> "psycopg2.extensions.connection":
        """A new autocommit connection."""
        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = True
        return conn

    # -- lifecycle --------------------------------------------------------------

    def create(self) -> "PgCluster":
        """initdb, start, create the test database (external: nothing)."""
        if self.external_dsn:
            return self
        if not self.bindir:
            raise NoServer("no PostgreSQL server binaries (initdb)")
        self.tmpdir = tempfile.mkdtemp(prefix="ccpg-", dir=self.basedir)
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        try:
            self._run(
                "initdb",
                "-D", self.datadir,
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            self.start()
            conn = self.connect("postgres")
            try:
                conn.cursor().execute("create database %s" % self.dbname)
            finally:
                conn.close()
        except BaseException:
            self.destroy()
            raise
        return self

    def start(self) -> None:
        """Start the server (again) and wait until it takes connections."""
        assert self.can_restart
        for attempt in range(3):
            if not self.port or attempt:
                self.port = free_port()
            options = ["-c %s" % s for s in FAST_SETTINGS]
            options += [
                "-c listen_addresses=127.0.0.1",
                "-c port=%d" % self.port,
                "-c unix_socket_directories=%s" % self.tmpdir,
            ]
            try:
                self._run(
                    "pg_ctl", "start", "-w", "-t", str(PG_CTL_TIMEOUT),
                    "-D", self.datadir, "-l", self.logfile, "-o", " ".join(options),
                )  # fmt: skip
                return
            except PgError:
                if attempt == 2:
                    raise

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        assert self.can_restart
        if self.tmpdir and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self._run(
                "pg_ctl", "stop", "-w", "-t", str(PG_CTL_TIMEOUT), "-m", mode, "-D", self.datadir
            )  # fmt: skip

    def destroy(self) -> None:
        """Stop the server and remove the directory (external: nothing)."""
        if self.tmpdir is None:
            return
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def log_text(self) -> str:
        try:
            with open(self.logfile, encoding="utf8", errors="replace") as f:
                return f.read()
        except (OSError, AssertionError):
            return ""

    def _run(self, tool: str, *args: str) -> None:
        assert self.bindir
        cmd: List[str] = [os.path.join(self.bindir, tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT + 30,
            cwd=self.tmpdir,
            start_new_session=True,  # the server too: a terminal's Ctrl-C is not for it
        )
        if result.returncode:
            raise PgError(
                "%s exited with %d:\n%s%s\n%s"
                % (tool, result.returncode, result.stdout, result.stderr, self.log_text()[-2000:])
            )

"""The tests' PostgreSQL: :class:`cctools.pgcluster.PgCluster`, or ``CC_TEST_DSN``'s database.

``CC_TEST_PGBIN`` names the server binaries' directory.  Without binaries and
without ``CC_TEST_DSN``, :func:`shared_cluster` raises ``unittest.SkipTest``.
Start one cluster per test module or class, not per test::

    def setUpModule():
        global PG
        PG = pgcluster.shared_cluster()

    def tearDownModule():
        PG.destroy()
"""

import os
import unittest

from cctools.pgcluster import NoServer, PgCluster, PgError, find_bindir  # noqa: F401 (re-exported)


def shared_cluster(dbname: str = "cctest") -> PgCluster:
    """A created cluster (or ``CC_TEST_DSN``'s database); SkipTest if neither can be had."""
    try:
        return PgCluster(dbname, dsn=os.environ.get("CC_TEST_DSN") or None).create()
    except NoServer as ex:
        raise unittest.SkipTest("%s and no CC_TEST_DSN" % ex)


class RecordingSchema:
    """Mixin of a test class: a cluster with schema ``cct``: ``cct.record(v)`` appends ``v``
    to ``cct.log`` and returns the count, ``cct.count()`` returns it; :meth:`rows` reads it."""

    pg: PgCluster

    @classmethod
    def setUpClass(cls) -> None:
        cls.pg = shared_cluster()
        conn = cls.pg.connect()
        conn.cursor().execute(
            "drop schema if exists cct cascade; create schema cct;"
            " create table cct.log (v text);"
            " create function cct.record(v text) returns bigint language sql"
            " as $$ insert into cct.log values (v); select count(*) from cct.log $$;"
            " create function cct.count() returns bigint language sql"
            " as $$ select count(*) from cct.log $$;"
        )
        conn.close()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pg.destroy()

    def rows(self) -> list:
        conn = self.pg.connect()
        try:
            cur = conn.cursor()
            cur.execute("select v from cct.log order by v")
            return [r[0] for r in cur.fetchall()]
        finally:
            conn.close()

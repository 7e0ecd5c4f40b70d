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

"""Daemons: ordinary cc clients that jobmgr can launch, or that run standalone.

A daemon is started with the server's config file and its own section::

    python -m cc.daemon.infosender /etc/cc/cc.ini d:infosender
    cc-daemon infosender /etc/cc/cc.ini d:infosender

It reads ``[ccserver]`` of that file for the ``cc-socket`` to connect to,
the server's ``job_name`` (its own job name is ``<server job>.<section>``)
and ``pidfile`` template (its own pidfile is the template expanded with its
job name, as the original's: :func:`cc.jobs.env.job_defaults`), then its own
section.  :class:`~cc.daemon.base.CCDaemon` gives every daemon the same
skeleton (:mod:`cc.process`, shared with cc-server): skytools command line and
pidfile, an IOLoop, a connection to the local cc whose every incoming message
passes the section's gate (bounded JSON, verified where its ``cms-*`` options
ask), log records forwarded as ``log.*`` messages (:mod:`cc.daemon.logforward`),
counters logged and published as ``pub.stats`` each ``stats-period``,
``pub.state`` at start and each ``state-period``, and a clean stop on SIGINT
and SIGTERM.  Run by jobmgr (see :mod:`cc.jobs.env`), a daemon connects to the
server's real address, asks ``job.config`` and sends ``job.keepalive`` every
``keepalive-period``; the pidfile is then jobmgr's to write.

A daemon cannot see its cc's routes, so it publishes ``pub.stats`` and
``pub.state`` unless ``publish-stats = no``; a cc without a route for them
drops them silently (counted in ``count.dropped``, never warned about).

The short names are in :mod:`cc.daemon.registry`, the command line in
:mod:`cc.daemon.cli`.  A daemon of one's own imports its base and runner
from here: ``from cc.daemon import CCDaemon, run_daemon``.
"""

from cc.daemon.base import CCDaemon
from cc.daemon.cli import main, run_daemon
from cc.daemon.registry import DAEMONS, load_daemon_class

__all__ = ["CCDaemon", "DAEMONS", "load_daemon_class", "run_daemon", "main"]

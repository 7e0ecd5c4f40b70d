"""A daemon's side of jobmgr: ask ``job.config``, send ``job.keepalive``, notice orphaning.

Every :class:`cc.daemon.CCDaemon` run by jobmgr gets one, so daemons get
keepalives without code of their own.  Keepalives are sent from the daemon's
IOLoop: a daemon whose loop is stuck stops sending them, and jobmgr restarts it.
"""

import logging
import os
from typing import Any, Callable, Dict, Optional

from cc.jobs.env import JobEnv
from cc.message import CCMessage
from cc.msgtypes import JobConfigRequestMessage, JobKeepaliveMessage
from cc.reqstream import CCReqStream
from cc.tick import Ticker

__all__ = ["JobLink"]

#: seconds to wait for the job.config answer
CONFIG_TIMEOUT = 10.0


class JobLink:
    """Keeps jobmgr informed that this daemon is alive."""

    def __init__(
        self,
        env: JobEnv,
        job_name: str,
        stream: CCReqStream,
        log: logging.Logger,
        on_orphaned: Callable[[], None],
    ) -> None:
        self.env = env
        self.job_name = job_name
        self.stream = stream
        self.log = log
        self.on_orphaned = on_orphaned
        self.config: Optional[Dict[str, Any]] = None
        self.pid = os.getpid()
        # on multiples of the period: the keepalives of all daemons of a cc, and
        # their other timers of that period, come in one wake-up
        self._timer = Ticker(env.keepalive_period, self._tick, stream.io_loop.asyncio_loop)

    def start(self) -> None:
        self._tick()
        self._timer.start()
        msg = JobConfigRequestMessage(job_name=self.env.job_name, token=self.env.token)
        msg = msg.to_message()
        self.stream.query(msg, self._on_config, CONFIG_TIMEOUT)

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        if self.env.parent_pid and os.getppid() != self.env.parent_pid:
            self.log.error("cc-server (pid %d) is gone; stopping", self.env.parent_pid)
            self._timer.stop()
            self.on_orphaned()
            return
        msg = JobKeepaliveMessage(job_name=self.job_name, pid=self.pid).to_message()
        self.stream.publish(msg)

    def _on_config(self, reply: Optional[CCMessage]) -> bool:
        if reply is None:
            self.log.warning("no job.config answer from jobmgr in %.0f s", CONFIG_TIMEOUT)
        elif reply.type != "job.config":
            body = reply.get_body()
            self.log.warning("job.config refused: %s", body.get("msg"))
        else:
            config = reply.get_body().get("config")
            self.config = config if isinstance(config, dict) else None
            self.log.debug("job.config: %s", self.config)
        return False

"""discovery: find what runs on this host (PostgreSQL clusters, the host itself), tell the cc.

Every ``check-period`` the probes look (on a worker thread); ``pub.discovery``
goes out when what they see changed, and every ``discovery-period`` anyway.
"""

import asyncio
import json
import time
from typing import Any, Dict, List, Optional

from skytools.config import ConfigError

from cc.daemon import CCDaemon, run_daemon
from cc.daemon.discovery_probes import PROBES, Probe, stable
from cc.msgtypes import DiscoveryMessage
from cc.options import Option
from cc.tick import Ticker

__all__ = ["Discovery"]

CC_DAEMON = "Discovery"


class Discovery(CCDaemon):
    """Publishes ``pub.discovery`` with each probe's findings, by probe name.

    ::

        [d:discovery]
        #probes = postgresql, host
        #check-period = 10
        #discovery-period = 300
        # libpq options to connect to each cluster found with (host and port are
        # filled in); without it databases and their sizes are not listed
        #discovery-connect = user=postgres dbname=postgres
    """

    OPTIONS = (
        Option("probes", "list", "postgresql, host", "what is discovered"),
        Option("discovery-period", "seconds", 300, "seconds between full reports"),
        Option("check-period", "seconds", 10, "seconds between checks for changes"),
        Option("discovery-connect", "str", None, "libpq connect string of the postgresql probe"),
    )  # fmt: skip

    probes: Dict[str, Probe] = {}

    def start_work(self) -> None:
        self.probes = {}
        for name in self.cf.getlist("probes", ["postgresql", "host"]):
            if name not in PROBES:
                raise ConfigError("probes: unknown probe %r; known: %s" % (name, ", ".join(PROBES)))
            self.probes[name] = PROBES[name](self.cf)
        self.discovery_period = self.cf.getfloat("discovery-period", 300)
        self._seen: Dict[str, str] = {}
        self._published = 0.0
        self._checking: Optional[asyncio.Task] = None
        # on multiples of the period: with the keepalive's wake-up
        check_period = self.cf.getfloat("check-period", 10)
        self._timer = Ticker(check_period, self._check, self.io_loop.asyncio_loop)
        self._timer.start()
        self._check()

    def _check(self) -> None:
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._run_probes())

    async def _run_probes(self) -> None:
        found: Dict[str, Any] = {}
        changed: List[str] = []
        for name, probe in self.probes.items():
            try:
                found[name] = await self.run_blocking(probe.run)
            except Exception:
                self.stats.inc("discovery.probe_failed")
                self.log.exception("probe %s failed", name)
                continue
            key = json.dumps(stable(found[name], probe.VOLATILE), sort_keys=True, default=str)
            if self._seen.get(name) != key:
                self._seen[name] = key
                changed.append(name)
        self.stats.inc("discovery.checks")
        if changed or time.monotonic() - self._published >= self.discovery_period:
            msg = DiscoveryMessage(job_name=self.job_name, probes=found, changed=changed)
            self.publish(msg.to_message())
            self._published = time.monotonic()
            self.stats.inc("discovery.published")
            if changed:
                self.log.info("discovery: %s changed", ", ".join(changed))

    def stop_work(self) -> Optional[asyncio.Task]:
        if self.probes:
            self._timer.stop()
            return self._checking
        return None


if __name__ == "__main__":
    run_daemon(Discovery)

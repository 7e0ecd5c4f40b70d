"""The latest ``pub.stats`` and ``pub.state`` of every (host, job) a cc hears from.

Loop-free policy for the statswriter handler and the metrics page: check a
received body, keep it, and add the period counters up into totals when the
sender does not send its own.  The number of (host, job) entries is bounded;
a new one beyond the bound is refused (the caller counts it).
"""

import numbers
import time
from typing import Any, Dict, Iterator, Optional, Tuple

from cc.routing import has_prefix

__all__ = ["StatsEntry", "StatsStore", "BadStats", "is_number"]

Key = Tuple[str, str]


class BadStats(ValueError):
    """A ``pub.stats`` / ``pub.state`` body without the fields it needs."""


class StatsEntry:
    """What one job on one host last said."""

    def __init__(self, host: str, job: str) -> None:
        self.host = host
        self.job = job
        self.service_type = ""
        self.counters: Dict[str, float] = {}
        #: replaced by each report, never changed in place: /metrics keeps the text made of
        #: it while it is the same object (:class:`cc.metrics.MetricsRenderer`)
        self.totals: Dict[str, float] = {}
        self.period = 0.0
        self.stats_time = 0.0
        self.state: Optional[Dict[str, Any]] = None
        self.state_time = 0.0
        #: when the latest report of each kind, and of any kind, arrived (this host's clock)
        self.stats_received = 0.0
        self.state_received = 0.0
        self.received = 0.0

    def as_dict(self, kind: str) -> Dict[str, Any]:
        """``stats`` or ``state`` as written to files and shown on ``/status``."""
        info: Dict[str, Any] = {"host": self.host, "job_name": self.job, "received": self.received}
        info["service_type"] = self.service_type
        if kind == "stats":
            info.update(
                counters=self.counters, totals=self.totals, period=self.period, time=self.stats_time
            )
        else:
            info.update(state=self.state, time=self.state_time)
        return info


class StatsStore:
    """Entries by (host, job), at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = 10000) -> None:
        self.max_entries = max_entries
        self.entries: Dict[Key, StatsEntry] = {}

    def update(self, msgtype: str, body: Dict[str, Any]) -> Optional[StatsEntry]:
        """Take one ``pub.stats*`` or ``pub.state*`` body; None when the store is full.

        Raises :class:`BadStats` for a body that lacks what it needs.
        """
        host, job = body.get("hostname"), body.get("job_name")
        if not (isinstance(host, str) and host and isinstance(job, str) and job):
            raise BadStats("hostname and job_name must be non-empty strings")
        entry = self.entries.get((host, job))
        if entry is None:
            if len(self.entries) >= self.max_entries:
                return None
            entry = StatsEntry(host, job)
        now = time.time()
        if has_prefix(msgtype, ("pub.stats",)):
            _take_stats(entry, body)
            entry.stats_received = now
        else:
            state = body.get("state")
            if not isinstance(state, dict):
                raise BadStats("state must be an object")
            entry.state = state
            entry.state_time = _number(body.get("time"), now)
            entry.state_received = now
        entry.service_type = str(body.get("service_type") or "")
        entry.received = now
        self.entries[(host, job)] = entry
        return entry

    def __iter__(self) -> Iterator[StatsEntry]:
        return iter(list(self.entries.values()))


def _take_stats(entry: StatsEntry, body: Dict[str, Any]) -> None:
    counters = _counters(body.get("counters"), "counters")
    if counters is None:
        raise BadStats("counters must be an object of numbers")
    totals = _counters(body.get("totals"), "totals")
    if totals is None:  # an older sender: add the periods up here
        totals = dict(entry.totals)
        for key, n in counters.items():
            totals[key] = totals.get(key, 0) + n
    entry.counters = counters
    entry.totals = totals
    entry.period = _number(body.get("period"), 0.0)
    entry.stats_time = _number(body.get("time"), time.time())


def _counters(value: Any, what: str) -> Optional[Dict[str, float]]:
    if not isinstance(value, dict):
        return None
    result = {}
    for key, n in value.items():
        kind = type(n)
        if kind is not float and kind is not int:  # the usual ones first: the ABC is slower
            if isinstance(n, bool) or not isinstance(n, numbers.Real):
                raise BadStats("%s.%s is not a number" % (what, key))
        result[key if type(key) is str else str(key)] = float(n)
    return result


def is_number(value: Any) -> bool:
    """A number in a report from the network (not a bool, which JSON also gives)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any, default: float) -> float:
    return float(value) if is_number(value) else default

"""Counters: cheap increments on the hot path, a line per period, the infofile sections.

Counter names are the original's (``count``, ``bytes``, ``count.ok``,
``count.dropped``, ``count.crashed``, ``count.invalid``, ...); each is declared,
with its kind and its ``/metrics`` family, in :mod:`cc.counters`.  Each period the
current counters are logged as one line, added to the totals and reset.  For
``[avg:N]`` sections a snapshot of the totals is kept every
:data:`BUCKET_SECONDS`; an average is the difference between two snapshots,
so increments themselves cost one dict update.  A path hotter than that
keeps tallies of its own and hands them over in a fold (:meth:`Stats.add_fold`)
whenever the counters are read.
"""

import collections
import time
from typing import Callable, Deque, Dict, Iterator, List, Tuple

__all__ = ["Stats", "BUCKET_SECONDS", "AVG_SPANS"]

BUCKET_SECONDS = 5
#: ``[avg:N]`` sections in the level-3 infofile
AVG_SPANS = (60, 300, 900)

Counters = Dict[str, float]


class Stats:
    """Period and total counters of one process."""

    def __init__(self) -> None:
        self.period: Counters = {}
        self.total: Counters = {}
        self.last_period: Counters = {}
        self._snapshots: Deque[Tuple[float, Counters]] = collections.deque(
            maxlen=max(AVG_SPANS) // BUCKET_SECONDS + 1
        )
        self._folds: List[Callable[[Counters], None]] = []

    def add_fold(self, fold: Callable[[Counters], None]) -> None:
        """Have ``fold(period)`` add counts kept elsewhere before the counters are read."""
        self._folds.append(fold)

    def _fold(self) -> None:
        for fold in self._folds:
            fold(self.period)

    def inc(self, key: str, n: float = 1) -> None:
        period = self.period
        period[key] = period.get(key, 0) + n

    def get(self, key: str) -> float:
        """Total of ``key`` since start, the current period included."""
        self._fold()
        return self.total.get(key, 0) + self.period.get(key, 0)

    def totals(self) -> Counters:
        """Every counter's total since start, the current period included."""
        self._fold()
        current = dict(self.total)
        for key, n in self.period.items():
            current[key] = current.get(key, 0) + n
        return current

    def end_period(self) -> Counters:
        """Close the current period: add it to the totals and return it."""
        self._fold()
        done, self.period = self.period, {}
        total = self.total
        for key, n in done.items():
            total[key] = total.get(key, 0) + n
        self.last_period = done
        return done

    def snapshot(self, now: float) -> None:
        """Remember the totals so far; call every :data:`BUCKET_SECONDS` for averages."""
        self._snapshots.append((now, self.totals()))

    def averages(self, span: int) -> Iterator[Tuple[str, float, float, float]]:
        """(key, sum over span, per bucket, per second) from the snapshots."""
        if len(self._snapshots) < 2:
            return
        newest_time, newest = self._snapshots[-1]
        buckets = min(span // BUCKET_SECONDS, len(self._snapshots) - 1)
        oldest_time, oldest = self._snapshots[-1 - buckets]
        seconds = max(newest_time - oldest_time, 1e-9)
        for key in sorted(newest):
            delta = newest[key] - oldest.get(key, 0)
            yield key, delta, delta / buckets, delta / seconds

    def infofile_sections(self, level: int) -> List[str]:
        """The ``[total]``, ``[latest]`` (level 2) and ``[avg:N]`` (level 3) sections."""
        lines: List[str] = []
        if level >= 2:
            lines.append("[total]")
            lines.extend("%s: %s" % (k, _num(v)) for k, v in sorted(self.total.items()))
            lines.append("")
            lines.append("[latest]")
            lines.extend("%s: %s" % (k, _num(v)) for k, v in sorted(self.last_period.items()))
            lines.append("")
        if level >= 3:
            for span in AVG_SPANS:
                lines.append("[avg:%d]" % span)
                lines.extend(
                    "%s: %s %s %s" % (k, _num(tot), _num(per_bucket), _num(per_sec))
                    for k, tot, per_bucket, per_sec in self.averages(span)
                )
                lines.append("")
        return lines


def _num(value: float) -> str:
    """Integers without a decimal point, other values rounded for reading."""
    if value == int(value):
        return str(int(value))
    return "%.6g" % value


def format_time(epoch: float) -> str:
    """``<epoch> (<local time with zone>)`` as in the infofile header."""
    return "%d (%s)" % (epoch, time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch)))

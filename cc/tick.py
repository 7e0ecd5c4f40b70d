"""Periodic timers that share wake-ups: each fires on a multiple of its period.

An idle host agent wakes for its timers alone, and each wake-up costs far
more than the little a timer does (about 0.01% of a core per wake-up a
second on a busy 2-core machine, against microseconds of work).  Timers of
one period started at different moments wake a process once each; a
:class:`Ticker` fires at the multiples of its period on the loop's clock
(``CLOCK_MONOTONIC``, the same for every process of a host), so timers of
the same period, or of multiples of it, fire in the same wake-up, in one
process and across the processes of an agent.

It also costs less per tick than tornado's ``PeriodicCallback``, which
since tornado 6.3 runs every tick as a coroutine (a task per tick): the
callback runs straight from the loop's timer handle.
"""

import asyncio
import logging
import math
from typing import Callable, Optional

__all__ = ["Ticker", "next_multiple"]

log = logging.getLogger("cc.tick")


def next_multiple(now: float, period: float) -> float:
    """The first multiple of ``period`` after ``now``: where timers of that period meet."""
    return (math.floor(now / period) + 1) * period


class Ticker:
    """Call ``callback()`` every ``period`` seconds, at multiples of ``period``.

    A tick that comes late (a busy loop, a suspended host) is not caught up:
    the next one is the next multiple still ahead.  An exception in the
    callback is logged and the ticker goes on.

    :param period: seconds between calls, > 0
    :param callback: what to call, on the loop
    :param loop: the asyncio loop (default: the running one)
    """

    def __init__(
        self,
        period: float,
        callback: Callable[[], None],
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if period <= 0:
            raise ValueError("a ticker's period must be positive, not %r" % period)
        self.period = period
        self.callback = callback
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._handle: Optional[asyncio.TimerHandle] = None
        self._index = 0

    def start(self) -> None:
        """Tick from the next multiple of the period on (not at once)."""
        if self._handle is None:
            self._arm(self._next_index())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _next_index(self) -> int:
        return math.floor(self._loop.time() / self.period) + 1

    def _arm(self, index: int) -> None:
        # due as index x period, never a running sum: tickers of one period fire at
        # the very same float, so always in the same pass of the loop
        self._index = index
        self._handle = self._loop.call_at(index * self.period, self._tick)

    def _tick(self) -> None:
        # from the tick's own index: the loop may run it a hair before its moment
        index = self._index + 1
        self._arm(index if index * self.period > self._loop.time() else self._next_index())
        try:
            self.callback()
        except Exception:
            log.exception("ticker callback %r failed", self.callback)

"""Job supervision policy: states, allowed transitions, restart back-off, hang detection.

Dependency-free and clock-free (callers pass ``now``), so the policy can be
tested without processes; :mod:`cc.jobs.supervisor` does the OS work.
"""

import enum
import random
from typing import Callable, Dict, FrozenSet, Optional

__all__ = ["JobState", "StateError", "check_transition", "Backoff", "keepalive_overdue"]


class JobState(enum.IntEnum):
    """Where one supervised job is in its life."""

    STOPPED = 0  # not running and not going to be (before start, after shutdown)
    STARTING = 10  # spawned, not yet proven alive
    RUNNING = 20  # alive for start-seconds, or sent a keepalive
    BACKOFF = 30  # exited; waiting for the restart delay
    STOPPING = 40  # TERM sent (shutdown or hang); KILL follows after a grace period


_ALLOWED: Dict[JobState, FrozenSet[JobState]] = {
    JobState.STOPPED: frozenset({JobState.STARTING}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.BACKOFF, JobState.STOPPING}),
    JobState.RUNNING: frozenset({JobState.BACKOFF, JobState.STOPPING}),
    JobState.BACKOFF: frozenset({JobState.STARTING, JobState.STOPPED}),
    JobState.STOPPING: frozenset({JobState.BACKOFF, JobState.STOPPED}),
}


class StateError(RuntimeError):
    """A transition the state machine does not allow (a bug, never input)."""


def check_transition(old: JobState, new: JobState) -> None:
    if new not in _ALLOWED[old]:
        raise StateError("job state %s -> %s not allowed" % (old.name, new.name))


class Backoff:
    """Restart delays: ``base * 2**n`` with jitter, capped; a long run resets ``n``.

    ``n`` counts the restarts since the last run that lasted ``reset_after``
    seconds.  Jitter spreads restarts of many jobs (+-``jitter`` of the delay)
    so a shared failure does not make them all restart in step.  There is no
    give-up: at the cap a job keeps being restarted every ``cap`` seconds.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        reset_after: float,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base < 0 or cap < 0 or reset_after < 0:
            raise ValueError("restart delays must not be negative")
        self.base = base
        self.cap = max(cap, base)
        self.reset_after = reset_after
        self.jitter = jitter
        self.rand = rand
        self.failures = 0

    def next_delay(self, ran_for: float) -> float:
        """Seconds to wait before restarting a job that ran ``ran_for`` seconds."""
        if ran_for >= self.reset_after:
            self.failures = 0
        # 2**n overflows float for huge n; the cap is reached long before n = 64
        delay = self.base * 2 ** min(self.failures, 64)
        self.failures += 1
        delay *= 1 + self.jitter * (2 * self.rand() - 1)
        return max(0.0, min(delay, self.cap))

    @property
    def at_cap(self) -> bool:
        return self.base * 2 ** min(self.failures, 64) >= self.cap


def keepalive_overdue(
    last_keepalive: Optional[float], now: float, timeout: float
) -> Optional[float]:
    """Seconds since the last keepalive if it is older than ``timeout``, else None.

    A job that never sent a keepalive in this run is not judged: it may be a
    plain script, or the ``job`` route may not reach jobmgr.
    """
    if last_keepalive is None or timeout <= 0:
        return None
    age = now - last_keepalive
    return age if age > timeout else None

"""Job supervision policy: states, allowed transitions, hang detection.

Restart delays are :class:`cc.backoff.Backoff`.

Dependency-free and clock-free (callers pass ``now``), so the policy can be
tested without processes; :mod:`cc.jobs.supervisor` does the OS work.
"""

import enum
from typing import Dict, FrozenSet, Optional

__all__ = ["JobState", "StateError", "check_transition", "gives_up", "keepalive_overdue"]


class JobState(enum.IntEnum):
    """Where one supervised job is in its life."""

    STOPPED = 0  # not running and not going to be (before start, after shutdown)
    STARTING = 10  # spawned, not yet proven alive
    RUNNING = 20  # alive for start-seconds, or sent a keepalive
    BACKOFF = 30  # exited; waiting for the restart delay
    STOPPING = 40  # TERM sent (shutdown or hang); KILL follows after a grace period
    FATAL = 50  # exited before RUNNING start-retries times in a row; waits for reload or restart


_ALLOWED: Dict[JobState, FrozenSet[JobState]] = {
    JobState.STOPPED: frozenset({JobState.STARTING}),
    JobState.STARTING: frozenset(
        {JobState.RUNNING, JobState.BACKOFF, JobState.STOPPING, JobState.FATAL}
    ),
    JobState.RUNNING: frozenset({JobState.BACKOFF, JobState.STOPPING}),
    JobState.BACKOFF: frozenset({JobState.STARTING, JobState.STOPPED}),
    JobState.STOPPING: frozenset({JobState.BACKOFF, JobState.STOPPED}),
    JobState.FATAL: frozenset({JobState.STARTING, JobState.STOPPED}),
}


class StateError(RuntimeError):
    """A transition the state machine does not allow (a bug, never input)."""


def check_transition(old: JobState, new: JobState) -> None:
    if new not in _ALLOWED[old]:
        raise StateError("job state %s -> %s not allowed" % (old.name, new.name))


def gives_up(failed_starts: int, start_retries: int) -> bool:
    """Whether a job whose last ``failed_starts`` runs all ended before RUNNING goes FATAL.

    As supervisor's ``startretries``: a job that cannot start (an import
    error, a missing script) does not heal by waiting.  ``start_retries`` 0
    never gives up.
    """
    return 0 < start_retries <= failed_starts


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

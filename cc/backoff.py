"""Back-off: waits that double after each failure, capped, and start over after a success.

One rule for every retry in cc: jobmgr's restarts of a daemon (with jitter, so
a shared failure does not restart every job in step, and reset by a run that
lasted long enough), the stream's retries for full peers and logtail's
resends of a refused fragment (reset by progress).
"""

import math
import random
from typing import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays of ``base * 2**n`` with jitter, capped; ``n`` counts failures since the last reset.

    ``n`` starts over by :meth:`reset`, or in :meth:`next_delay` when the
    attempt that failed lasted ``reset_after`` seconds.  Jitter spreads the
    delays by +-``jitter`` of their value.  There is no give-up: at the cap
    the delay stays ``cap``.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        reset_after: float = math.inf,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base < 0 or cap < 0 or reset_after < 0:
            raise ValueError("back-off delays must not be negative")
        self.base = base
        self.cap = max(cap, base)
        self.reset_after = reset_after
        self.jitter = jitter
        self.rand = rand
        self.failures = 0

    def next_delay(self, ran_for: float = 0.0) -> float:
        """Seconds to wait after a failure of an attempt that lasted ``ran_for`` seconds."""
        if ran_for >= self.reset_after:
            self.failures = 0
        # 2**n overflows float for huge n; the cap is reached long before n = 64
        delay = self.base * 2 ** min(self.failures, 64)
        self.failures += 1
        delay *= 1 + self.jitter * (2 * self.rand() - 1)
        return max(0.0, min(delay, self.cap))

    def reset(self) -> None:
        """A success: the next delay is ``base`` again."""
        self.failures = 0

    @property
    def at_cap(self) -> bool:
        return self.base * 2 ** min(self.failures, 64) >= self.cap

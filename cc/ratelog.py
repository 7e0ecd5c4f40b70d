"""Rate-limited logging, so that a flood of bad input cannot flood the log.

The first record for a key is logged at once; later ones within the
interval are counted and summarised with the next record that gets through.
Keys often come from the network (a message type), so all keys together
get at most :attr:`RateLimitedLog.MAX_RECORDS` records per interval too.
"""

import logging
import time
from typing import Any, Dict, Tuple

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs at most one record per key per ``interval`` seconds."""

    #: keys remembered at most; the table is cleared when it fills
    MAX_KEYS = 1024

    #: records logged per interval at the most, all keys together
    MAX_RECORDS = 100

    def __init__(self, log: logging.Logger, interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self._seen: Dict[str, Tuple[float, int]] = {}
        self._window = 0.0
        self._logged = 0
        self._overflow = 0

    def log_limited(
        self, level: int, key: str, fmt: str, *args: Any, exc_info: bool = False
    ) -> None:
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (0.0, 0))
        if now - last < self.interval:
            self._seen[key] = (last, suppressed + 1)
            return
        if now - self._window >= self.interval:
            self._window, self._logged = now, 0
        if self._logged >= self.MAX_RECORDS:
            self._overflow += 1
            return
        self._logged += 1
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if suppressed:
            fmt += " (%d similar suppressed)"
            args = args + (suppressed,)
        if self._overflow:
            fmt += " (%d records of other kinds suppressed)"
            args = args + (self._overflow,)
            self._overflow = 0
        self.log.log(level, fmt, *args, exc_info=exc_info)

    def warning(self, key: str, fmt: str, *args: Any) -> None:
        self.log_limited(logging.WARNING, key, fmt, *args)

    def error(self, key: str, fmt: str, *args: Any) -> None:
        self.log_limited(logging.ERROR, key, fmt, *args)

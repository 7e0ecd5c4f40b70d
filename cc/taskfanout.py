"""Fan-out of one task to many hosts: which hosts a target names, and who answered what.

Loop-free policy for the taskrouter.  A ``task_host`` that is a shell-style
pattern (``db-*``) or a list of names (each may be a pattern too) selects
registered hosts; each gets the task as its requester signed it (so each
runner decides on the requester), and the replies are told apart by the host
they come from.  :class:`FanOut` follows one such
task: the latest activity and final status of every host, the hosts that
went silent for longer than the timeout, and the summary the client gets last.
"""

import fnmatch
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple


from cc.errors import CodedError
from cc.msgtypes import TASK_FINAL, TASK_UID_MAX, TASK_UID_RE

__all__ = ["TargetError", "is_fanout", "select_hosts", "check_fanout", "FanOut"]

#: what a host that never answered, or went silent, is counted as
TIMEOUT = "timeout"
#: what a listed name that is not registered is counted as
NO_ROUTE = "no-route"

GLOB_CHARS = "*?["
PATTERN_RE = re.compile(r"^[A-Za-z0-9._\-*?\[\]!]{1,255}$")
#: patterns in one target: each is matched against every registered host
MAX_PATTERNS = 16


class TargetError(CodedError):
    """A target or fan-out task that cannot be served; ``code`` goes into the error reply."""


def is_fanout(task_host: Any) -> bool:
    """Whether ``task_host`` asks for a fan-out (a list, or a string with glob characters)."""
    if isinstance(task_host, list):
        return True
    return isinstance(task_host, str) and any(c in task_host for c in GLOB_CHARS)


def check_pattern(pattern: str) -> None:
    """Raise TargetError unless ``pattern`` is a host name or a well-formed glob."""
    if not PATTERN_RE.match(pattern):
        raise TargetError(
            "bad-target",
            "host pattern %r: use letters, digits, '.', '_', '-' and * ? [...] [!...]"
            % pattern[:300],
        )
    depth_open = -1  # index of the '[' of the class being read, -1 outside one
    for i, char in enumerate(pattern):
        if depth_open < 0:
            if char == "[":
                depth_open = i
            elif char == "]":
                raise TargetError("bad-target", "host pattern %r: ']' without '['" % pattern)
        elif char == "[":
            raise TargetError("bad-target", "host pattern %r: '[' inside [...]" % pattern)
        elif char == "]":
            if i == depth_open + 1 or pattern[depth_open + 1 : i] == "!":
                raise TargetError("bad-target", "host pattern %r: empty [...]" % pattern)
            depth_open = -1
    if depth_open >= 0:
        raise TargetError("bad-target", "host pattern %r: '[' without ']'" % pattern)


def select_hosts(
    task_host: Any, registered: Iterable[str], max_names: int
) -> Tuple[List[str], List[str]]:
    """(registered hosts the target names, listed plain names that are not registered).

    A list longer than ``max_names`` or with more than :data:`MAX_PATTERNS`
    patterns is refused before anything is matched.
    """
    if isinstance(task_host, str):
        wanted = [task_host]
    elif (
        isinstance(task_host, list)
        and task_host
        and all(isinstance(name, str) and name for name in task_host)
    ):
        wanted = task_host
    else:
        raise TargetError(
            "bad-target", "task_host must be a name, a pattern or a non-empty list of names"
        )
    if len(wanted) > max_names:
        raise TargetError(
            "too-many-hosts",
            "task_host lists %d names, more than max-fanout %d" % (len(wanted), max_names),
        )
    for name in wanted:
        check_pattern(name)
    if sum(1 for name in wanted if any(c in name for c in GLOB_CHARS)) > MAX_PATTERNS:
        raise TargetError("bad-target", "task_host has more than %d patterns" % MAX_PATTERNS)
    known = set(registered)
    matched = set()
    unknown = []
    for name in wanted:
        if any(c in name for c in GLOB_CHARS):
            matched.update(fnmatch.filter(known, name))
        elif name in known:
            matched.add(name)
        elif name not in unknown:
            unknown.append(name)
    if not matched:
        raise TargetError("no-route", "no registered host matches %s" % _shown(task_host))
    return sorted(matched), unknown


def check_fanout(body: Dict[str, Any], parts: List[str], max_fanout: int) -> Tuple[str, int]:
    """(task uid from the type, the fan-out bound) of a fan-out ``task.send``; or TargetError."""
    if len(parts) != 3 or not TASK_UID_RE.match(parts[2]):
        raise TargetError(
            "bad-task", "type must be task.send.<id> (id of 1-%d of [a-zA-Z0-9_-])" % TASK_UID_MAX
        )
    handler = body.get("task_handler")
    if not isinstance(handler, str) or not handler:
        raise TargetError("bad-task", "task_handler must be a non-empty string")
    bound = body.get("max_fanout", max_fanout)
    if isinstance(bound, bool) or not isinstance(bound, int) or bound <= 0:
        raise TargetError("bad-task", "max_fanout must be a positive integer, not %r" % (bound,))
    return parts[2], min(bound, max_fanout)


class HostRun:
    """One host's part of a fan-out."""

    __slots__ = ("status", "last")

    def __init__(self, now: float) -> None:
        self.status: Optional[str] = None  # final status once there is one
        self.last = now


class FanOut:
    """One task sent to many hosts, until every host has a final status or timed out."""

    def __init__(
        self,
        uid: str,
        task_id: Any,
        hosts: List[str],
        unknown: List[str],
        host_timeout: float,
        now: float,
    ) -> None:
        self.uid = uid
        self.task_id = task_id
        self.host_timeout = host_timeout
        self.runs = {host: HostRun(now) for host in hosts}
        self.unknown = unknown

    def take(self, host: str, status: Any, now: float) -> bool:
        """Note a reply of ``host``; False when it comes after the host's end (not relayed)."""
        run = self.runs[host]
        if run.status is not None:
            return False
        run.last = now
        if status in TASK_FINAL:
            run.status = status
        return True

    def expire(self, now: float) -> List[str]:
        """Mark the hosts silent for ``host_timeout`` as timed out; return them."""
        silent = [
            host
            for host, run in self.runs.items()
            if run.status is None and now - run.last >= self.host_timeout
        ]
        for host in silent:
            self.runs[host].status = TIMEOUT
        return silent

    def next_deadline(self) -> Optional[float]:
        """When the next pending host times out; None when every host is done."""
        pending = [run.last for run in self.runs.values() if run.status is None]
        return min(pending) + self.host_timeout if pending else None

    def summary(self) -> Dict[str, Any]:
        """The fields of the ``status: summary`` reply."""
        outcome = {host: run.status or TIMEOUT for host, run in self.runs.items()}
        outcome.update((host, NO_ROUTE) for host in self.unknown)
        counts: Dict[str, int] = {}
        for status in outcome.values():
            counts[status] = counts.get(status, 0) + 1
        return {
            "status": "summary",
            "task_id": self.task_id,
            "hosts": len(outcome),
            "counts": counts,
            "timeout": sorted(h for h, s in outcome.items() if s == TIMEOUT),
            "not_ok": {h: s for h, s in sorted(outcome.items()) if s != "finished"},
        }


def _shown(task_host: Any) -> str:
    text = repr(task_host)
    return text if len(text) <= 200 else text[:200] + "..."

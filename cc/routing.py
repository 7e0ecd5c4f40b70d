"""The ``[routes]`` table: message type -> handlers, by dotted prefix.

A pattern ``*`` matches every type; ``a.b`` matches ``a.b`` and ``a.b.*``.
Every matching handler gets the message, each once, in the order: ``*``
first, then shorter prefixes before longer ones, and within one pattern the
order it lists.  Matching is exact and case-sensitive per component.
The dispatcher keeps each type's lookup (bounded), so routing a message
costs one dict lookup once its type has been seen.
"""

from typing import Dict, Generic, Iterable, List, Sequence, Tuple, TypeVar

from cc.message import is_valid_type

__all__ = ["RouteTable", "RouteError", "has_prefix", "parse_pattern"]

H = TypeVar("H")


class RouteError(ValueError):
    """A route pattern that can never match anything."""


def has_prefix(msgtype: str, prefixes: Iterable[str]) -> bool:
    """Whether one of ``prefixes`` is a dotted prefix of ``msgtype`` (``a.b`` is one of
    ``a.b`` and ``a.b.c``, not of ``a.bc``): the one prefix test of cc outside the table."""
    return any(msgtype == p or msgtype.startswith(p + ".") for p in prefixes)


def parse_pattern(pattern: str) -> Tuple[str, ...]:
    """``*`` -> ``()``, ``a.b`` -> ``('a', 'b')``; reject what no type could match."""
    pattern = pattern.strip()
    if pattern == "*":
        return ()
    if not is_valid_type(pattern):
        raise RouteError(
            "invalid route pattern %r: use * or a dotted message type prefix" % pattern
        )
    return tuple(pattern.split("."))


class RouteTable(Generic[H]):
    """Prefix routes to handler objects of any kind (the dispatcher keeps what it looked up,
    per type: :meth:`cc.dispatch.Dispatcher.plan`)."""

    def __init__(self) -> None:
        self._routes: Dict[Tuple[str, ...], List[H]] = {}

    def add(self, pattern: str, handlers: Sequence[H]) -> None:
        """Route ``pattern`` to ``handlers`` (in addition to what it already routes to)."""
        key = parse_pattern(pattern)
        self._routes.setdefault(key, []).extend(handlers)

    def lookup(self, msgtype: str) -> Tuple[H, ...]:
        """Handlers for ``msgtype`` (a valid type), each once; empty when no route."""
        parts = msgtype.split(".")
        result: List[H] = []
        for n in range(len(parts) + 1):
            for handler in self._routes.get(tuple(parts[:n]), ()):
                if not any(handler is seen for seen in result):
                    result.append(handler)
        return tuple(result)

    def names(self, msgtype: str) -> bool:
        """Whether a pattern other than ``*`` matches ``msgtype`` (the catch-all does not
        name a type: the server routes its own reports only where a route names them)."""
        parts = msgtype.split(".")
        return any(tuple(parts[:n]) in self._routes for n in range(1, len(parts) + 1))

    def patterns(self) -> List[Tuple[str, List[H]]]:
        """``(pattern, handlers)`` pairs, for logs and the infofile."""
        return [(".".join(key) or "*", list(hs)) for key, hs in self._routes.items()]

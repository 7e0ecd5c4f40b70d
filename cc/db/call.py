"""One database function call for dbhandler: check the request, build the SQL, shape the reply.

This is the policy half of dbhandler, free of sockets and threads:

* :class:`CallPolicy` is the allow-list (``allowed-functions``);
* :meth:`DBCall.from_body` turns a ``db`` request body into a call or raises
  :class:`CallError` (the ``error`` reply's ``code`` and ``msg``); nothing
  here touches the database, so a refused call never reaches it;
* :meth:`DBCall.statement` composes ``select * from "schema"."fn"(...)``
  with quoted identifiers and ``%s`` placeholders for :meth:`DBCall.values`:
  values are always bound parameters, names are checked and quoted, never
  pasted; :meth:`DBCall.shape` is what the text depends on;
* :meth:`DBCall.fetch` reads the cursor into reply fields, converting what
  JSON cannot carry (see :func:`jsonable`);
* :func:`classify` maps a psycopg2 error to a :class:`CallError`.
"""

import base64
import datetime
import decimal
import functools
import json
import math
import re
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extras import Json

from cc.message import CCMessage, is_valid_type

__all__ = ["CallError", "CallPolicy", "DBCall", "classify", "jsonable", "RETURN_MODES"]

#: one part of a function name: what PostgreSQL takes unquoted (case kept by quoting)
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: a named parameter, as the original allowed
PARAM_RE = re.compile(r"[A-Za-z0-9_]+\Z")
#: PostgreSQL's NAMEDATALEN - 1
MAX_NAME = 63
#: PostgreSQL's FUNC_MAX_ARGS
MAX_ARGS = 100
#: ``return`` values; absent, empty or ``no`` means no reply (errors are still answered)
RETURN_MODES = ("no", "one", "all", "json")


class CallError(Exception):
    """A call that failed; becomes an ``error`` reply with ``code``, ``msg`` and ``extra``."""

    def __init__(self, code: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.extra = extra

    def reply(self, msg: CCMessage, ident: Any = None) -> CCMessage:
        fields = {"msg": self.msg, "code": self.code, "orig_req": msg.type}
        fields.update(self.extra)
        if ident is not None:
            fields["ident"] = ident
        return msg.reply("error", fields)


def parse_function_name(name: Any) -> Tuple[str, str]:
    """``schema.fn`` or ``fn`` (schema ``public``) as (schema, fn); CallError if not a name."""
    if not isinstance(name, str) or not name:
        raise CallError("bad-request", "field 'function' must be a non-empty string")
    return _split_name(name)


@functools.lru_cache(maxsize=1024)  # a fleet calls few functions, many times
def _split_name(name: str) -> Tuple[str, str]:
    parts = name.split(".")
    if len(parts) == 1:
        parts.insert(0, "public")
    if len(parts) != 2 or not all(NAME_RE.match(p) and len(p) <= MAX_NAME for p in parts):
        raise CallError("bad-request", "invalid function name %r" % name[:100])
    return parts[0], parts[1]


class CallPolicy:
    """Which functions may be called: ``allowed-functions`` (``*``: any; empty: none).

    Names compare schema-qualified, so ``fn`` and ``public.fn`` are the same.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = list(allowed) == ["*"]
        names: FrozenSet[Tuple[str, str]] = frozenset()
        if not self.any:
            try:
                names = frozenset(parse_function_name(a) for a in allowed)
            except CallError as ex:
                raise ValueError("allowed-functions: %s" % ex.msg) from None
        self.names = names

    def allows(self, function: Tuple[str, str]) -> bool:
        return self.any or function in self.names


Params = Union[List[Any], Dict[str, Any]]


class DBCall:
    """A checked call: function, parameters, return mode and the caller's ``ident``."""

    __slots__ = ("function", "params", "mode", "ident")

    def __init__(self, function: Tuple[str, str], params: Params, mode: str, ident: Any) -> None:
        self.function = function
        self.params = params
        self.mode = mode
        self.ident = ident

    @property
    def name(self) -> str:
        return "%s.%s" % self.function

    @classmethod
    def from_body(cls, body: Dict[str, Any], policy: CallPolicy) -> "DBCall":
        """Check a request body; raise :class:`CallError` (bad-request, not-allowed)."""
        function = parse_function_name(body.get("function"))
        if not policy.allows(function):
            raise CallError("not-allowed", "function %s.%s is not allowed" % function)
        mode = body.get("return") or "no"
        if mode not in RETURN_MODES:
            raise CallError(
                "bad-request", "field 'return' must be one of %s" % ", ".join(RETURN_MODES)
            )
        return cls(function, parse_params(body.get("params")), mode, body.get("ident"))

    def shape(self) -> Tuple[Any, ...]:
        """What the SQL text depends on (function, parameter names or count): a cache key."""
        params = self.params
        return (self.function, tuple(params) if isinstance(params, dict) else len(params))

    def values(self) -> List[Any]:
        """The values to bind, in the order of :meth:`statement`'s placeholders."""
        values = self.params.values() if isinstance(self.params, dict) else self.params
        return [Json(v) if isinstance(v, dict) else v for v in values]

    def statement(self) -> sql.Composed:
        """The SQL: identifiers quoted, a placeholder for each of :meth:`values`."""
        if isinstance(self.params, dict):
            args = [sql.SQL("{} => %s").format(sql.Identifier(n)) for n in self.params]
        else:
            args = [sql.SQL("%s")] * len(self.params)
        query = sql.SQL("select * from {}({})").format(
            sql.Identifier(*self.function), sql.SQL(", ").join(args)
        )
        return query

    def fetch(
        self, cur: "psycopg2.extensions.cursor", req: str
    ) -> Optional[Tuple[str, Dict[str, Any]]]:
        """After execute: the reply's type and fields (None for ``return = no``).

        ``one`` and ``all`` answer ``reply.<req>``; ``json`` answers the
        function's own result, whose ``req`` is the reply's type.
        """
        mode = self.mode
        if mode == "no":
            return None
        if mode == "json":
            row = cur.fetchone() if cur.description else None
            return json_reply(row[0] if row else None, self.name)
        if mode == "one":
            row = cur.fetchone() if cur.description else None
            data: Any = jsonable(row) if row is not None else None
        else:
            data = [jsonable(row) for row in cur.fetchall()] if cur.description else []
        fields: Dict[str, Any] = {"data": data}
        if cur.rowcount >= 0:
            fields["rowcount"] = cur.rowcount
        if cur.statusmessage:
            fields["statusmessage"] = cur.statusmessage
        if self.ident is not None:
            fields["ident"] = self.ident
        return "reply." + req, fields


def parse_params(params: Any) -> Params:
    """``params`` as sent: a list, an object, a string holding either, or absent."""
    if params is None:
        return []
    if isinstance(params, str):
        try:
            params = json.loads(params) if params.strip() else []
        except ValueError as ex:
            raise CallError("bad-request", "field 'params' is not valid JSON: %s" % ex) from None
    if isinstance(params, dict):
        for key in params:
            if not PARAM_RE.match(key) or len(key) > MAX_NAME:
                raise CallError("bad-request", "invalid parameter name %r" % key[:100])
    elif not isinstance(params, list):
        raise CallError("bad-request", "field 'params' must be a list or an object")
    if len(params) > MAX_ARGS:
        raise CallError("bad-request", "more than %d parameters" % MAX_ARGS)
    return params


def json_reply(value: Any, name: str) -> Tuple[str, Dict[str, Any]]:
    """``return = json``: the function's result is the reply; it must name its ``req``."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not is_valid_type(str(value.get("req", ""))):
        raise CallError("bad-reply", "%s did not return a JSON object with a valid 'req'" % name)
    return value["req"], value


def jsonable(value: Any) -> Any:
    """A database value as JSON can carry it.

    numeric -> string (exact); date, time, timestamp -> ISO 8601 string;
    interval -> seconds (float); bytea -> base64 string; NaN and infinite
    floats -> ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; arrays and rows ->
    lists; json/jsonb -> as is; anything else (uuid, inet, ranges) -> its
    string form.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if kind is dict:
        return {k: jsonable(v) for k, v in value.items()}
    if kind is decimal.Decimal:
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if kind is datetime.timedelta:
        return value.total_seconds()
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def classify(ex: "psycopg2.Error", conn: Optional["psycopg2.extensions.connection"]) -> CallError:
    """The :class:`CallError` for a psycopg2 error raised while calling."""
    if conn is None or conn.closed or isinstance(ex, psycopg2.InterfaceError):
        return CallError("db-unavailable", "database connection lost: %s" % first_line(ex))
    if isinstance(ex, psycopg2.errors.QueryCanceled):
        return CallError("timeout", "statement cancelled: %s" % first_line(ex), sqlstate=ex.pgcode)
    if ex.pgcode:
        return CallError("sql-error", first_line(ex), sqlstate=ex.pgcode)
    # raised by psycopg2 before sending (a value it cannot adapt)
    return CallError("bad-request", "cannot pass parameters: %s" % first_line(ex))


def first_line(ex: BaseException) -> str:
    """The server's message without its context lines."""
    diag = getattr(ex, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return primary or (str(ex).strip().splitlines() or [type(ex).__name__])[0]

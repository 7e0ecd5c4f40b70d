"""Plug-ins of the pg_logforward daemon: each gets every parsed record."""

from typing import Any, Dict, Tuple

from cc.daemon.plugins import CCDaemonPlugin

__all__ = ["PgLogForwardPlugin"]


class PgLogForwardPlugin(CCDaemonPlugin):
    """Base: list the record formats handled in ``LOG_FORMATS``; override :meth:`process`.

    A record is a dict with the extension's fields (``elevel``, ``elevel_text``,
    ``sqlerrcode``, ``username``, ``database``, ``remotehost``, ``funcname``,
    ``message``, ``detail``, ``hint``, ``context``, ``debug_query_string``).
    """

    LOG_FORMATS: Tuple[str, ...] = ()

    def probe(self, log_fmt: str) -> bool:  # type: ignore[override]
        return log_fmt in self.LOG_FORMATS

    def process(self, record: Dict[str, Any]) -> None:
        raise NotImplementedError

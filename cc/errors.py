"""The one shape of a refusal that becomes an ``error`` reply: a code and a text.

Dependency-free, so that every layer (message, crypto, task routing) can
derive its errors from it.
"""

__all__ = ["CodedError"]


class CodedError(ValueError):
    """A refusal with ``code`` (a short machine-readable reason: stats keys, the ``code`` of an
    ``error`` reply, doc/protocol.md §6) and ``msg`` (for people)."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg

"""``pub.infofile`` messages as infosender and infoscript send them.

Both daemons share the original's options for it: ``compression``,
``compression-level``, ``msg-suffix`` and ``use-blob``.
"""

import base64
from typing import Any

from skytools.config import ConfigError

from cc.files import compression
from cc.message import CCMessage, is_valid_type
from cc.msgtypes import InfofileMessage
from cc.options import Option

__all__ = ["InfofileEncoder", "OPTIONS"]

#: the sender options, declared once for every daemon that sends files or log fragments
OPTIONS = (
    Option("compression", "str", "none", "gzip, bzip2 or none"),
    Option("compression-level", "str", None, "empty: the library's default"),
    Option("msg-suffix", "str", None, "appended to the message type (pub.infofile.<suffix>)"),
    Option("use-blob", "bool", True, "send the contents as a binary frame, not in the body"),
)


class InfofileEncoder:
    """Reads the sender options of a daemon section; packs and wraps file contents."""

    def __init__(self, cf: Any) -> None:
        try:
            self.method = compression.normalize(cf.get("compression", "none"))
            self.level = compression.parse_level(cf.get("compression-level", ""))
        except ValueError as ex:
            raise ConfigError("[%s]: %s" % (cf.main_section, ex)) from None
        suffix = cf.get("msg-suffix", "")
        if suffix and not is_valid_type(suffix):
            raise ConfigError(
                "[%s]: msg-suffix = %s is not a valid type" % (cf.main_section, suffix)
            )
        self.msgtype = InfofileMessage.REQ + ("." + suffix if suffix else "")
        self.use_blob = cf.getboolean("use-blob", True)

    def pack(self, data: bytes) -> bytes:
        """Compressed ``data`` (CPU work: call it off the loop)."""
        return compression.compress(data, self.method, self.level)

    def message(self, filename: str, mtime: float, packed: bytes, **extra: Any) -> CCMessage:
        fields = {
            "filename": filename.replace("\\", "/"),
            "mtime": mtime,
            "comp": self.method,
            "mode": "b",
            **extra,
        }
        if self.use_blob:
            return InfofileMessage(self.msgtype, data="", **fields).to_message(blob=packed)
        encoded = base64.b64encode(packed).decode("ascii")
        return InfofileMessage(self.msgtype, data=encoded, **fields).to_message()

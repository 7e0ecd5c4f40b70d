"""Reading a child process's output on the loop, line by line, with bounded lines.

``asyncio.StreamReader.readline`` raises on a line longer than its buffer
limit; a child printing a huge line (or binary junk) must not break the
reader, so lines are cut at ``max_line`` bytes and the rest is dropped.
"""

import asyncio
import logging
import re
from typing import Callable

__all__ = ["read_lines", "line_level", "MAX_LINE"]

#: the level of a log line as cc's processes write it (skytools' formats, plain or verbose:
#: ``2026-12-04 20:30:59,521 16668 WARNING cc.x: ...``, ``20:30:59,521 WARNING cc.x: ...``)
LOG_LINE_RE = re.compile(
    r"(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d[,.]\d+ (?:\d+ )?"
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL|FATAL) "
)

#: bytes of one output line kept; the rest of a longer line is dropped
MAX_LINE = 4096

CHUNK = 65536


async def read_lines(
    stream: asyncio.StreamReader, on_line: Callable[[str], None], max_line: int = MAX_LINE
) -> None:
    """Call ``on_line(text)`` for every line of ``stream`` until EOF."""
    buf = b""
    skipping = False  # inside an over-long line whose head was already given
    while True:
        chunk = await stream.read(CHUNK)
        if not chunk:
            break
        buf += chunk
        while True:
            pos = buf.find(b"\n")
            if pos < 0:
                break
            line, buf = buf[:pos], buf[pos + 1 :]
            if not skipping:
                on_line(_text(line[:max_line]))
            skipping = False
        if len(buf) > max_line:
            if not skipping:
                on_line(_text(buf[:max_line]))
                skipping = True
            buf = b""
    if buf and not skipping:
        on_line(_text(buf[:max_line]))


def line_level(line: str, default: int) -> int:
    """The level a child's output line is relayed at: its own, if it is a log line, else
    ``default`` (stderr: WARNING, stdout: INFO)."""
    m = LOG_LINE_RE.match(line)
    return logging.getLevelName(m.group(1)) if m else default


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf8", "replace")

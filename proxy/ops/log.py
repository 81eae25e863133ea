"""Process-wide logging: one JSON object per line (default) or plain text for local use.

Log calls pass only values the proxy chose to log; request lines come from the observer
middleware with a fixed set of fields. Tokens, cookies and secrets are never arguments.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else was passed as ``extra`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # the type only: messages may carry data
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line per record for people: the message and every field with every character
    that is not printable escaped, so a path with ``%0a`` or ``%e2%80%a8`` cannot start a
    forged line of its own, nor a bidi override reorder what a viewer shows."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escaped(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        line = super().format(record)
        if extra:
            line += " " + " ".join(escaped(f"{k}={v}") for k, v in extra.items())
        return line


def escaped(text: str) -> str:
    """Python's escape (``\\n``, ``\\x1b``, ``\\u2028``) for every character it calls not
    printable: controls (Cc), format characters (Cf), line and paragraph separators,
    surrogates, unassigned code points and every separator but the ASCII space."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a request its HTTP parser refused (400; 408, 431: http.header_guard)
    at ERROR with a traceback whose message quotes the offending line, cookies and
    Authorization included. It is the client's mistake: one info line naming the error's
    type."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "request refused by the HTTP parser (%d): %s"
            record.args = (error.code, type(error).__name__)
            record.exc_info, record.exc_text = None, None
        return True


def setup(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # the proxy writes its own lines
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())

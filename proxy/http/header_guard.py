"""The request header block, bounded in size: aiohttp's parser limits each line
(``max_field_size``) and the number of lines (128), not their sum, so 126 lines of 64 KB
without the closing blank line held ~16 MB per connection.

``HeaderGuard`` wraps the connection's parser: bytes fed while no request body is
pending count towards the header block being read; a completed block resets the count.
Past ``server.max_header_bytes`` (or once the header deadline has passed) it raises an
``HttpProcessingError`` instead of parsing, which aiohttp answers in order, after any
request still in progress, and then closes the connection; later bytes are dropped
unparsed. A block completed within one read is measured from the parsed message instead,
so the parser holds at most the limit plus one read.
"""

from __future__ import annotations

from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

NOTHING: tuple[list[Any], bool, bytes] = ([], False, b"")


class HeaderRefused(HttpProcessingError):
    """What aiohttp answers with this error's code instead of its parser's 400."""

    def __init__(self) -> None:
        super().__init__(message=self.message)  # the base would set it to ""


class HeaderBlockTooLarge(HeaderRefused):
    code = 431
    message = "the request header block exceeds server.max_header_bytes"


class HeaderTimeout(HeaderRefused):
    code = 408
    message = "the request header block did not arrive within server.header_timeout"


class HeaderGuard:
    def __init__(self, parser: Any, limit: int) -> None:
        self._parser = parser
        self._limit = limit
        self.pending = 0  # bytes of the header block being read
        self._body: StreamReader | None = None  # the last request's, until it is read
        self._expired = False
        self._refused = False

    def __getattr__(self, name: str) -> Any:
        # message_consumed, pause_reading, set_upgraded, feed_eof: the parser's own
        return getattr(self._parser, name)

    def expire(self) -> None:
        """The header deadline passed: the next feed raises HeaderTimeout."""
        self._expired = True

    def feed_data(self, data: bytes) -> tuple[list[Any], bool, bytes]:
        if self._refused:
            return NOTHING
        if self._expired:
            self._refuse(HeaderTimeout())
        messages, upgraded, tail = self._parser.feed_data(data)
        if messages:
            # Blocks completed in this read: measured only when it could hold a large one.
            if self.pending + len(data) > self._limit and any(
                _block_bytes(message) > self._limit for message, _ in messages
            ):
                self._refuse(HeaderBlockTooLarge())
            self.pending, self._body = 0, messages[-1][1]
        elif self._body is None or self._body.is_eof():
            self.pending += len(data)
            if self.pending > self._limit:
                self._refuse(HeaderBlockTooLarge())
        return messages, upgraded, tail

    def _refuse(self, error: HeaderRefused) -> None:
        self._refused = True
        raise error


def _block_bytes(message: Any) -> int:
    """A parsed header block's size: its target and lines (with ": " and CRLF)."""
    return len(message.path) + sum(
        len(name) + len(value) + 4 for name, value in message.raw_headers
    )

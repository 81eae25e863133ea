"""Split one long cookie value over ``name_0 … name_n`` so every Set-Cookie fits 4 KB.

``name_0`` carries the chunk count (``3.<first part>``) so a missing chunk is detected
before any decryption. Values are base64url text, which needs no cookie quoting.
Chunks beyond the new count that the browser still holds are expired, so a session
that shrinks leaves nothing stale behind.

Cookie prefixes (RFC 6265bis §4.1.3, matched case-insensitively as browsers do):
``__Secure-`` cookies must be Secure; ``__Host-`` cookies must be Secure, ``Path=/`` and
have no Domain, so a sibling subdomain cannot set ("toss") one. Without the prefix it can,
so when a name arrives twice the first one counts: browsers send the cookie of the
longer path, then the older one, first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from proxy.config.origins import secure_prefix

MAX_SET_COOKIE_BYTES = 4096  # the whole "Set-Cookie: …" line, attributes included
MAX_CHUNKS = 8  # 8 of ~4 KB each; more is not a session this proxy wrote
_HEADER_PREFIX = len("Set-Cookie: ")
_COUNT_PREFIX = len("9.")
_COUNTS = frozenset(str(n) for n in range(1, MAX_CHUNKS + 1))
_INDEXES = {str(n): n for n in range(100)}


def host_only(name: str) -> bool:
    """Whether browsers accept ``name`` only with Secure, ``Path=/`` and no Domain."""
    return secure_prefix(name) == "__Host-"


@dataclass(frozen=True)
class CookieAttributes:
    secure: bool
    path: str = "/"
    same_site: str = "Lax"

    def render(self, max_age: int) -> str:
        parts = [f"Path={self.path}", f"Max-Age={max_age}", "HttpOnly"]
        parts.append(f"SameSite={self.same_site}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


def chunk_name(name: str, index: int) -> str:
    return f"{name}_{index}"


def write_chunks(
    name: str,
    value: str,
    attributes: CookieAttributes,
    max_age: int,
    present: Mapping[str, str],
) -> list[str]:
    """Set-Cookie values that store ``value`` and expire stale chunks in ``present``."""
    rendered = attributes.render(max_age)
    room = MAX_SET_COOKIE_BYTES - _HEADER_PREFIX - len(f"{chunk_name(name, MAX_CHUNKS)}=; ")
    room -= len(rendered) + _COUNT_PREFIX
    parts = [value[i : i + room] for i in range(0, len(value), room)] or [""]
    if len(parts) > MAX_CHUNKS:
        raise ValueError(f"cookie value needs {len(parts)} chunks, more than {MAX_CHUNKS}")
    parts[0] = f"{len(parts)}.{parts[0]}"
    headers = [f"{chunk_name(name, i)}={part}; {rendered}" for i, part in enumerate(parts)]
    return headers + expire_chunks(name, attributes, present, keep=len(parts))


def expire_chunks(
    name: str, attributes: CookieAttributes, present: Mapping[str, str], keep: int = 0
) -> list[str]:
    expired = attributes.render(0)
    return [
        f"{cookie}=; {expired}"
        for cookie in sorted(present)
        if _chunk_index(name, cookie) is not None and (_chunk_index(name, cookie) or 0) >= keep
    ]


def read_chunks(name: str, cookies: Mapping[str, str]) -> str | None:
    """The joined value, or None when absent, malformed or incomplete."""
    first = cookies.get(chunk_name(name, 0))
    if not first:
        return None
    count_text, dot, head = first.partition(".")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not dot or count_text not in _COUNTS:
        return None
    parts = [head]
    for index in range(1, int(count_text)):
        part = cookies.get(chunk_name(name, index))
        if part is None:
            return None
        parts.append(part)
    return "".join(parts)


def has_chunks(name: str, cookies: Mapping[str, str]) -> bool:
    return any(_chunk_index(name, cookie) is not None for cookie in cookies)


def _chunk_index(name: str, cookie: str) -> int | None:
    prefix = name + "_"
    if not cookie.startswith(prefix):
        return None
    suffix = cookie[len(prefix) :]
    return _INDEXES.get(suffix)


def own_cookies(headers: Iterable[str], name: str) -> dict[str, str]:
    """This proxy's cookies straight from the raw Cookie headers, the first of a name
    winning (see above): parsing every cookie of a request (aiohttp's ``request.cookies``,
    where the last wins) costs more than the session lookup itself."""
    prefix = name + "_"
    found: dict[str, str] = {}
    for header in headers:
        for pair in header.split(";"):
            cookie, equals, value = pair.strip().partition("=")
            if equals and cookie.startswith(prefix):
                found.setdefault(cookie, value)
    return found

"""Where a browser may be sent after login or sign-out (the `rd` parameter).

Only a relative path on the proxy's own origin is accepted; anything else becomes "/".
The rules, all of which must hold:

- at most MAX_LENGTH characters (a longer value is cut to its path, without query and
  fragment, before the other rules apply: a deep link too long to keep still lands on
  its page, not on "/"), each printable ASCII (0x21-0x7E): no whitespace, no
  control characters (browsers strip tab/newline from URLs), no Unicode lookalikes
  such as U+FF0F or U+2215 that some parsers fold into "/";
- no backslash anywhere: browsers read "\\" as "/" in http(s) URLs;
- the path (before "?" or "#") starts with exactly one "/" and has no empty segment
  ("//"), so that dot-segment removal ("/.//host") cannot leave a "//host" prefix;
- once percent-decoded (repeatedly, for double encoding) the path still starts with
  "/" followed by nothing or a printable ASCII character other than "/" and "\\":
  this rejects "/%2f", "/%5c", "/%09" and encoded Unicode right after the slash.

Query and fragment are kept: they cannot change the origin once the path is checked,
and a single-page app may need its fragment route back.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

MAX_LENGTH = 2048  # login_flow sizes its cookie for a return path this long
FALLBACK = "/"


def safe_return_path(value: str | None) -> str:
    """`value` if it is a safe same-origin relative path (cut to its path when too long),
    else "/"."""
    if value and len(value) > MAX_LENGTH:
        value = _path_of(value)
    if not value or len(value) > MAX_LENGTH:
        return FALLBACK
    if not all("!" <= char <= "~" for char in value) or "\\" in value:
        return FALLBACK
    path = _path_of(value)
    if not path.startswith("/") or "//" in path:
        return FALLBACK
    if not _plain_start(_fully_decoded(path)):
        return FALLBACK
    return value


def login_url(public_url: str, prefix: str, return_path: str) -> str:
    """The proxy's login start URL that brings the browser back to `return_path`."""
    rd = quote(safe_return_path(return_path), safe="/")
    return f"{public_url.rstrip('/')}{prefix}/start?rd={rd}"


def _path_of(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


def _fully_decoded(path: str) -> str:
    # Each round that changes the string shortens it, so this ends quickly.
    while True:
        decoded = unquote(path, errors="replace")
        if decoded == path:
            return path
        path = decoded


def _plain_start(decoded_path: str) -> bool:
    if not decoded_path.startswith("/"):
        return False
    if len(decoded_path) == 1:
        return True
    second = decoded_path[1]
    return "!" <= second <= "~" and second not in "/\\"

"""A request path in its one canonical spelling, or none.

The forwarder passes the path to the upstream byte for byte, so a client's rules are only
matched against a path that has no spelling the upstream could read otherwise: no empty,
``.`` or ``..`` segment, no backslash, no percent-encoded ``/``, ``\\``, ``.`` or ``%`` (a
double encoding), no ``;`` (a path parameter, raw or encoded), no ``%`` that is not an
escape, no control, space or non-ASCII character, raw or percent-encoded. Any
other spelling is refused outright, whatever the rules say, so no spelling of a path
reaches sipgate that the rule set would refuse.
"""

from __future__ import annotations

import re

# Percent-encodings that would let one path be spelt two ways (/, \, ., %), or that a
# decoder may read as something else: control characters and any byte above 0x7F (an
# overlong UTF-8 "%c0%ae" is "." to some).
_AMBIGUOUS_ESCAPES = re.compile(
    r"%(2[0fFeE5]|3[bB]|5[cC]|[01][0-9a-fA-F]|7[fF]|[89a-fA-F][0-9a-fA-F])"
    r"|%(?![0-9a-fA-F]{2})"  # a "%" that is no escape: double decoding, IIS's "%u002e"
)
_PLAIN = re.compile(r"[\x21-\x7e]*\Z")


def canonical_segments(raw_path: str) -> tuple[str, ...] | None:
    """The path's segments (without the query), or None when it is not in the one
    spelling that every reader of it agrees on."""
    path = raw_path.split("?", 1)[0]
    # A request-target never holds "#": a front proxy that passes its raw target upstream
    # (forward-auth) would send what follows it, which the rules never saw.
    if "#" in path:
        return None
    # ";" starts a path parameter, which Tomcat, Spring and Jetty cut off a segment before
    # they resolve dots: "/allowed/..;/refused" is "/refused" to them.
    if not path.startswith("/") or not _PLAIN.match(path) or "\\" in path or ";" in path:
        return None
    if _AMBIGUOUS_ESCAPES.search(path):
        return None
    segments = tuple(path[1:].split("/"))
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return segments

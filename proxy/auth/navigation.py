"""Is this request a browser navigation (send it to the login page) or an API call (401)?

A navigation is a GET or HEAD whose `Sec-Fetch-Mode` is `navigate` or absent (older
browsers, proxies that strip it) and whose `Accept` header prefers HTML over JSON:

    html_q > json_q

where each q is that of the most specific media range matching the type (`text/html`
beats `text/*` beats `*/*`; among equally specific ranges the highest q counts) and a
type no range matches has q = 0. Ties go to JSON, so `*/*` (curl, fetch, scripts,
images) and `application/json, text/plain, */*` (axios) get the JSON 401 they can
parse. An absent, oversized or malformed `Accept` is never a navigation.
"""

from __future__ import annotations

import re

MAX_ACCEPT_LENGTH = 4096  # real browsers send ~150 characters; bounds the parsing work

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 9110 §12.4.2

MediaRange = tuple[str, str, float]


def is_browser_navigation(method: str, accept: str | None, sec_fetch_mode: str | None) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    if sec_fetch_mode is not None and sec_fetch_mode.strip().lower() != "navigate":
        return False
    ranges = _parse_accept(accept)
    if ranges is None:
        return False
    return _quality(ranges, "text", "html") > _quality(ranges, "application", "json")


def _parse_accept(accept: str | None) -> list[MediaRange] | None:
    """Lower-cased (type, subtype, q) per media range; None if absent or malformed."""
    if not accept or len(accept) > MAX_ACCEPT_LENGTH:
        return None
    ranges = []
    for element in accept.split(","):
        if not element.strip():
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        media_range = _parse_media_range(element)
        if media_range is None:
            return None
        ranges.append(media_range)
    return ranges or None


def _parse_media_range(element: str) -> MediaRange | None:
    media_type, *params = element.split(";")
    kind, slash, subtype = media_type.strip().lower().partition("/")
    if not (slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype)):
        return None
    if kind == "*" and subtype != "*":
        return None
    quality = 1.0
    for param in params:
        name, equals, value = (part.strip() for part in param.partition("="))
        if not (equals and value and _TOKEN.fullmatch(name)):
            return None
        if name.lower() == "q":
            if not _QVALUE.fullmatch(value):
                return None
            quality = float(value)
    return kind, subtype, quality


def _quality(ranges: list[MediaRange], kind: str, subtype: str) -> float:
    best_specificity, best_quality = -1, 0.0
    for range_kind, range_subtype, quality in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif (range_kind, range_subtype) == (kind, "*"):
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if (specificity, quality) > (best_specificity, best_quality):
            best_specificity, best_quality = specificity, quality
    return best_quality

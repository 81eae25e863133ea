"""Caching directives for a proxied answer: one account's answer, whatever the upstream
says. Its session, client credential or PAT decided what the upstream answered, so no
shared cache in front of the proxy may hand it to anyone else (RFC 9111 §5.2.2.7):
``public`` and a field-qualified ``private`` go, an unqualified ``private`` comes, every
other directive (``max-age``, ``no-store``, …) stays. Where a cookie names the account
(OAuth2 mode) the answer also varies by ``Cookie``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from multidict import CIMultiDict

# One directive of a Cache-Control line: commas inside a quoted string do not split.
_DIRECTIVE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')
_SHARED_CACHE_SAYS = frozenset({"public", "private"})


def keep_private(headers: CIMultiDict[str], vary_cookie: bool) -> None:
    headers["Cache-Control"] = private_cache_control(headers.getall("Cache-Control", ()))
    if vary_cookie:
        vary = vary_adding(headers.getall("Vary", ()), "Cookie")
        if vary is not None:
            headers["Vary"] = vary


def private_cache_control(values: Sequence[str]) -> str:
    """The directives of ``values`` without ``public`` or ``private``, then ``private``."""
    kept = [
        directive.strip()
        for value in values
        for directive in _DIRECTIVE.findall(value)
        if directive.strip()
        and directive.split("=", 1)[0].strip().lower() not in _SHARED_CACHE_SAYS
    ]
    return ", ".join([*kept, "private"])


def vary_adding(values: Sequence[str], field: str) -> str | None:
    """The ``Vary`` value that adds ``field`` to the field's lines ``values``, or None
    when they already name it (or ``*``); the lines already there are kept as sent."""
    tokens = {token.strip().lower() for value in values for token in value.split(",")}
    if field.lower() in tokens or "*" in tokens:
        return None
    return ", ".join([*(value.strip() for value in values if value.strip()), field])

"""CSRF and CORS decisions for requests that carry a session cookie.

The session cookie turns into a bearer token upstream, so a cross-site form or script
must not be able to spend it. An unsafe request is allowed when its `Origin` is the
proxy's own origin or one of `allowed_origins`; without an `Origin` (curl, server-side
clients, old browsers) when `Sec-Fetch-Site` is `same-origin`, `none` or absent.
The literal `null` origin (sandboxed frames, file:, some redirects) is never allowed.

Origins are compared normalised (``normalise_origin``, shared with the settings' checks):
lower-case scheme and host, no default port, no trailing slash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from proxy.config.origins import normalise_origin
from proxy.upstream.caching import vary_adding

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
PREFLIGHT_MAX_AGE = "600"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class OriginPolicy:
    def __init__(self, own_origin: str, allowed_origins: Sequence[str] = ()) -> None:
        self.own_origin = _required_origin(own_origin)
        # Our own origin needs no CORS headers, even when it is also listed.
        self.other_origins = frozenset(_required_origin(o) for o in allowed_origins) - {
            self.own_origin
        }

    def allows_unsafe_request(
        self, method: str, origin: str | None, sec_fetch_site: str | None
    ) -> bool:
        if method in SAFE_METHODS:
            return True
        if origin is not None:
            normalised = normalise_origin(origin)  # "null" is not an origin here
            return normalised == self.own_origin or normalised in self.other_origins
        return sec_fetch_site is None or sec_fetch_site.strip().lower() in ("same-origin", "none")

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or normalise_origin(origin) not in self.other_origins:
            return {}
        return {
            # Echoed as sent: the browser compares it byte for byte with its own origin.
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
        }

    def preflight_headers(
        self, origin: str | None, request_method: str | None, request_headers: str | None
    ) -> dict[str, str] | None:
        """Headers for a 204 answer to a preflight, or None if it is not ours to allow."""
        headers = self.cors_headers(origin)
        if request_method is None or not headers:
            return None
        # Anything invalid is left out, so the browser fails the preflight itself.
        if _TOKEN.fullmatch(request_method):
            headers["Access-Control-Allow-Methods"] = request_method
        names = [name.strip().lower() for name in (request_headers or "").split(",")]
        names = [name for name in names if name]
        if names and all(_TOKEN.fullmatch(name) for name in names):
            headers["Access-Control-Allow-Headers"] = ", ".join(names)
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return headers


def vary_with_origin(values: Sequence[str]) -> str | None:
    """The ``Vary`` value that adds ``Origin`` to the field's lines ``values``, or None
    when they already name it (or ``*``). With CORS on, every answer varies by Origin,
    also one to a request without it; the upstream's fields are kept as sent."""
    return vary_adding(values, "Origin")


def _required_origin(value: str) -> str:
    origin = normalise_origin(value)
    if origin is None:
        raise ValueError(
            f"{value!r} is not a bare http(s) origin (scheme://host[:port], "
            "no path, query or credentials), e.g. https://app.example"
        )
    return origin

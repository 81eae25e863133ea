"""Turn the client's request target into the upstream URL, keeping the origin fixed.

Only the path and query of the request reach the upstream, byte for byte as the client
sent them; the scheme, host and port always come from configuration.
"""

from __future__ import annotations

from yarl import URL

from proxy.errors import BadRequestTarget


def path_and_query(raw_target: str) -> str:
    """The origin-form part of a request target (RFC 9112 §3.2), unchanged."""
    if raw_target.startswith("/"):
        return raw_target
    scheme, sep, rest = raw_target.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        raise BadRequestTarget()
    # Absolute form: drop the client's authority, keep what follows it.
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    remainder = rest[cut:]
    return remainder if remainder.startswith("/") else "/" + remainder


class UpstreamTarget:
    def __init__(self, upstream_url: str) -> None:
        self._base = upstream_url.rstrip("/")
        base = URL(self._base)
        self.origin = base.origin()
        self._host_port = (base.raw_host, base.port)

    def url_for(self, raw_target: str) -> URL:
        # encoded=True: yarl must neither re-quote nor normalise what the client sent.
        url = URL(self._base + path_and_query(raw_target), encoded=True)
        if (url.raw_host, url.port) != self._host_port:  # defence in depth; cannot happen
            raise BadRequestTarget()
        return url

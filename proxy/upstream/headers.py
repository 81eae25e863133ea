"""Which header fields cross the proxy, in each direction (RFC 9110 §7.6.1), and which a
client may never send because the upstream takes them as the proxy's word."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1 hop-by-hop fields, plus fields the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REQUEST_FIELDS_SET_BY_PROXY = frozenset(
    {
        "host",
        "authorization",
        "cookie",
        "expect",
        "forwarded",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
RESPONSE_FIELDS_SET_BY_SERVER = frozenset({"content-length"})
# The upstream takes these as the proxy's word, so a client's copy never passes: the
# forwarding headers the proxy does not set, and the identity headers other auth proxies
# set for the apps behind them (compared in lower case, "_" read as "-").
UNTRUSTED_FIELDS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        # what some frameworks take as the real method or path: a client's policy is
        # checked on the request line, so nothing may restate it
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        # the front proxy's forward-auth secret (a Traefik chain sets it on the request)
        "x-sipgate-forward-auth-secret",
    }
)
UNTRUSTED_PREFIXES = (
    "x-forwarded-",  # X-Forwarded-For is rebuilt by add_forwarded_for
    # what a front proxy states about the original request (forward-auth's method and
    # URI, ingress-nginx's X-Original-Forwarded-For): never the client's to state
    "x-original-",
    "x-auth-request-",
    "remote-",
    "x-remote-",
    "oidc-",
    "x-webauth-",
    "x-pomerium-",
    "cf-access-",
    "x-goog-authenticated-",
    "x-ms-client-principal",
    "x-amzn-oidc-",
)
# CGI, WSGI and PHP read "X_Forwarded_For" as "X-Forwarded-For" (CVE-2025-64484).
_NEVER_WITH_UNDERSCORE = (
    HOP_BY_HOP | REQUEST_FIELDS_SET_BY_PROXY | {"content-length", "x-request-id"}
)


def canonical_name(name: str) -> str:
    return name.lower().replace("_", "-")


def client_may_send(name: str, also_untrusted: frozenset[str] = frozenset()) -> bool:
    """``also_untrusted``: further canonical names (the configured forward-auth ones)."""
    canonical = canonical_name(name)
    if canonical in UNTRUSTED_FIELDS or canonical.startswith(UNTRUSTED_PREFIXES):
        return False
    if canonical in also_untrusted:
        return False
    return not ("_" in name and canonical in _NEVER_WITH_UNDERSCORE)


def passed_on(
    received: CIMultiDictProxy[str], also_untrusted: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """The client's fields that go upstream: no hop-by-hop field (nor one ``Connection``
    names), none the proxy sets itself, none a client may not send."""
    dropped = connection_tokens(received)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in received.items():
        lower = name.lower()
        if (
            lower in HOP_BY_HOP
            or lower in REQUEST_FIELDS_SET_BY_PROXY
            or lower in dropped
            or not client_may_send(name, also_untrusted)
        ):
            continue
        headers.add(name, value)
    return headers


_DROPPED_RESPONSE_FIELDS = HOP_BY_HOP | RESPONSE_FIELDS_SET_BY_SERVER


def response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    dropped = _DROPPED_RESPONSE_FIELDS | connection_tokens(upstream.headers)
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        # CORS is the proxy's decision: the upstream cannot know which origins the
        # proxy's cookie or token may be spent from.
        if lower not in dropped and not lower.startswith("access-control-"):
            kept.add(name, value)
    return kept


def connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    if "Connection" not in headers:
        return frozenset()
    values = headers.getall("Connection")
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def add_forwarded_for(headers: CIMultiDict[str], request: web.Request) -> None:
    peer = request.remote or "unknown"
    previous = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer

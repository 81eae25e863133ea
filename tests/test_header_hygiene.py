"""Header hygiene against the known CVE classes of authenticating proxies.

The upstream trusts the proxy: whatever arrives from it in a header the proxy is known to
set (X-Forwarded-*, identity headers, Authorization) is taken as the proxy's word. So a
client's own copy of such a header must never arrive, in any spelling:

- the forwarding headers the proxy sets (X-Forwarded-For/-Proto/-Host) carry the proxy's
  values; every other X-Forwarded-* header, ``Forwarded`` and ``X-Real-IP`` are dropped;
- identity headers that auth proxies set for the apps behind them (oauth2-proxy's
  X-Auth-Request-*, X-Forwarded-User/-Email/…, Remote-User, mod_auth_openidc's OIDC_*,
  …) are dropped: this proxy sets none, and an app behind it may trust them;
- underscore spellings (``X_Forwarded_For``) are dropped too: CGI, WSGI and PHP map
  ``-`` and ``_`` to the same variable, so ``X_Forwarded_For`` can stand in for the
  proxy's header there (oauth2-proxy CVE-2025-64484);
- request smuggling vectors are refused by the server (400) and never reach the upstream.

SECURITY.md describes the policy; the tests here are its proof.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.oauth.tokens import TokenSet
from tests.conftest import ProxyFactory
from tests.support.processes import free_port
from tests.support.upstream import create_upstream_app
from tests.test_faults import oauth_proxy, sealed_cookie
from tests.test_forward import header_values

ServerFactory = Callable[..., Awaitable[TestServer]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What the proxy itself puts on every upstream request.
PROXY_SET = frozenset(
    {"authorization", "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
)
# Request fields the proxy must never pass in an underscore spelling: its own, and the
# framing and hop-by-hop fields.
PROTECTED = PROXY_SET | {
    "x-request-id", "cookie", "content-length", "transfer-encoding", "connection",
    "keep-alive", "proxy-authorization", "proxy-connection", "upgrade", "te", "trailer",
    "expect", "forwarded", "x-real-ip",
}  # fmt: skip
# Identity headers other authenticating proxies set (lower case, "-" for "_").
IDENTITY_PREFIXES = (
    "x-auth-request-",  # oauth2-proxy
    "x-forwarded-",  # oauth2-proxy's X-Forwarded-User/-Email/-Groups/-Access-Token, …
    "remote-",  # Authelia, Apache REMOTE_USER as a header
    "x-remote-",
    "oidc-",  # mod_auth_openidc: OIDC_CLAIM_*, OIDC_access_token
    "x-webauth-",  # Grafana's auth proxy
    "x-pomerium-",
    "cf-access-",  # Cloudflare Access
    "x-goog-authenticated-",  # Google IAP
    "x-ms-client-principal",  # Azure App Service
    "x-amzn-oidc-",  # AWS ALB
)
IDENTITY_HEADERS = [
    "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Groups", "X-Auth-Request-Access-Token", "X-Forwarded-User",
    "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
    "X-Forwarded-Access-Token", "Remote-User", "Remote-Email", "Remote-Groups", "Remote-Name",
    "X-Remote-User", "OIDC_CLAIM_sub", "OIDC_access_token", "X-WEBAUTH-USER",
    "X-Pomerium-Jwt-Assertion", "Cf-Access-Authenticated-User-Email",
    "X-Goog-Authenticated-User-Email", "X-MS-CLIENT-PRINCIPAL-NAME", "X-Amzn-Oidc-Identity",
]  # fmt: skip


def canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def planted_headers(echoed: dict[str, Any]) -> list[str]:
    """Headers at the upstream that a client planted where the upstream expects the
    proxy's word: forwarding and identity headers, and underscore spellings of those and
    of the proxy's own, framing and hop-by-hop fields."""
    found = []
    for name, value in echoed["headers"]:
        key = canonical(name)
        trusted = key.startswith(IDENTITY_PREFIXES) or key in {"forwarded", "x-real-ip"}
        if "_" in name and (key in PROTECTED or trusted):
            found.append(f"{name}: {value}")
        elif key in PROXY_SET or key == "x-request-id":
            continue  # the proxy's own; the tests check their values
        elif trusted:
            found.append(f"{name}: {value}")
    return found


# --- a recording upstream double --------------------------------------------------------


@dataclass
class Seen:
    requests: list[tuple[str, str]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]


@dataclass
class RecordingUpstream:
    server: TestServer
    seen: Seen

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def recording_upstream(aiohttp_server: ServerFactory) -> RecordingUpstream:
    """The upstream double (echoes what it got), recording every request it receives."""
    seen = Seen()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.requests.append((request.method, request.raw_path))
        return await handler(request)

    app = create_upstream_app()
    app.middlewares.insert(0, record)
    return RecordingUpstream(await aiohttp_server(app), seen)


async def pat_proxy(make_proxy: ProxyFactory, upstream: RecordingUpstream) -> TestServer:
    return await make_proxy({"SIPGATE_PROXY_UPSTREAM__URL": upstream.url})


async def echo(url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(url, headers=headers, skip_auto_headers=["User-Agent"]) as resp:
            assert resp.status == 200, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result


# --- forwarding headers ------------------------------------------------------------------


async def test_forwarding_headers_the_proxy_sets_carry_the_proxys_values(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    proxy = await pat_proxy(make_proxy, recording_upstream)
    echoed = await echo(
        str(proxy.make_url("/v2/x")),
        [
            ("Host", "proxy.example:8080"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=203.0.113.7;proto=https;host=evil.example"),
        ],
    )
    # Appended: everything left of the last entry is what the client claimed; the last
    # entry is the peer the proxy saw, the only one an upstream may trust.
    assert header_values(echoed, "X-Forwarded-For") == ["203.0.113.7, 198.51.100.1, 127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]  # the proxy's own scheme
    # public_url's host (the default), never the Host the client sent
    assert header_values(echoed, "X-Forwarded-Host") == ["localhost:8080"]
    assert header_values(echoed, "Forwarded") == []


FORWARDING_NOT_SET_BY_PROXY = [
    "X-Real-IP", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
    "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Uri", "X-Forwarded-Method",
    "X-Forwarded-Client-Cert",
]  # fmt: skip


async def test_forwarding_headers_the_proxy_does_not_set_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    """Frameworks behind a trusted proxy read these (Werkzeug ProxyFix, Spring's
    ForwardedHeaderFilter, Django's USE_X_FORWARDED_PORT); the proxy sets none of them,
    so any that arrives was written by the client and would be believed."""
    proxy = await pat_proxy(make_proxy, recording_upstream)
    sent = [(name, "spoofed") for name in FORWARDING_NOT_SET_BY_PROXY]
    echoed = await echo(str(proxy.make_url("/v2/x")), sent)
    planted = planted_headers(echoed)
    assert planted == [], planted


# --- identity headers --------------------------------------------------------------------


async def test_identity_headers_from_clients_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    proxy = await pat_proxy(make_proxy, recording_upstream)
    sent = [(name, "admin@example.com") for name in IDENTITY_HEADERS]
    echoed = await echo(str(proxy.make_url("/v2/x")), sent)
    planted = planted_headers(echoed)
    assert planted == [], planted


async def test_identity_headers_never_reach_upstream_beside_a_real_session(
    aiohttp_server: ServerFactory, recording_upstream: RecordingUpstream
) -> None:
    """Logged in as alice, claiming to be admin: only alice's token reaches upstream."""
    upstream = recording_upstream.server
    public_url = await oauth_proxy(
        aiohttp_server, upstream, "http://127.0.0.1:1/auth/realms/none", free_port()
    )
    cookie = sealed_cookie(TokenSet("alice.access.token", "r", time.time() + 3600, 4e9))
    claims = [(name, "admin") for name in IDENTITY_HEADERS]
    echoed = await echo(f"{public_url}/v2/x", [("Cookie", cookie), *claims])
    assert header_values(echoed, "Authorization") == ["Bearer alice.access.token"]
    planted = planted_headers(echoed)
    assert planted == [], planted


# --- underscore spellings ----------------------------------------------------------------

UNDERSCORE_SPELLINGS = [
    "X_Forwarded_For", "X-Forwarded_For", "x_forwarded_for", "X_Forwarded_Host",
    "X_Forwarded_Proto", "X_Real_IP", "X_Auth_Request_User", "X_Auth_Request_Email",
    "X_Forwarded_User", "X_Forwarded_Email", "Remote_User", "X_Remote_User", "X_Request_ID",
    "Transfer_Encoding", "Content_Length", "Proxy_Authorization", "Keep_Alive",
]  # fmt: skip


async def test_underscore_spellings_of_trusted_headers_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    proxy = await pat_proxy(make_proxy, recording_upstream)
    sent = [(name, "6.6.6.6") for name in UNDERSCORE_SPELLINGS]
    echoed = await echo(str(proxy.make_url("/v2/x")), sent)
    planted = planted_headers(echoed)
    assert planted == [], planted
    # the proxy's own headers are its own
    assert header_values(echoed, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]


# --- Authorization and hop-by-hop abuse --------------------------------------------------


async def test_client_authorization_is_replaced_in_every_form(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    proxy = await pat_proxy(make_proxy, recording_upstream)
    echoed = await echo(
        str(proxy.make_url("/v2/x")),
        [
            ("Authorization", "Bearer stolen-1"),
            ("authorization", "Basic c3RvbGVuOjI="),
            ("AUTHORIZATION", "Bearer stolen-3"),
            ("Proxy-Authorization", "Basic c3RvbGVuOjQ="),
        ],
    )
    (authorization,) = header_values(echoed, "Authorization")
    assert authorization.startswith("Basic ")
    assert "c3RvbGVu" not in authorization  # base64 of "stolen"
    assert header_values(echoed, "Proxy-Authorization") == []


async def test_headers_named_in_connection_cannot_remove_the_proxys_own(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    """Hop-by-hop abuse: a client names the proxy's headers in Connection hoping the
    proxy strips them after setting them (Traefik CVE-2024-45410, Apache CVE-2022-31813)."""
    proxy = await pat_proxy(make_proxy, recording_upstream)
    names = "close, Authorization, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, "
    names += "X-Request-ID, Host"
    echoed = await echo(str(proxy.make_url("/v2/x")), [("Connection", names)])
    assert header_values(echoed, "Authorization")[0].startswith("Basic ")
    assert header_values(echoed, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]
    assert len(header_values(echoed, "X-Forwarded-Host")) == 1
    assert len(header_values(echoed, "X-Request-ID")) == 1
    assert len(header_values(echoed, "Host")) == 1


# --- request smuggling -------------------------------------------------------------------

SMUGGLED = b"GET /v2/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
GET = b"GET /v2/front HTTP/1.1\r\nHost: x\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
LAST = b"0\r\n\r\n"


def post(*fields: bytes) -> bytes:
    return b"POST /v2/front HTTP/1.1\r\nHost: x\r\n" + b"".join(fields) + b"\r\n"


def chunked(size_line: bytes) -> bytes:
    """A chunked POST whose one chunk, if its size line were believed, is SMUGGLED."""
    return post(TE) + size_line + b"\r\n" + SMUGGLED + b"\r\n" + LAST


SMUGGLING_VECTORS = {
    "cl-and-te": post(b"Content-Length: 4\r\n", TE) + LAST + SMUGGLED,
    "te-and-cl": post(TE, b"Content-Length: 40\r\n") + LAST + SMUGGLED,
    "duplicate-cl-differing": post(b"Content-Length: 0\r\nContent-Length: 40\r\n") + SMUGGLED,
    "duplicate-cl-same": post(b"Content-Length: 40\r\nContent-Length: 40\r\n") + SMUGGLED,
    "cl-list": post(b"Content-Length: 40, 40\r\n") + SMUGGLED,
    "cl-plus-sign": post(b"Content-Length: +40\r\n") + SMUGGLED,
    "cl-negative": post(b"Content-Length: -1\r\n") + SMUGGLED,
    "cl-hex": post(b"Content-Length: 0x28\r\n") + SMUGGLED,
    "cl-overflow": post(b"Content-Length: 18446744073709551657\r\n") + SMUGGLED,
    "te-xchunked": post(b"Transfer-Encoding: xchunked\r\n") + LAST + SMUGGLED,
    "te-chunked-identity": post(b"Transfer-Encoding: chunked, identity\r\n") + LAST + SMUGGLED,
    "te-twice": post(TE, TE) + LAST + SMUGGLED,
    "te-space-before-colon": post(b"Transfer-Encoding : chunked\r\n") + LAST + SMUGGLED,
    "te-vertical-tab": post(b"Transfer-Encoding:\x0bchunked\r\n") + LAST + SMUGGLED,
    "te-obs-fold": post(b"Transfer-Encoding:\r\n chunked\r\n") + LAST + SMUGGLED,
    "obs-fold": GET + b"X-A: a\r\n b\r\n\r\n" + SMUGGLED,
    "bare-lf": b"GET /v2/front HTTP/1.1\nHost: x\n\n" + SMUGGLED,
    "bare-lf-in-headers": GET + b"X-A: b\nX-B: c\r\n\r\n" + SMUGGLED,
    "bare-cr": GET + b"X-A: b\rX-B: c\r\n\r\n" + SMUGGLED,
    "nul-in-header": GET + b"X-A: a\x00b\r\n\r\n" + SMUGGLED,
    "space-in-name": GET + b"X A: b\r\n\r\n" + SMUGGLED,
    "leading-space-header": b"GET /v2/front HTTP/1.1\r\n Host: x\r\n\r\n" + SMUGGLED,
    "two-hosts": GET + b"Host: y\r\n\r\n" + SMUGGLED,
    "chunk-size-0x": chunked(b"0x28"),
    "chunk-size-negative": chunked(b"-28"),
    "chunk-size-overflow": chunked(b"10000000000000028"),
    "chunk-size-trailing-space": chunked(b"28 "),
    "chunk-ext-bare-lf": post(TE) + b"2;x\nab\r\n" + LAST + SMUGGLED,
    "chunk-data-overrun": post(TE) + b"2\r\nabcd\r\n" + LAST + SMUGGLED,
    "chunk-lf-only": post(TE) + b"2\nab\n0\n\n" + SMUGGLED,
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing; the
    # connection must not carry another request after it.
    "http10-te-keep-alive": b"POST /v2/front HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
    + TE
    + b"\r\n"
    + LAST
    + SMUGGLED,
}


async def send_raw(proxy: TestServer, data: bytes, idle: float = 0.5) -> bytes:
    """Send bytes as written; read until the server closes or stays silent for ``idle``."""
    assert proxy.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), idle):
            received += chunk
    except TimeoutError:
        pass
    writer.close()
    return received


@pytest.mark.parametrize("vector", sorted(SMUGGLING_VECTORS))
async def test_smuggling_vectors_are_refused_and_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream, vector: str
) -> None:
    proxy = await pat_proxy(make_proxy, recording_upstream)
    answer = await send_raw(proxy, SMUGGLING_VECTORS[vector])
    await asyncio.sleep(0.1)
    assert "/v2/smuggled" not in recording_upstream.seen.paths()
    assert len(recording_upstream.seen.requests) <= 1
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"400"], answer[:200]


async def test_pipelined_requests_do_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    """The control for the test above: the harness does see a second request."""
    proxy = await pat_proxy(make_proxy, recording_upstream)
    front = b"GET /v2/front HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = await send_raw(proxy, front + SMUGGLED)
    await asyncio.sleep(0.1)
    assert recording_upstream.seen.paths() == ["/v2/front", "/v2/smuggled"]
    assert answer.count(b"HTTP/1.1 200 OK") == 2


async def test_h2c_upgrade_is_not_passed_on(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    """h2c smuggling: an Upgrade that reaches the upstream opens a tunnel past the proxy."""
    proxy = await pat_proxy(make_proxy, recording_upstream)
    answer = await send_raw(
        proxy,
        b"GET /v2/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    echoed = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    names = {canonical(name) for name, _ in echoed["headers"]}
    assert not names & {"upgrade", "http2-settings"}


# --- forward-auth's original-request headers ---------------------------------------------

ORIGINAL_REQUEST_HEADERS = [
    "X-Original-URI", "X-Original-Method", "X-Original-Origin", "X-Original-Sec-Fetch-Site",
    "X-Original-Forwarded-For", "X_Original_URI",
]  # fmt: skip


async def test_original_request_headers_from_clients_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    """Front proxies state the original request in these for an auth subrequest; an app
    behind the proxy may believe them, and a client's copy restates a path or method
    the client's policy was not checked on."""
    proxy = await pat_proxy(make_proxy, recording_upstream)
    sent = [(name, "/v2/admin") for name in ORIGINAL_REQUEST_HEADERS]
    echoed = await echo(str(proxy.make_url("/v2/x")), sent)
    arrived = [n for n, _ in echoed["headers"] if canonical(n).startswith("x-original-")]
    assert arrived == []


async def test_configured_forward_auth_header_names_never_reach_upstream(
    make_proxy: ProxyFactory, recording_upstream: RecordingUpstream
) -> None:
    proxy = await make_proxy(
        {
            "SIPGATE_PROXY_UPSTREAM__URL": recording_upstream.url,
            "SIPGATE_PROXY_FORWARD_AUTH__METHOD_HEADER": "X-Auth-Method",
            "SIPGATE_PROXY_FORWARD_AUTH__URI_HEADER": "X-Auth-Uri",
        }
    )
    sent = [("X-Auth-Method", "DELETE"), ("x-auth-uri", "/v2/admin"), ("X_Auth_Uri", "/v2/a")]
    echoed = await echo(str(proxy.make_url("/v2/x")), sent)
    arrived = [n for n, _ in echoed["headers"] if canonical(n).startswith("x-auth-")]
    assert arrived == []
    # the control: a header of the same shape that names nothing passes
    echoed = await echo(str(proxy.make_url("/v2/x")), [("X-Auth-Other", "kept")])
    assert header_values(echoed, "X-Auth-Other") == ["kept"]

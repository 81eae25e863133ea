"""Streaming forwarder: one request in, one request to the upstream, large bodies streamed.

Memory stays bounded for any body size: request chunks flow through an async generator
into aiohttp's client, response chunks are written back as they arrive, and both sides
apply back-pressure (``StreamReader`` high-water marks, ``StreamResponse.write`` drain).
Only an answer of at most SMALL_BODY_SIZE bytes with a Content-Length is read whole, so
that its headers and body leave in one write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from proxy import request_state as state
from proxy.config import Upstream
from proxy.errors import BodyTooLarge, ProxyError, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream.credentials import Credentials
from proxy.upstream.target import UpstreamTarget

log = logging.getLogger(__name__)

# Answers up to this size with a Content-Length are read whole and sent in one write.
SMALL_BODY_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})

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
UNTRUSTED_FIELDS = frozenset({"forwarded", "x-real-ip"})
UNTRUSTED_PREFIXES = (
    "x-forwarded-",  # X-Forwarded-For is rebuilt by _add_forwarded_for
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


def client_may_send(name: str) -> bool:
    canonical = name.lower().replace("_", "-")
    if canonical in UNTRUSTED_FIELDS or canonical.startswith(UNTRUSTED_PREFIXES):
        return False
    return not ("_" in name and canonical in _NEVER_WITH_UNDERSCORE)


_DROPPED_RESPONSE_FIELDS = HOP_BY_HOP | RESPONSE_FIELDS_SET_BY_SERVER


class Forwarder:
    def __init__(
        self,
        settings: Upstream,
        client: aiohttp.ClientSession,
        own_cookie_prefix: str | None = None,
        public_url: str = "http://localhost:8080",
    ) -> None:
        self._settings = settings
        self._client = client
        self._target = UpstreamTarget(settings.url)
        self._own_cookie_prefix = own_cookie_prefix
        # The proxy knows its public origin; Host and X-Forwarded-Host are the client's.
        public = urlsplit(public_url)
        self._forwarded_proto, self._forwarded_host = public.scheme, public.netloc

    async def forward(self, request: web.Request, credentials: Credentials) -> web.StreamResponse:
        url = self._target.url_for(request.raw_path)
        headers = self._upstream_headers(request, credentials)
        body = self._request_body(request)
        upstream = await self._send(request, url, headers, body)
        try:
            if upstream.status == 401 and body is None and credentials.reauthorize is not None:
                retry = await credentials.reauthorize()
                if retry is not None:
                    upstream.release()
                    headers["Authorization"] = retry.authorization
                    request[state.UPSTREAM_401_RETRIED] = True
                    upstream = await self._send(request, url, headers, None)
            return await self._relay(request, upstream)
        finally:
            upstream.release()

    async def _send(
        self,
        request: web.Request,
        url: object,
        headers: CIMultiDict[str],
        body: _CountedBody | None,
    ) -> aiohttp.ClientResponse:
        # aiohttp itself retries an idempotent request once when a pooled keep-alive
        # connection turns out closed; POST and PATCH are never sent twice.
        started = time.perf_counter()
        try:
            upstream = await self._client.request(
                request.method,
                url,  # type: ignore[arg-type]
                headers=headers,
                data=body.chunks() if body is not None else None,
                allow_redirects=False,
                auto_decompress=False,
            )
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise _upstream_failed(request, timeout=True) from None
        except aiohttp.ClientSSLError as err:
            # the one upstream failure an operator fixes in config: say which one it is
            log.warning("upstream TLS handshake failed: %s", err.__cause__ or err)
            raise _upstream_failed(request, timeout=False) from None
        except aiohttp.ClientError:
            if body is not None and body.too_large:
                raise BodyTooLarge() from None
            raise _upstream_failed(request, timeout=False) from None
        request[state.UPSTREAM_SECONDS] = time.perf_counter() - started
        request[state.UPSTREAM_STATUS] = upstream.status
        return upstream

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        if _small_body(request, upstream):
            return await self._relay_whole(request, upstream)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(_response_headers(upstream))
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            # iter_any: whatever arrived, at once; fixed-size chunks cost half the speed
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            upstream.close()  # client went away: drop the upstream connection too
            return response
        except (TimeoutError, aiohttp.ClientError):
            # Headers are out: the only honest signal left is to cut the connection,
            # so the client cannot take a truncated body for a complete one.
            log.warning("upstream failed mid-response; closing client connection")
            upstream.close()
            _abort(request)
            return response
        await response.write_eof()
        return response

    async def _relay_whole(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.Response:
        """A small answer of known length, read whole and sent in one write together with
        its headers (a streamed answer costs a second send(): 1 of 4 syscalls per request
        on the common path). The length bound keeps memory bounded."""
        try:
            body = await upstream.read()
        except TimeoutError:
            raise _upstream_failed(request, timeout=True) from None
        except aiohttp.ClientError:
            # Nothing is sent yet, so a short body becomes an honest 502, not a cut.
            raise _upstream_failed(request, timeout=False) from None
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body)
        response.headers.extend(_response_headers(upstream))
        return response

    def _request_body(self, request: web.Request) -> _CountedBody | None:
        if not request.body_exists:
            return None
        limit = self._settings.max_body_size
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge()
        return _CountedBody(request.content, limit)

    def _upstream_headers(self, request: web.Request, credentials: Credentials) -> CIMultiDict[str]:
        connection_tokens = _connection_tokens(request.headers)
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lower = name.lower()
            if (
                lower in HOP_BY_HOP
                or lower in REQUEST_FIELDS_SET_BY_PROXY
                or lower in connection_tokens
                or not client_may_send(name)
            ):
                continue
            headers.add(name, value)
        cookie = self._upstream_cookie(request)
        if cookie:
            headers["Cookie"] = cookie
        headers["Authorization"] = credentials.authorization
        if state.REQUEST_ID in request:
            headers["X-Request-ID"] = request[state.REQUEST_ID]
        _add_forwarded_for(headers, request)
        headers["X-Forwarded-Proto"] = self._forwarded_proto
        headers["X-Forwarded-Host"] = self._forwarded_host
        return headers

    def _upstream_cookie(self, request: web.Request) -> str | None:
        if not self._settings.forward_cookies:
            return None
        prefix = self._own_cookie_prefix
        kept = [
            pair.strip()
            for raw in request.headers.getall("Cookie", ())
            for pair in raw.split(";")
            if pair.strip() and not (prefix and pair.strip().startswith(prefix))
        ]
        return "; ".join(kept) or None


class _CountedBody:
    """The request body as chunks, refusing to pass more than ``limit`` bytes."""

    def __init__(self, stream: aiohttp.StreamReader, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self._stream.iter_any():
            sent += len(chunk)
            if sent > self._limit:
                self.too_large = True
                raise BodyTooLarge()
            yield chunk


def _upstream_failed(request: web.Request, timeout: bool) -> ProxyError:
    """The error page for an upstream that timed out or failed, counted by kind."""
    request[state.UPSTREAM_ERROR] = "timeout" if timeout else "unreachable"
    return UpstreamTimeout() if timeout else UpstreamUnreachable()


def _small_body(request: web.Request, upstream: aiohttp.ClientResponse) -> bool:
    # HEAD, 204 and 304 carry no body whatever Content-Length says: they keep theirs as is.
    length = upstream.content_length
    return (
        length is not None
        and length <= SMALL_BODY_SIZE
        and request.method != "HEAD"
        and upstream.status not in _NO_BODY_STATUSES
    )


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    dropped = _DROPPED_RESPONSE_FIELDS | _connection_tokens(upstream.headers)
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        # CORS is the proxy's decision: the upstream cannot know which origins the
        # proxy's cookie or token may be spent from.
        if lower not in dropped and not lower.startswith("access-control-"):
            kept.add(name, value)
    return kept


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    if "Connection" not in headers:
        return frozenset()
    values = headers.getall("Connection")
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def _add_forwarded_for(headers: CIMultiDict[str], request: web.Request) -> None:
    peer = request.remote or "unknown"
    previous = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()

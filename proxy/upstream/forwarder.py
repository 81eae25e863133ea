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
from multidict import CIMultiDict

from proxy import request_state as state
from proxy.config import Upstream
from proxy.errors import BodyTooLarge, ProxyError, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream.credentials import Credentials
from proxy.upstream.failures import failure_cause, log_failure, upstream_host
from proxy.upstream.headers import add_forwarded_for, passed_on, response_headers
from proxy.upstream.target import UpstreamTarget

log = logging.getLogger(__name__)

# Answers up to this size with a Content-Length are read whole and sent in one write.
SMALL_BODY_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


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
        self._host = upstream_host(settings.url)  # named in failure log lines
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
        except (TimeoutError, aiohttp.ClientError) as err:
            if body is not None and body.too_large:
                raise BodyTooLarge() from None
            raise self._failed(request, err) from None
        request[state.UPSTREAM_SECONDS] = time.perf_counter() - started
        request[state.UPSTREAM_STATUS] = upstream.status
        return upstream

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        if _small_body(request, upstream):
            return await self._relay_whole(request, upstream)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(response_headers(upstream))
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
        except (TimeoutError, aiohttp.ClientError) as err:
            # Headers are out: the only honest signal left is to cut the connection,
            # so the client cannot take a truncated body for a complete one.
            cause = failure_cause(err)
            log.warning("upstream %s failed mid-response: %s; connection cut", self._host, cause)
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
        except (TimeoutError, aiohttp.ClientError) as err:
            # Nothing is sent yet, so a short body becomes an honest 502 (504), not a cut.
            raise self._failed(request, err) from None
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body)
        response.headers.extend(response_headers(upstream))
        return response

    def _failed(self, request: web.Request, err: BaseException) -> ProxyError:
        """The 502 or 504 for an upstream that failed; the log line says why."""
        cause = failure_cause(err)
        log_failure(self._host, cause, err)
        timeout = cause == "timeout"
        request[state.UPSTREAM_ERROR] = "timeout" if timeout else "unreachable"
        return UpstreamTimeout() if timeout else UpstreamUnreachable()

    def _request_body(self, request: web.Request) -> _CountedBody | None:
        if not request.body_exists:
            return None
        limit = self._settings.max_body_size
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge()
        return _CountedBody(request.content, limit)

    def _upstream_headers(self, request: web.Request, credentials: Credentials) -> CIMultiDict[str]:
        headers = passed_on(request.headers)
        cookie = self._upstream_cookie(request)
        if cookie:
            headers["Cookie"] = cookie
        headers["Authorization"] = credentials.authorization
        if state.REQUEST_ID in request:
            headers["X-Request-ID"] = request[state.REQUEST_ID]
        add_forwarded_for(headers, request)
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


def _small_body(request: web.Request, upstream: aiohttp.ClientResponse) -> bool:
    # HEAD, 204 and 304 carry no body whatever Content-Length says: they keep theirs as is.
    length = upstream.content_length
    return (
        length is not None
        and length <= SMALL_BODY_SIZE
        and request.method != "HEAD"
        and upstream.status not in _NO_BODY_STATUSES
    )


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()

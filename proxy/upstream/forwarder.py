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
from collections.abc import Awaitable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy import request_state as state
from proxy.config import Upstream
from proxy.errors import BodyTooLarge, ProxyError, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream.caching import keep_private
from proxy.upstream.counted_body import CountedBody
from proxy.upstream.credentials import Credentials
from proxy.upstream.failures import failure_cause, log_failure, upstream_host
from proxy.upstream.headers import (
    add_forwarded_for,
    canonical_name,
    passed_on,
    response_headers,
)
from proxy.upstream.own_side import OwnSide
from proxy.upstream.target import UpstreamTarget

log = logging.getLogger(__name__)

# Answers up to this size with a Content-Length are read whole and sent in one write.
SMALL_BODY_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class Forwarder:
    def __init__(self, settings: Upstream, client: aiohttp.ClientSession, own: OwnSide) -> None:
        self._settings = settings
        self._client = client
        self._target = UpstreamTarget(settings.url)
        self._own_cookie_prefixes = own.cookie_prefixes
        self._host = upstream_host(settings.url)  # named in failure log lines
        # The proxy knows its public origin; Host and X-Forwarded-Host are the client's.
        public = urlsplit(own.public_url)
        self._forwarded_proto, self._forwarded_host = public.scheme, public.netloc
        self._untrusted = frozenset(canonical_name(name) for name in own.front_proxy_fields)
        self._vary_cookie = own.session_cookie

    async def forward(self, request: web.Request, credentials: Credentials) -> web.StreamResponse:
        url = self._target.url_for(request.raw_path)
        headers = self._upstream_headers(request, credentials)
        body = self._request_body(request)
        upstream = await self._send(request, url, headers, body)
        try:
            if upstream.status == 401 and body is None and credentials.reauthorize is not None:
                upstream = await self._retry_after_401(request, url, upstream, credentials)
            return await self._relay(request, upstream)
        finally:
            upstream.release()

    async def _retry_after_401(
        self,
        request: web.Request,
        url: object,
        upstream: aiohttp.ClientResponse,
        credentials: Credentials,
    ) -> aiohttp.ClientResponse:
        """The answer to one retry with fresh credentials, or the 401 if there are none."""
        assert credentials.reauthorize is not None
        retry = await credentials.reauthorize()
        if retry is None:
            return upstream
        upstream.release()
        request[state.UPSTREAM_401_RETRIED] = True
        headers = self._upstream_headers(request, retry)
        retried = await self._send(request, url, headers, None)
        if retried.status == 401 and retry.rejected is not None:
            await retry.rejected()  # never raises: the fresh token is not what it minds
        return retried

    async def _send(
        self,
        request: web.Request,
        url: object,
        headers: CIMultiDict[str],
        body: CountedBody | None,
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
        response.headers.extend(self._answer_headers(upstream))
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            # iter_any: whatever arrived, at once; fixed-size chunks cost half the speed
            async for chunk in upstream.content.iter_any():
                if not await _delivered(response.write(chunk)):
                    return _client_went_away(upstream, response)
        except (TimeoutError, aiohttp.ClientError) as err:
            # Headers are out: the only honest signal left is to cut the connection,
            # so the client cannot take a truncated body for a complete one.
            cause = failure_cause(err)
            log.warning("upstream %s failed mid-response: %s; connection cut", self._host, cause)
            upstream.close()
            _abort(request)
            return response
        if not await _delivered(response.write_eof()):
            return _client_went_away(upstream, response)
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
        response.headers.extend(self._answer_headers(upstream))
        return response

    def _answer_headers(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        headers = response_headers(upstream)
        keep_private(headers, self._vary_cookie)  # every answer here is one account's
        return headers

    def _failed(self, request: web.Request, err: BaseException) -> ProxyError:
        """The 502 or 504 for an upstream that failed; the log line says why."""
        cause = failure_cause(err)
        log_failure(self._host, cause, err)
        timeout = cause == "timeout"
        request[state.UPSTREAM_ERROR] = "timeout" if timeout else "unreachable"
        return UpstreamTimeout() if timeout else UpstreamUnreachable()

    def _request_body(self, request: web.Request) -> CountedBody | None:
        if not request.body_exists:
            return None
        limit = self._settings.max_body_size
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge()
        return CountedBody(request.content, limit)

    def _upstream_headers(self, request: web.Request, credentials: Credentials) -> CIMultiDict[str]:
        headers = passed_on(request.headers, self._untrusted)
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
        prefixes = self._own_cookie_prefixes
        kept = [
            pair.strip()
            for raw in request.headers.getall("Cookie", ())
            for pair in raw.split(";")
            if pair.strip() and not pair.strip().startswith(prefixes)
        ]
        return "; ".join(kept) or None


def _small_body(request: web.Request, upstream: aiohttp.ClientResponse) -> bool:
    # HEAD, 204 and 304 carry no body whatever Content-Length says: they keep theirs as is.
    length = upstream.content_length
    return (
        length is not None
        and length <= SMALL_BODY_SIZE
        and request.method != "HEAD"
        and upstream.status not in _NO_BODY_STATUSES
    )


async def _delivered(write: Awaitable[None]) -> bool:
    """False when the client went away: reset, broken pipe, or the connection lost while
    the write waited for the client to read (aiohttp's plain ``ConnectionError``)."""
    try:
        await write
    except ConnectionError:
        return False
    return True


def _client_went_away(
    upstream: aiohttp.ClientResponse, response: web.StreamResponse
) -> web.StreamResponse:
    # Nothing is wrong with the proxy or the upstream: one line, no traceback.
    log.info("client went away mid-response")
    upstream.close()  # drop the upstream connection too: nobody reads the rest
    return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()

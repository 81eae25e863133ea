"""A request under ``webhooks.path``: POST only, from an allowed source, its body whole and
signed by sipgate, then delivered to the app once (replays get the remembered answer).

No session, no client gate, no client networks: sipgate posts from the internet, and
its signature is the credential. The path must be canonical (no dot segments, nothing
percent-encoded), so that no other path is ever taken for this one."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from proxy import request_state as state
from proxy.errors import (
    BadRequestTarget,
    BadWebhookSignature,
    ProxyError,
    WebhookBodyTimeout,
    WebhookBodyTooLarge,
    WebhookSourceRefused,
    json_error,
)
from proxy.ops.metrics import Metrics
from proxy.webhooks.events import Event, read_event
from proxy.webhooks.forward import AppClient
from proxy.webhooks.replay import Answer, Memory
from proxy.webhooks.source import Sources
from proxy.webhooks.verify import SIGNATURE_HEADER, Verifier

log = logging.getLogger("proxy.webhooks")

# What follows the prefix: segments of unreserved characters, none "." or "..".
_REST = re.compile(r"(?:/(?!\.{1,2}(?:/|\Z))[A-Za-z0-9._~-]+)*/?")
_KEPT_HEADERS = ("Content-Type", SIGNATURE_HEADER, "User-Agent")
Reply = tuple[Answer, str]  # the answer, and "delivered" or "replayed"
_OUTCOMES = {
    401: "bad_signature",
    403: "source_refused",
    502: "app_error",
    503: "unavailable",
    504: "app_error",
}


@dataclass(frozen=True)
class Gate:
    """What a request passes before its body is trusted."""

    sources: Sources
    verifier: Verifier
    max_body_size: int
    # The whole body within this (webhooks.timeout): this path faces the internet, and a
    # body trickled a byte a minute would hold a connection for good.
    body_timeout: float


@dataclass(frozen=True)
class Delivery:
    app: AppClient
    memory: Memory

    async def answer(
        self, target: str, body: bytes, headers: Mapping[str, str], remember: bool
    ) -> Reply:
        """The app's answer, or the remembered one when the body was delivered before.
        Only an answer below 500 is remembered (sipgate's retry of a failure must reach
        the app again), and only when ``remember``: copies in flight are held back
        either way."""
        digest = hashlib.sha256(body).digest()
        remembered = await self.memory.claim(digest)
        if remembered is not None:
            return remembered, "replayed"
        try:
            answer = await self.app.deliver(target, body, headers)
        except BaseException:
            await self.memory.release(digest)
            raise
        if remember and answer.status < 500:
            await self.memory.keep(digest, answer)
        else:
            await self.memory.release(digest)
        return answer, "delivered"


class WebhookHandler:
    def __init__(self, prefix: str, gate: Gate, delivery: Delivery, metrics: Metrics) -> None:
        self._prefix, self._gate, self._delivery = prefix, gate, delivery
        self._counts = metrics.webhooks

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            self._count(request, Event(), "bad_request")
            response = json_error(405, "method_not_allowed", "webhooks take POST only")
            response.headers["Allow"] = "POST"
            return response
        try:
            answer, outcome = await self._handle(request)
        except ProxyError as err:
            outcome = _OUTCOMES.get(err.status, "bad_request")
            if err.status in (401, 403):
                log.warning("webhook refused: %s", err.message, extra={"peer": request.remote})
            self._count(request, _noted(request), outcome)
            if isinstance(err, WebhookBodyTimeout):
                return await _answered_and_closed(request, err)
            raise
        self._count(request, _noted(request), outcome)
        return web.Response(status=answer.status, body=answer.body, headers=_type(answer))

    async def _handle(self, request: web.Request) -> Reply:
        target = self._target(request)
        if not self._gate.sources.allows(self._gate.sources.client(request)):
            raise WebhookSourceRefused()
        try:
            async with asyncio.timeout(self._gate.body_timeout):
                body = await _body(request, self._gate.max_body_size)
        except TimeoutError:
            raise WebhookBodyTimeout() from None
        refusal = self._gate.verifier.refusal(body, request.headers.get(SIGNATURE_HEADER))
        if refusal is not None:
            raise BadWebhookSignature(f"X-Sipgate-Signature: {refusal}")
        event = _note(request, read_event(body))  # verified: only now parsed
        # A dtmf event has no timestamp: a caller pressing "1" twice sends the same body
        # twice, and both must reach the app.
        remember = event.name != "dtmf"
        headers = _app_headers(request, event)
        return await self._delivery.answer(target, body, headers, remember)

    def _target(self, request: web.Request) -> str:
        """The rest of the path and the query, exactly as received."""
        path, _, query = request.raw_path.partition("?")
        rest = path[len(self._prefix) :]
        if not path.startswith(self._prefix) or _REST.fullmatch(rest) is None:
            raise BadRequestTarget("a webhook path must be canonical: no dot segments or %")
        return f"{rest}?{query}" if query else rest

    def _count(self, request: web.Request, event: Event, outcome: str) -> None:
        request[state.WEBHOOK_OUTCOME] = outcome
        self._counts.labels(event.label, outcome).inc()


async def _answered_and_closed(request: web.Request, err: ProxyError) -> web.StreamResponse:
    """The answer, then the connection closes at once: aiohttp would otherwise linger
    10 s more, reading a body that is not coming."""
    response = err.to_response()
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


async def _body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is longer than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise WebhookBodyTooLarge()
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise WebhookBodyTooLarge()
    return bytes(body)


def _note(request: web.Request, event: Event) -> Event:
    """For the access log: the event and call id only."""
    if event.name is not None:
        request[state.WEBHOOK_EVENT] = event.name
    if event.call_id is not None:
        request[state.WEBHOOK_CALL_ID] = event.call_id
    return event


def _noted(request: web.Request) -> Event:
    return Event(request.get(state.WEBHOOK_EVENT), request.get(state.WEBHOOK_CALL_ID))


def _app_headers(request: web.Request, event: Event) -> dict[str, str]:
    headers = {name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers}
    if event.name is not None:
        headers["X-Sipgate-Event"] = event.name
    if event.call_id is not None:
        headers["X-Sipgate-Call-Id"] = event.call_id
    headers["X-Request-ID"] = request[state.REQUEST_ID]
    return headers


def _type(answer: Answer) -> dict[str, str]:
    return {} if answer.content_type is None else {"Content-Type": answer.content_type}

"""sipgate.io webhooks: sipgate's call events, verified and forwarded to the app
(``webhooks`` settings). ``build`` makes the route and what opens and closes with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.config import Settings
from proxy.ops.metrics import Metrics
from proxy.webhooks.forward import AppClient
from proxy.webhooks.handler import Delivery, Gate, WebhookHandler
from proxy.webhooks.replay import LocalMemory, Memory
from proxy.webhooks.source import Sources
from proxy.webhooks.verify import Verifier, signing_keys

if TYPE_CHECKING:  # not at run time: a cookie-store proxy never loads the Redis client
    from proxy.session.redis_connection import RedisClient


@dataclass(frozen=True)
class WebhookParts:
    register: Callable[[web.UrlDispatcher], None]
    lifecycle: Callable[[web.Application], AsyncIterator[None]]


def build(settings: Settings, metrics: Metrics, redis: RedisClient | None) -> WebhookParts:
    """``redis``: the session store's client, shared by the replicas (else this
    process's memory)."""
    webhooks = settings.webhooks
    assert webhooks.forward_to is not None, "config: required when enabled"
    app = AppClient(webhooks.forward_to, webhooks.timeout)
    gate = Gate(
        Sources(webhooks.source_networks, webhooks.trusted_proxies),
        Verifier(signing_keys(webhooks.public_keys_file)),
        webhooks.max_body_size,
        webhooks.timeout,
    )
    handler = WebhookHandler(webhooks.path, gate, Delivery(app, _memory(settings, redis)), metrics)

    def register(router: web.UrlDispatcher) -> None:
        router.add_route("*", webhooks.path, handler.handle, name="webhooks")
        router.add_route("*", webhooks.path + "/{rest:.*}", handler.handle, name="webhooks:rest")

    return WebhookParts(register, app.lifecycle)


def _memory(settings: Settings, redis: RedisClient | None) -> Memory:
    webhooks = settings.webhooks
    wait = webhooks.timeout + 1  # as long as the delivery it waits for may take
    if redis is None:
        return LocalMemory(webhooks.replay_window, wait)
    from proxy.webhooks.redis_memory import RedisMemory

    return RedisMemory(redis, webhooks.replay_window, wait)

"""Liveness, readiness and the Prometheus endpoint.

Readiness means "this process can serve": configuration loaded, keys present, the HTTP
clients open, the session store (Redis) answering, not shutting down. An IdP outage is
deliberately not part of it: sessions whose access tokens are still valid keep working,
and taking every replica out of the Service would turn a partial outage into a total one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from proxy.ops.metrics import CONTENT_TYPE, Metrics


class Health:
    def __init__(
        self,
        metrics: Metrics,
        ready: Callable[[], bool],
        checks: Sequence[Callable[[], Awaitable[bool]]] = (),
    ) -> None:
        self._metrics = metrics
        self._ready = ready
        self.checks = list(checks)  # e.g. the session store answers a ping

    def register(self, router: web.UrlDispatcher, with_metrics: bool) -> None:
        router.add_get("/healthz", self.healthz, name="health:healthz")
        router.add_get("/readyz", self.readyz, name="health:readyz")
        if with_metrics:
            router.add_get("/metrics", self.metrics, name="metrics")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self._ready()
        for check in self.checks:
            ready = ready and await check()
        self._metrics.ready.set(1 if ready else 0)
        return web.json_response(
            {"status": "ready" if ready else "not ready"},
            status=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

"""The listeners' connections: the header block bounded in size and time, and the main
listener's connections capped (``connection_cap``).

aiohttp offers no hook for the handler class its sites create, so ``GuardedSite`` makes
the server itself, with a protocol factory that hands each connection a
``GuardedHandler`` (aiohttp's handler, keeping its keep-alive timeout, graceful shutdown
and error answers) or, beyond ``server.max_connections``, a ``Refused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from proxy.config import Listen, Server
from proxy.http.connection_cap import ConnectionCap, Refused
from proxy.http.header_guard import HeaderGuard, HeaderRefused


class GuardedHandler(web.RequestHandler):
    def __init__(
        self, manager: web.Server, limits: Server, cap: ConnectionCap | None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard = HeaderGuard(self._parser, limits.max_header_bytes)
        self._parser = self._guard  # type: ignore[assignment]
        self._header_timeout = limits.header_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # the first request's header block is due from the connection's start

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._guard.pending:
            self._disarm()  # block complete (or a body): the deadline is off
        elif self._deadline is None:
            self._arm()  # a new block's first bytes

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HeaderRefused):
            status = exc.code  # aiohttp answers every parser error with 400
        return super().handle_error(request, status, exc, message)

    def _arm(self) -> None:
        self._deadline = self._loop.call_later(self._header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self._guard.pending:
            self.force_close()  # connected, then silent: there is nothing to answer
            return
        self._guard.expire()
        self.data_received(b"")  # the guard raises HeaderTimeout: aiohttp answers 408


def protocol_factory(
    server: web.Server, limits: Server, cap: ConnectionCap | None, **kwargs: Any
) -> Callable[[], asyncio.Protocol]:
    loop = asyncio.get_running_loop()

    def accept() -> asyncio.Protocol:
        if cap is not None and not cap.admit():
            return Refused()
        return GuardedHandler(server, limits, cap, loop=loop, **kwargs)

    return accept


class GuardedSite(web.BaseSite):
    """A TCP site whose connections ``factory`` makes (see the module's docstring)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        listen: Listen,
        factory: Callable[[], asyncio.Protocol],
        reuse_port: bool,
    ) -> None:
        super().__init__(runner)
        self._listen, self._factory, self._reuse_port = listen, factory, reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._listen.host}:{self._listen.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory,
            self._listen.host,
            self._listen.port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )

"""Who may use a shared mode (PAT, service): the headless-client guard (networks, no web
page borrowing the position), then, with ``auth.clients`` listed, the client gate."""

from __future__ import annotations

from aiohttp import web

from proxy.auth.clients.gate import ClientGate
from proxy.auth.headless_clients import HeadlessClientGuard


class SharedAccess:
    def __init__(self, guard: HeadlessClientGuard, gate: ClientGate | None) -> None:
        self._guard = guard
        self._gate = gate

    @property
    def guard(self) -> HeadlessClientGuard:
        return self._guard

    def check(self, request: web.Request) -> None:
        self._guard.check(request)
        if self._gate is not None:
            self._gate.admit(request)

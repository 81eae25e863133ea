"""Where a webhook request comes from: the peer, or, when the peer is a trusted proxy,
the client address it appended to ``X-Forwarded-For``. An untrusted peer's header is
ignored: anyone can write one."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from proxy.auth.headless_clients import Address, ClientNetworks, peer_address
from proxy.config import IPNetwork


class Sources:
    def __init__(self, allowed: Sequence[IPNetwork], trusted: Sequence[IPNetwork]) -> None:
        self._anywhere = not allowed  # webhooks.source_networks: [] (the default)
        self._allowed, self._trusted = ClientNetworks(allowed), ClientNetworks(trusted)

    def client(self, request: web.Request) -> Address | None:
        """The client's address, or None when it cannot be told."""
        address = peer_address(request.remote)
        if address is None or not self._trusted.contains(address):
            return address
        # From the right: each trusted proxy appended the address it received from; the
        # first address that is no trusted proxy is the client's.
        for hop in reversed(_hops(request)):
            address = peer_address(hop)
            if address is None or not self._trusted.contains(address):
                return address
        return address

    def allows(self, client: Address | None) -> bool:
        return self._anywhere or (client is not None and self._allowed.contains(client))


def _hops(request: web.Request) -> list[str]:
    headers = request.headers.getall("X-Forwarded-For", ())
    return [hop.strip() for header in headers for hop in header.split(",")]

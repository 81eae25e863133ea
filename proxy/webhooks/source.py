"""Where a webhook request comes from: the peer, or, when the peer is a trusted proxy,
the client address it appended to ``X-Forwarded-For``. An untrusted peer's header is
ignored: anyone can write one."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from proxy.config import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Sources:
    def __init__(self, allowed: Sequence[IPNetwork], trusted: Sequence[IPNetwork]) -> None:
        self._allowed, self._trusted = tuple(allowed), tuple(trusted)

    def client(self, request: web.Request) -> Address | None:
        """The client's address, or None when it cannot be told."""
        address = parse(request.remote)
        if address is None or not _within(address, self._trusted):
            return address
        # From the right: each trusted proxy appended the address it received from; the
        # first address that is no trusted proxy is the client's.
        for hop in reversed(_hops(request)):
            address = parse(hop)
            if address is None or not _within(address, self._trusted):
                return address
        return address

    def allows(self, client: Address | None) -> bool:
        if not self._allowed:
            return True
        return client is not None and _within(client, self._allowed)


def _hops(request: web.Request) -> list[str]:
    headers = request.headers.getall("X-Forwarded-For", ())
    return [hop.strip() for header in headers for hop in header.split(",")]


def parse(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)

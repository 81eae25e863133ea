"""Who may use a mode that acts as one account for whoever reaches it (PAT, service):
client networks, and no web page borrowing that position."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from aiohttp import web

from proxy.auth.origin import OriginPolicy
from proxy.errors import ClientNotAllowed, CrossSiteRefused

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_address(text: str | None) -> Address | None:
    """An address as aiohttp reports a peer (or a proxy writes one), its IPv6 zone dropped
    and an IPv4-mapped one unwrapped; None where there is none (a UNIX socket peer)."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class ClientNetworks:
    """Which peers may use a mode that acts as the account for whoever reaches it."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self._networks = tuple(networks)

    def allows(self, remote: str | None) -> bool:
        address = peer_address(remote)
        return address is not None and self.contains(address)

    def contains(self, address: Address) -> bool:
        return any(address in network for network in self._networks)


class HeadlessClientGuard:
    """For modes that act as one account for whoever reaches them (PAT, service):
    listed client networks only, and no web page may borrow that position.

    A browser on the same machine is a loopback client too, so requests that come from a
    web page (they carry ``Origin`` or ``Sec-Fetch-Site``) must come from the proxy's own
    or an allowed origin, and must name the proxy by a trusted host name: a page of
    evil.example whose DNS name is rebound to 127.0.0.1 does not.
    """

    def __init__(
        self, networks: ClientNetworks, origins: OriginPolicy, trusted_hosts: frozenset[str]
    ) -> None:
        self._networks = networks
        self._origins = origins
        self._trusted_hosts = trusted_hosts

    def replace_networks(self, networks: ClientNetworks) -> None:
        """SIGHUP's reloaded ``auth.allowed_client_networks``: the next request sees them."""
        self._networks = networks

    def check(self, request: web.Request) -> None:
        if not self._networks.allows(request.remote):
            address = request.remote or "unknown"
            log.warning(
                "client %s refused: not in auth.allowed_client_networks",
                address,
                extra={"client_address": address},
            )
            raise ClientNotAllowed(address)
        self.check_page(request)

    def check_page(self, request: web.Request) -> None:
        """The web-page part alone, for the operator's endpoints of service mode: any
        network may reach them, but no foreign or rebound page may start a sign-in or
        read the status."""
        headers = request.headers
        if "Origin" in headers or "Sec-Fetch-Site" in headers:
            origin, site = headers.get("Origin"), headers.get("Sec-Fetch-Site")
            if host_name(request.host) not in self._trusted_hosts:
                raise CrossSiteRefused("web pages must address the proxy by a trusted host")
            if not self._origins.allows_unsafe_request("POST", origin, site):
                raise CrossSiteRefused()


def host_name(host: str) -> str:
    """The name part of a Host header, lower case, IPv6 brackets removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

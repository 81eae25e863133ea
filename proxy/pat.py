"""Personal Access Token mode: every request leaves with the account's Basic credentials."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from proxy.config import PersonalAccessToken
from proxy.credentials import Credentials
from proxy.errors import ClientNotAllowed

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def basic_authorization(token_id: str, token: str) -> str:
    raw = f"{token_id}:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class ClientNetworks:
    """Which peers may use a mode that acts as the account for whoever reaches it."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self._networks = tuple(networks)

    def allows(self, remote: str | None) -> bool:
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.partition("%")[0])
        except ValueError:
            return False  # e.g. a UNIX socket peer: no address to check
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


class PersonalAccessTokenAuth:
    def __init__(self, settings: PersonalAccessToken, networks: ClientNetworks) -> None:
        if settings.token_id is None or settings.token is None:
            raise ValueError("personal access token mode needs token_id and token")
        self._credentials = Credentials(
            basic_authorization(settings.token_id, settings.token.get_secret_value())
        )
        self._networks = networks

    async def authenticate(self, request: web.Request) -> Credentials:
        if not self._networks.allows(request.remote):
            raise ClientNotAllowed()
        return self._credentials

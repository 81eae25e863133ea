"""Origins, hosts and cookie names as the settings check them, and as the layers above
use them (auth/origin.py compares origins, session/cookie_chunks.py sets cookies).

Origins are compared normalised: lower-case scheme and host, no default port (:80 for
http, :443 for https), no trailing slash. Only http(s) origins can be configured.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_][a-z0-9_.-]*)"  # IPv6 literal or DNS name / IPv4
    r"(?::(?P<port>[0-9]{1,5}))?/?",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}

SECURE_PREFIXES = ("__Secure-", "__Host-")


def normalise_origin(value: str) -> str | None:
    """The canonical form of an http(s) origin, or None if `value` is not one."""
    match = _ORIGIN.fullmatch(value.strip())
    if match is None:
        return None
    scheme, host, port = match["scheme"].lower(), match["host"].lower(), match["port"]
    if port is not None and not 0 < int(port) <= 65535:
        return None
    if port is None or port.lstrip("0") == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port.lstrip('0')}"


def secure_prefix(name: str) -> str | None:
    """The cookie prefix that makes browsers demand Secure for ``name``, if it has one."""
    return next((p for p in SECURE_PREFIXES if name[: len(p)].lower() == p.lower()), None)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def valid_port(url: str) -> bool:
    try:
        port = urlsplit(url).port
    except ValueError:
        return False
    return port is None or 1 <= port <= 65535

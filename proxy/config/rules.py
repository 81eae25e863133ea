"""The rules of single settings that msgspec cannot state (schema.py wraps each in a
``Check``): each returns the value, possibly normalised, or raises ValueError."""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.config.allow_rules import parse_rule
from proxy.config.origins import normalise_origin, valid_port
from proxy.config.secret import Secret
from proxy.crypto.keys import InvalidKey, decode_key
from proxy.sipgate.operations import closest_scopes, scope_names


def http_url(value: str) -> str:
    """An http(s) URL without credentials, query or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port(value):
        raise ValueError("must be an http(s) URL such as https://api.sipgate.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not contain credentials, a query or a fragment")
    return value.rstrip("/")


def public_origin(value: str) -> str:
    """An http(s) origin: scheme, host and port, no path."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port(value):
        raise ValueError("must be the http(s) origin browsers use, e.g. https://proxy.example")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("must be an origin only (scheme, host, port), without a path")
    return value.rstrip("/")


def bare_origins(origins: list[str]) -> list[str]:
    """Each a bare origin such as https://app.example."""
    for origin in origins:
        if normalise_origin(origin) is None:
            raise ValueError(f"{origin!r} is not a bare origin such as https://app.example")
    return origins


def decodable_keys(keys: list[Secret]) -> list[Secret]:
    """Each the base64 of 32 bytes (``generate-key`` makes one)."""
    for position, key in enumerate(keys):
        try:
            decode_key(key.get_secret_value())
        except InvalidKey as err:
            raise ValueError(f"key #{position + 1}: {err}") from None
    return keys


def allow_rules(rules: list[str]) -> list[str]:
    """Each "METHOD[,METHOD] /path" (``*`` one segment, ``**`` the rest)."""
    for rule in rules:
        parse_rule(rule)  # raises ValueError naming the rule and its fault
    return rules


def host_ports(addresses: list[str]) -> list[str]:
    """Each "host:port" (an IPv6 address in brackets), such as "redis-sentinel:26379"."""
    for address in addresses:
        parts = urlsplit(f"//{address}")
        if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in address:
            raise ValueError(f"{address!r} is not host:port, such as redis-sentinel:26379")
        if not valid_port(f"//{address}") or parts.port is None or parts.port == 0:
            raise ValueError(f"{address!r} needs a port from 1 to 65535, such as host:26379")
    return addresses


def known_scope(name: str) -> str:
    """One of sipgate's scope names (``sipgate-auth-proxy scopes`` lists them).

    The names are ``proxy/sipgate/scopes.txt``; a wrong one is told the closest."""
    if name in scope_names():
        return name
    close = closest_scopes(name)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ValueError(f"not a sipgate scope (sipgate-auth-proxy scopes lists them){hint}")

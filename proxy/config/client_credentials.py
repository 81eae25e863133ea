"""New client credentials shaped like sipgate PATs, so an app or an official sipgate
library configured with a PAT works unchanged: token id ``token-`` + 6 letters or digits,
token a random UUIDv4 (the libraries check both formats). Only the token's SHA-256 is
written into the configuration."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import string
import uuid

from proxy.config.allow_rules import parse_rule
from proxy.config.rules import known_scope

_NAME = re.compile(r"[a-z0-9-]{1,40}\Z")
_ID_ALPHABET = string.ascii_letters + string.digits


class ClientProblem(ValueError):
    pass


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_client(
    name: str, allow: list[str], networks: list[str], scopes: list[str] | None = None
) -> tuple[str, str, str]:
    """The YAML entry for ``auth.clients``, the token id and the token."""
    if not _NAME.match(name):
        raise ClientProblem(f"name {name!r} must match [a-z0-9-]{{1,40}}")
    scopes = scopes or []
    try:
        for scope in scopes:
            try:
                known_scope(scope)
            except ValueError as err:
                raise ValueError(f"scope {scope!r}: {err}") from None
        for rule in allow:
            parse_rule(rule)
        for network in networks:
            ipaddress.ip_network(network)
    except ValueError as err:
        raise ClientProblem(str(err)) from None
    token_id = "token-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    token = str(uuid.uuid4())  # uuid4 draws from os.urandom
    lines = [
        f"- name: {name}",
        f"  token_id: {token_id}",
        f'  token_sha256: "{token_sha256(token)}"',
        *([f"  scopes: [{', '.join(scopes)}]"] if scopes else []),
        *(["  allow:"] if allow else []),
        *(f"    - {json.dumps(rule)}" for rule in allow),
    ]
    if not allow and not scopes:
        lines.append("  allow: []  # allows nothing: add rules or scopes")
    if networks:
        lines.append("  networks: [" + ", ".join(networks) + "]")
    return "\n".join(lines) + "\n", token_id, token

"""The client credential a request presents, as sipgate's own clients send a PAT:
``Authorization: Basic base64(token_id:token)``, or ``Bearer <token>``."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from aiohttp import web

from proxy.errors import MalformedCredentials

MAX_HEADER = 1024  # a token id and a UUID take ~70 characters of base64


@dataclass(frozen=True)
class Presented:
    token_id: str | None  # None with Bearer: the token alone identifies the client
    token: str

    def __repr__(self) -> str:
        return f"Presented(token_id={self.token_id!r}, token=<redacted>)"


def presented_credential(request: web.Request) -> Presented | None:
    """None when the request carries no Authorization; MalformedCredentials when it is
    anything but one well-formed Basic or Bearer credential."""
    values = request.headers.getall("Authorization", ())
    if not values:
        return None
    if len(values) > 1 or len(values[0]) > MAX_HEADER:
        raise MalformedCredentials()
    scheme, _, rest = values[0].strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest and " " not in rest:
        return Presented(None, rest)
    if scheme.lower() != "basic":
        raise MalformedCredentials()
    try:
        decoded = base64.b64decode(rest, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, a non-ASCII str, bad UTF-8: all ValueErrors
        raise MalformedCredentials() from None
    token_id, colon, token = decoded.partition(":")
    if not colon or not token_id or not token:
        raise MalformedCredentials()
    return Presented(token_id, token)

"""Unpadded base64url (RFC 4648 §5), as cookies and JWTs carry it; decoding is strict."""

from __future__ import annotations

import base64
import binascii


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes | None:
    """The bytes, or None for anything that is not canonical-alphabet base64url."""
    try:
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None

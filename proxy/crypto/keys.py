"""Session keys: 32 random bytes, written as base64 in config."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
from collections.abc import Sequence

log = logging.getLogger(__name__)

KEY_BYTES = 32


class InvalidKey(ValueError):
    pass


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode a standard or URL-safe base64 key of exactly 32 bytes."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise InvalidKey(f"must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def key_id(key: bytes) -> bytes:
    """A short public fingerprint of a key, so a cookie names the key that sealed it."""
    return hashlib.sha256(b"sipgate-auth-proxy key id\x00" + key).digest()[:4]


def session_keys(configured: Sequence[str], local: bool) -> list[bytes]:
    """The configured keys; on a developer machine without any, one throw-away key."""
    if configured:
        return [decode_key(text) for text in configured]
    if not local:
        raise InvalidKey("session keys are required outside a loopback public_url")
    log.warning(
        "no session.keys configured: using a throw-away key; sessions end when the proxy "
        "stops (create a key with 'sipgate-auth-proxy generate-key')"
    )
    return [secrets.token_bytes(KEY_BYTES)]

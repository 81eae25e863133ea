"""Proof Key for Code Exchange (RFC 7636) with the S256 method."""

from __future__ import annotations

import hashlib
import secrets

from proxy.crypto import b64


def pkce_verifier() -> str:
    """A PKCE code verifier (RFC 7636 §4.1): 64 unreserved characters."""
    return secrets.token_urlsafe(48)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return b64.encode(digest)

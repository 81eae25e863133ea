"""Is a request sipgate's? ``X-Sipgate-Signature`` is base64 of an RSA-SHA256 (PKCS#1
v1.5) signature over the exact raw body; any configured key may verify it. Nothing of
the body is parsed before this says yes."""

from __future__ import annotations

import base64
import binascii
from importlib import resources
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from proxy.crypto.public_keys import rsa_public_keys

SIGNATURE_HEADER = "X-Sipgate-Signature"
BUILT_IN_KEY = "sipgate-push-api.pem"  # package data: sipgate's key, its source beside it


def built_in_keys() -> tuple[RSAPublicKey, ...]:
    return rsa_public_keys(resources.files(__package__).joinpath(BUILT_IN_KEY).read_bytes())


def signing_keys(path: Path | None) -> tuple[RSAPublicKey, ...]:
    """The keys of ``webhooks.public_keys_file`` (config checked it), else sipgate's."""
    return built_in_keys() if path is None else rsa_public_keys(path.read_bytes())


class Verifier:
    def __init__(self, keys: tuple[RSAPublicKey, ...]) -> None:
        self._keys = keys

    def refusal(self, body: bytes, header: str | None) -> str | None:
        """Why the signature does not verify (for the log), or None when it does."""
        if not header:
            return "missing signature"
        try:
            signature = base64.b64decode(header.strip(), validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
            return "malformed signature (not base64)"
        if any(self._verifies(key, signature, body) for key in self._keys):
            return None
        return "wrong signature"

    @staticmethod
    def _verifies(key: RSAPublicKey, signature: bytes, body: bytes) -> bool:
        try:
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

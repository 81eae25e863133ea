"""Authenticated encryption for everything the proxy hands a browser to keep.

    sealed = version (1) | key id (4) | nonce (12) | AES-256-GCM ciphertext + tag (16)

The associated data binds a sealed value to its purpose and cookie name, so a value cut
from one cookie (a login-flow cookie, another proxy's session) never opens as another.
The first key seals; every key opens (rotation). Opening fails closed: ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proxy.crypto.keys import key_id

VERSION = b"\x01"
NONCE_BYTES = 12
HEADER_BYTES = 1 + 4 + NONCE_BYTES
TAG_BYTES = 16


class KeyRing:
    def __init__(self, keys: Sequence[bytes]) -> None:
        self.generation = 0  # counts replacements: caches of opened values compare it
        self.replace(keys)

    def replace(self, keys: Sequence[bytes]) -> None:
        """New keys (rotation without a restart, on SIGHUP): what only a removed key
        sealed no longer opens."""
        if not keys:
            raise ValueError("at least one key is needed")
        ciphers = {key_id(key): AESGCM(key) for key in keys}
        primary_id = key_id(keys[0])
        self._primary_id, self._ciphers, self._primary = primary_id, ciphers, ciphers[primary_id]
        self.generation += 1

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        header = VERSION + self._primary_id + nonce
        return header + self._primary.encrypt(nonce, plaintext, header + context)

    def open(self, sealed: bytes, context: bytes) -> bytes | None:
        if len(sealed) < HEADER_BYTES + TAG_BYTES or sealed[:1] != VERSION:
            return None
        cipher = self._ciphers.get(sealed[1:5])
        if cipher is None:
            return None  # sealed with a key that is no longer configured
        header, nonce = sealed[:HEADER_BYTES], sealed[5:HEADER_BYTES]
        try:
            return cipher.decrypt(nonce, sealed[HEADER_BYTES:], header + context)
        except InvalidTag:
            return None


def context(purpose: str, cookie_name: str) -> bytes:
    return b"sipgate-auth-proxy\x00" + purpose.encode() + b"\x00" + cookie_name.encode()

"""Where service mode keeps its identity: a sealed file (one replica or a shared volume)
or a Redis key (replicas share it), both sealed with the session keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from proxy.crypto.sealing import KeyRing, context
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.redis_connection import RedisClient, call

log = logging.getLogger(__name__)

CONTEXT = context("service", "identity")


class IdentityState(Protocol):
    async def load(self) -> StoredSession | None: ...

    async def save(self, stored: StoredSession) -> None: ...

    async def clear(self) -> None: ...


class FileState:
    """A sealed file, replaced atomically, readable by the proxy's user only."""

    def __init__(self, path: Path, keys: KeyRing) -> None:
        self._path = path
        self._keys = keys

    async def load(self) -> StoredSession | None:
        try:
            sealed = self._path.read_bytes()
        except FileNotFoundError:
            return None
        return _open(self._keys, sealed)

    async def save(self, stored: StoredSession) -> None:
        sealed = session_codec.seal(self._keys, stored, CONTEXT)
        # write + fsync take milliseconds on a slow volume: not in the event loop
        await asyncio.to_thread(self._write, sealed)

    async def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path.unlink)

    def _write(self, sealed: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._path.parent, prefix=".identity-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(sealed)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


class RedisState:
    def __init__(self, client: RedisClient, keys: KeyRing, namespace: str) -> None:
        self._redis = client
        self._keys = keys
        self._key = f"{namespace}:service:identity"

    async def load(self) -> StoredSession | None:
        sealed = await call(self._redis.get(self._key))
        return _open(self._keys, sealed) if isinstance(sealed, bytes) else None

    async def save(self, stored: StoredSession) -> None:
        sealed = session_codec.seal(self._keys, stored, CONTEXT)
        await call(self._redis.set(self._key, sealed))

    async def clear(self) -> None:
        await call(self._redis.delete(self._key))


def _open(keys: KeyRing, sealed: bytes) -> StoredSession | None:
    stored = session_codec.open_sealed(keys, sealed, CONTEXT)
    if stored is None:
        log.warning("stored service identity cannot be opened (other keys?); sign in again")
    return stored

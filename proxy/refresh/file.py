"""Single-flight refresh across the workers of one proxy, through lock files.

    {directory}/<k>   one file per refresh-token digest k: its flock is the lock, its
                      content the sealed outcome of the refresh (the shared grace cache)

The supervisor creates the directory (0700) before it forks the workers and removes it
when they are gone. A worker that finds no outcome takes the lock (polled with LOCK_NB:
the event loop never blocks), reads again, calls the IdP, writes the outcome in place and
lets go; for a worker that dies holding the lock, the kernel lets go. The outcome is

    ok       the new token set, kept ``grace`` seconds
    dead     the IdP refused the refresh token, kept ``grace`` seconds
    failed   the IdP could not answer: kept ``backoff`` seconds after a timeout (the IdP
             may have rotated the token unheard), else ``retry`` seconds, so the workers
             that queued behind the attempt share its failure instead of repeating it

sealed with the session keys and bound to k (no token in clear on disk); a file that does
not open (tampered, torn by a concurrent write, foreign) holds no outcome. Files with no
valid outcome are removed, under their lock, by a sweep once every ``grace`` seconds; a
worker that took the lock of a file swept meanwhile notices (another inode at the path, or
none) and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.clock import Clock
from proxy.crypto.sealing import KeyRing, context
from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Exchange, Outcome, RefreshFailed
from proxy.session import codec as session_codec
from proxy.session.codec import MalformedSession, StoredSession

log = logging.getLogger(__name__)

_OK, _DEAD, _FAILED, _FAILED_TIMEOUT = b"o", b"d", b"f", b"t"
_HEADER = struct.Struct(">cd")  # kind, valid until (unix seconds)
_MAX_FILE = 128 * 1024
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass(frozen=True)
class _Record:
    kind: bytes
    until: float
    tokens: TokenSet | None = None


class FileRefreshCoordination:
    def __init__(
        self,
        directory: Path,
        keys: KeyRing,
        grace: float = 60.0,
        backoff: float = 10.0,
        retry: float = 1.0,
        wait_timeout: float = 12.0,
        clock: Clock = time.time,
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._grace = grace
        self._backoff = backoff
        self._retry = retry
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._swept = clock()
        self._sweeping: asyncio.Task[None] | None = None

    async def coordinate(
        self, key: bytes, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]:
        k = key.hex()
        self._maybe_sweep()
        try:
            known = self._read(k)
            if known is not None:
                return self._use(known), Outcome.GRACE
            fd, waited = await self._lock(k)
        except OSError as err:
            log.warning("refresh lock directory unusable (%s)", type(err).__name__)
            raise RefreshFailed(Outcome.TRANSIENT, "refresh lock unavailable") from None
        try:
            known = self._read(k, fd)  # finished while we waited, or just before
            if known is not None:
                return self._use(known), Outcome.SHARED if waited else Outcome.GRACE
            try:
                fresh = await exchange(tokens)
            except RefreshFailed as failed:
                self._write(fd, k, self._failure(failed))
                raise
            self._write(fd, k, _Record(_OK, self._clock() + self._grace, fresh))
            return fresh, Outcome.OK
        finally:
            os.close(fd)  # lets go of the lock

    async def _lock(self, k: str) -> tuple[int, bool]:
        """An open descriptor of the file at ``k`` holding its lock; whether we waited."""
        deadline = time.monotonic() + self._wait_timeout
        delay, waited = 0.005, False
        while True:
            fd = self._open(k)
            try:
                while not _try_lock(fd):
                    if time.monotonic() > deadline:
                        raise RefreshFailed(
                            Outcome.TRANSIENT, "another worker's refresh took too long"
                        )
                    waited = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 1.5, 0.05)
                if self._still_at_path(fd, k):
                    return fd, waited
            except BaseException:  # cancelled while waiting, too
                os.close(fd)
                raise
            os.close(fd)  # swept while we waited for it: lock the file now at the path

    def _open(self, k: str) -> int:
        path = self._directory / k
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
        except FileNotFoundError:
            self._recreate_directory()  # e.g. a tmp cleaner removed it while idle
            return os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)

    def _recreate_directory(self) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self._directory, 0o700)
        info = os.lstat(self._directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError("refresh lock directory is not a private directory")

    def _still_at_path(self, fd: int, k: str) -> bool:
        try:
            return os.stat(self._directory / k).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _read(self, k: str, fd: int | None = None) -> _Record | None:
        """The outcome at ``k`` while it is valid; None if there is none or it does not open."""
        if fd is not None:
            return self._parse(k, os.pread(fd, _MAX_FILE, 0))
        try:
            fd = os.open(self._directory / k, os.O_RDONLY | _FLAGS)
        except FileNotFoundError:
            return None
        try:
            return self._read(k, fd)
        finally:
            os.close(fd)

    def _parse(self, k: str, sealed: bytes) -> _Record | None:
        plaintext = self._keys.open(sealed, context("refresh-outcome", k)) if sealed else None
        if plaintext is None or len(plaintext) < _HEADER.size:
            return None
        kind, until = _HEADER.unpack_from(plaintext)
        if until < self._clock():
            return None
        if kind != _OK:
            return _Record(kind, until)
        try:
            stored = session_codec.decode(plaintext[_HEADER.size :])
        except MalformedSession:
            return None
        return _Record(kind, until, stored.tokens)

    def _write(self, fd: int, k: str, record: _Record) -> None:
        plaintext = _HEADER.pack(record.kind, record.until)
        if record.tokens is not None:
            plaintext += session_codec.encode(StoredSession(record.tokens, 0.0, self._clock()))
        sealed = self._keys.seal(plaintext, context("refresh-outcome", k))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, sealed, 0)
        except OSError as err:  # the other workers will not see this outcome: say so
            log.warning(
                "refresh outcome not shared with the other workers (%s)", type(err).__name__
            )

    def _failure(self, failed: RefreshFailed) -> _Record:
        now = self._clock()
        if failed.fatal:
            return _Record(_DEAD, now + self._grace)
        if failed.timed_out:
            return _Record(_FAILED_TIMEOUT, now + self._backoff)
        return _Record(_FAILED, now + self._retry)

    @staticmethod
    def _use(record: _Record) -> TokenSet:
        if record.tokens is not None:
            return record.tokens
        if record.kind == _DEAD:
            raise RefreshFailed(Outcome.FATAL, "refresh token already refused by the IdP")
        timed_out = record.kind == _FAILED_TIMEOUT
        reason = "backing off" if timed_out else "refresh by another worker failed"
        raise RefreshFailed(Outcome.TRANSIENT, reason, timed_out=timed_out)

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now - self._swept < self._grace or self._sweeping is not None:
            return
        self._swept = now
        self._sweeping = asyncio.create_task(self._sweep())
        self._sweeping.add_done_callback(self._swept_done)

    def _swept_done(self, task: asyncio.Task[None]) -> None:
        self._sweeping = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("sweeping refresh lock files failed (%s)", type(task.exception()).__name__)

    async def _sweep(self) -> None:
        await asyncio.to_thread(self.sweep)

    def sweep(self) -> int:
        """Remove the files that hold no valid outcome and no lock; returns how many."""
        oldest = self._clock() - max(self._grace, self._backoff, self._retry) - 1
        removed = 0
        with os.scandir(self._directory) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # the other worker's sweep
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < oldest:
                        removed += self._remove_if_idle(entry.name)
        return removed

    def _remove_if_idle(self, name: str) -> int:
        try:
            fd = os.open(self._directory / name, os.O_RDONLY | _FLAGS)
        except FileNotFoundError:
            return 0
        try:
            if not _try_lock(fd):
                return 0  # a refresh is running
            if self._read(name, fd) is not None or not self._still_at_path(fd, name):
                return 0
            os.unlink(self._directory / name)  # a worker that opened it meanwhile starts over
            return 1
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True

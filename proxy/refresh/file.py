"""Single-flight refresh across the workers of one proxy, through lock files.

    {directory}/<k>   one file per refresh-token digest k: its flock is the lock, its
                      content the sealed outcome of the refresh (the shared grace cache)

The supervisor creates the directory (0700) before it forks the workers and removes it
when they are gone. A worker that finds no outcome takes the lock (polled with LOCK_NB:
the event loop never blocks), reads again, calls the IdP, writes the outcome in place and
lets go; for a worker that dies holding the lock, the kernel lets go. The outcome
(proxy/refresh/file_outcome.py) stands

    ok, dead ``grace`` seconds
    failed   ``backoff`` seconds after a timeout (the IdP may have rotated the token
             unheard), else ``retry`` seconds, so the workers that queued behind the
             attempt share its failure instead of repeating it

Files with no valid outcome are removed, under their lock, by a sweep once every ``grace``
seconds; a worker that took the lock of a file swept meanwhile notices (another inode at
the path, or none) and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.clock import Clock
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.refresh import file_outcome
from proxy.refresh.file_outcome import DEAD, FAILED, FAILED_TIMEOUT, OK, Record
from proxy.refresh.single_flight import Exchange, Outcome, RefreshFailed

log = logging.getLogger(__name__)

_MAX_FILE = 128 * 1024
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass(frozen=True)
class FileCoordinationPolicy:
    grace: float = 60.0  # seconds a result or a refusal is shared
    backoff: float = 10.0  # seconds a failure after a timeout is shared
    retry: float = 1.0  # seconds any other failure is shared
    wait_timeout: float = 12.0  # seconds a worker waits for another one's refresh


class FileRefreshCoordination:
    def __init__(
        self,
        directory: Path,
        keys: KeyRing,
        policy: FileCoordinationPolicy = FileCoordinationPolicy(),
        clock: Clock = time.time,
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._policy = policy
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
                return known.use(), Outcome.GRACE
            fd, waited = await self._lock(k)
        except OSError as err:
            log.warning("refresh lock directory unusable (%s)", type(err).__name__)
            raise RefreshFailed(Outcome.TRANSIENT, "refresh lock unavailable") from None
        try:
            return await self._locked(fd, k, waited, exchange, tokens)
        finally:
            os.close(fd)  # lets go of the lock

    async def _locked(
        self, fd: int, k: str, waited: bool, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]:
        known = self._read(k, fd)  # finished while we waited, or just before
        if known is not None:
            return known.use(), Outcome.SHARED if waited else Outcome.GRACE
        try:
            fresh = await exchange(tokens)
        except RefreshFailed as failed:
            self._write(fd, k, self._failure(failed))
            raise
        self._write(fd, k, Record(OK, self._clock() + self._policy.grace, fresh))
        return fresh, Outcome.OK

    async def _lock(self, k: str) -> tuple[int, bool]:
        """An open descriptor of the file at ``k`` holding its lock; whether we waited."""
        deadline = time.monotonic() + self._policy.wait_timeout
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

    def _read(self, k: str, fd: int | None = None) -> Record | None:
        """The outcome at ``k`` while it is valid; None if there is none or it does not open."""
        if fd is not None:
            return file_outcome.open_sealed(
                self._keys, k, os.pread(fd, _MAX_FILE, 0), self._clock()
            )
        try:
            fd = os.open(self._directory / k, os.O_RDONLY | _FLAGS)
        except FileNotFoundError:
            return None
        try:
            return self._read(k, fd)
        finally:
            os.close(fd)

    def _write(self, fd: int, k: str, record: Record) -> None:
        sealed = file_outcome.seal(self._keys, k, record, self._clock())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, sealed, 0)
        except OSError as err:  # the other workers will not see this outcome: say so
            log.warning(
                "refresh outcome not shared with the other workers (%s)", type(err).__name__
            )

    def _failure(self, failed: RefreshFailed) -> Record:
        now = self._clock()
        if failed.fatal:
            return Record(DEAD, now + self._policy.grace)
        if failed.timed_out:
            return Record(FAILED_TIMEOUT, now + self._policy.backoff)
        return Record(FAILED, now + self._policy.retry)

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now - self._swept < self._policy.grace or self._sweeping is not None:
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
        policy = self._policy
        oldest = self._clock() - max(policy.grace, policy.backoff, policy.retry) - 1
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

"""Cross-worker refresh coordination through lock files: two coordinators on one directory
stand for two workers; the IdP's exchange is replaced at the ``Exchange`` boundary."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from proxy.clock import Clock
from proxy.crypto.keys import decode_key, generate_key
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.refresh.file import FileCoordinationPolicy, FileRefreshCoordination
from proxy.refresh.single_flight import Outcome, RefreshFailed

KEY = b"\x01" * 32
OLD = TokenSet("old-access", "old-refresh-token-0123456789", 0, 1e12, subject="alice")
NEW = TokenSet("new-access-token-abcdef", "new-refresh-token-9876543210", 2e9, 1e12)
DIGEST = b"\xab" * 32


class IdP:
    def __init__(self, delay: float = 0.0, fail: RefreshFailed | None = None) -> None:
        self.calls, self.delay, self.fail = 0, delay, fail

    async def exchange(self, tokens: TokenSet) -> TokenSet:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return NEW


def worker(
    directory: Path, *, wait_timeout: float = 12.0, clock: Clock = time.time
) -> FileRefreshCoordination:
    policy = FileCoordinationPolicy(wait_timeout=wait_timeout)
    return FileRefreshCoordination(directory, KeyRing([KEY]), policy, clock)


async def test_second_worker_gets_the_first_ones_result_when_it_refreshed(
    tmp_path: Path,
) -> None:
    idp = IdP()
    assert await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.OK)
    assert await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.GRACE)
    assert idp.calls == 1
    stored = (tmp_path / DIGEST.hex()).read_bytes()
    assert b"new-access" not in stored  # sealed
    assert b"refresh-token" not in stored


async def test_concurrent_workers_share_one_exchange_when_both_find_no_result(
    tmp_path: Path,
) -> None:
    idp = IdP(delay=0.2)
    results = await asyncio.gather(
        worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD),
        worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD),
    )
    assert sorted(outcome.value for _, outcome in results) == ["ok", "shared"]
    assert {tokens for tokens, _ in results} == {NEW}
    assert idp.calls == 1


async def test_refusal_is_shared_when_the_idp_said_invalid_grant(tmp_path: Path) -> None:
    idp = IdP(fail=RefreshFailed(Outcome.FATAL, "invalid_grant"))
    for _ in range(2):
        with pytest.raises(RefreshFailed) as failed:
            await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD)
        assert failed.value.fatal
    assert idp.calls == 1


async def test_other_worker_backs_off_when_the_idp_timed_out(tmp_path: Path) -> None:
    idp = IdP(fail=RefreshFailed(Outcome.TRANSIENT, "timeout", timed_out=True))
    for _ in range(2):
        with pytest.raises(RefreshFailed) as failed:
            await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD)
        assert failed.value.outcome is Outcome.TRANSIENT
        assert failed.value.timed_out
    assert idp.calls == 1  # the token the IdP may have rotated is not sent again


async def test_transient_failure_is_retried_after_a_moment(tmp_path: Path) -> None:
    idp = IdP(fail=RefreshFailed(Outcome.TRANSIENT, "IdPUnavailable"))
    now = [1000.0]
    first = worker(tmp_path, clock=lambda: now[0])  # failures are kept 1 s
    with pytest.raises(RefreshFailed):
        await first.coordinate(DIGEST, idp.exchange, OLD)
    with pytest.raises(RefreshFailed):
        await first.coordinate(DIGEST, idp.exchange, OLD)
    assert idp.calls == 1
    now[0] += 2
    idp.fail = None
    assert await first.coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.OK)


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"\x01" + b"\x00" * 200], ids=["empty", "junk", "forged"]
)
async def test_tampered_file_is_no_result_when_it_does_not_open(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / DIGEST.hex()).write_bytes(content)
    idp = IdP()
    assert await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.OK)
    assert idp.calls == 1


async def test_result_sealed_for_another_token_does_not_open_as_this_one(tmp_path: Path) -> None:
    idp = IdP()
    await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD)
    other = b"\xcd" * 32
    os.replace(tmp_path / DIGEST.hex(), tmp_path / other.hex())
    assert await worker(tmp_path).coordinate(other, idp.exchange, OLD) == (NEW, Outcome.OK)
    assert idp.calls == 2


async def test_result_sealed_with_another_key_does_not_open(tmp_path: Path) -> None:
    idp = IdP()
    await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD)
    stranger = FileRefreshCoordination(tmp_path, KeyRing([decode_key(generate_key())]))
    assert await stranger.coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.OK)


async def test_unusable_directory_is_a_transient_failure_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    idp = IdP()
    with pytest.raises(RefreshFailed) as failed:
        await worker(tmp_path / "file" / "dir").coordinate(DIGEST, idp.exchange, OLD)
    assert failed.value.outcome is Outcome.TRANSIENT
    assert idp.calls == 0


async def test_removed_directory_is_made_again_private(tmp_path: Path) -> None:
    directory = tmp_path / "workers"
    idp = IdP()
    assert await worker(directory).coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.OK)
    assert directory.stat().st_mode & 0o777 == 0o700


async def test_lock_of_a_killed_worker_is_free_when_it_died(tmp_path: Path) -> None:
    path = tmp_path / DIGEST.hex()
    script = (
        "import fcntl, os, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        idp = IdP()
        with pytest.raises(RefreshFailed) as failed:
            await worker(tmp_path, wait_timeout=0.3).coordinate(DIGEST, idp.exchange, OLD)
        assert "took too long" in str(failed.value)
        assert idp.calls == 0
        waiting = asyncio.create_task(worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD))
        await asyncio.sleep(0.2)
        holder.send_signal(signal.SIGKILL)  # the kernel lets go of its lock
        assert await asyncio.wait_for(waiting, 5) == (NEW, Outcome.OK)
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


async def test_sweep_removes_expired_files_only_when_idle(tmp_path: Path) -> None:
    now = [2e9]
    coordination = worker(tmp_path, clock=lambda: now[0])  # results are kept 60 s
    idp = IdP()
    await coordination.coordinate(DIGEST, idp.exchange, OLD)
    assert coordination.sweep() == 0  # its result is still the grace cache
    os.utime(tmp_path / DIGEST.hex(), (now[0] - 120, now[0] - 120))
    now[0] += 120
    assert coordination.sweep() == 1
    assert os.listdir(tmp_path) == []


def hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


async def test_waiter_starts_over_when_its_file_was_swept_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / DIGEST.hex()
    holder = hold_lock(path)
    idp = IdP()
    waiting = asyncio.create_task(worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD))
    await asyncio.sleep(0.1)
    os.unlink(path)  # what a sweep does, under the lock
    os.close(holder)
    assert await asyncio.wait_for(waiting, 5) == (NEW, Outcome.OK)
    assert await worker(tmp_path).coordinate(DIGEST, idp.exchange, OLD) == (NEW, Outcome.GRACE)
    assert idp.calls == 1  # the result went to the file now at the path


async def test_no_descriptor_leaks_when_a_waiter_is_cancelled(tmp_path: Path) -> None:
    holder = hold_lock(tmp_path / DIGEST.hex())
    before = len(os.listdir("/proc/self/fd"))
    waiting = asyncio.create_task(worker(tmp_path).coordinate(DIGEST, IdP().exchange, OLD))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(os.listdir("/proc/self/fd")) == before
    os.close(holder)

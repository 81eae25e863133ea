"""Debian's redis-server on a free loopback port, with its data in a test directory so
that a stop and a start on the same port bring the same sessions back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support.processes import free_port, wait_for_port

REDIS = "/usr/bin/redis-server"


def redis_available() -> tuple[bool, str]:
    if shutil.which(REDIS) is None:
        return False, "Debian redis-server is not installed"
    return True, ""


class Node:
    """One redis-server (or redis-sentinel) process, its log and data in ``work``; a stop
    and a start bring it back on the same port."""

    def __init__(self, binary: str, work: Path, port: int, args: list[str]) -> None:
        self.binary, self.work, self.port, self.args = binary, work, port, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / "redis.log", "ab") as output:
            self.process = subprocess.Popen(
                [self.binary, *self.args], cwd=self.work, stdout=output, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        """Stop it by PID, as a crash would: SIGKILL, no shutdown save."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class RedisServer(Node):
    def __init__(self, work: Path) -> None:
        port = free_port()
        args = [
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work), "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
        ]  # fmt: skip
        super().__init__(REDIS, work, port, args)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

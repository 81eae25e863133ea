"""Debian's redis-server on a free loopback port, with its data in a test directory so
that a stop and a start on the same port bring the same sessions back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.processes import free_port, wait_for_port

REDIS = "/usr/bin/redis-server"


def redis_available() -> tuple[bool, str]:
    if shutil.which(REDIS) is None:
        return False, "Debian redis-server is not installed"
    return True, ""


class RedisServer:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.work / "redis.log", "ab") as output:
            self.process = subprocess.Popen(
                [
                    REDIS,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.work),
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--daemonize",
                    "no",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

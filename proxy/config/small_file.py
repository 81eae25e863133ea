"""A file the proxy reads whole, again while it serves (``auth.clients_file``): only a
regular file of at most ``cap`` bytes. A FIFO, a device or a directory at the path, or a
larger file, is a problem named under its key: never an open that waits for a writer,
nor a read that runs until memory ends."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from proxy.config.problems import Problem

MIB = 1024 * 1024


def read_small_text(path: Path, key: str, cap: int, problems: list[Problem]) -> str | None:
    """The file's UTF-8 text, or None with the problem (under ``key``) added."""
    try:
        data = _read_regular(path, cap)
    except OSError as err:
        problems.append(Problem(key, f"cannot read {path}: {err.strerror or type(err).__name__}"))
        return None
    except _Refused as refused:
        problems.append(Problem(key, f"{path} {refused}"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(key, f"{path} is not UTF-8 text"))
        return None


class _Refused(Exception):
    pass


def _read_regular(path: Path, cap: int) -> bytes:
    # O_NONBLOCK: a FIFO opens at once (and fstat says what it is) instead of waiting.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # the opened file's: no swap between a check and the read
        kind = _kind(info.st_mode)
        if kind is not None:
            raise _Refused(f"is not a regular file ({kind})")
        too_large = _Refused(f"is larger than {cap // MIB} MiB")
        if info.st_size > cap:
            raise too_large
        with open(fd, "rb", closefd=False) as file:
            data = file.read(cap + 1)  # it may have grown since fstat
        if len(data) > cap:
            raise too_large
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket or other special file"

"""Where a proxied request's CPU time goes: py-spy samples of one worker under wrk load.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``, each
frame ``function (file:line)``). From them this module reports, as shares of all
on-CPU samples of the worker:
- self time by source line (leaf frame), the hottest lines;
- inclusive time by proxy function (``proxy/*.py``), i.e. what each step of the proxy's
  hot path costs including what it calls;
- a coarse split: proxy code, aiohttp server, aiohttp client, event loop, other.
Multiplying a share by the measured CPU µs per request (without the profiler attached)
gives µs per request.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    samples: int = 0
    self_lines: Counter[str] = field(default_factory=Counter)
    self_functions: Counter[str] = field(default_factory=Counter)
    inclusive_proxy: Counter[str] = field(default_factory=Counter)
    inclusive_files: Counter[str] = field(default_factory=Counter)
    buckets: Counter[str] = field(default_factory=Counter)

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def short_file(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse_frame(frame: str) -> tuple[str, str, str]:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame, "", ""
    return match["func"], short_file(match["file"]), match["line"] or ""


def bucket(stack: list[tuple[str, str, str]]) -> str:
    """The innermost recognisable owner of the leaf frame."""
    for func, file, _ in reversed(stack):
        if file.startswith("proxy/"):
            return "proxy/" + file.split("/", 1)[1]
        if file.startswith("aiohttp/"):
            name = file.split("/", 1)[1]
            if name.startswith(("client", "connector")):
                return "aiohttp client"
            if name.startswith(("web_", "http_")) or name in ("helpers.py", "streams.py"):
                return "aiohttp server/http"
            return "aiohttp other"
        if file.startswith(("multidict/", "yarl/")):
            return "multidict/yarl"
        if file.startswith(("logging/",)):
            return "logging"
        if file.startswith(("prometheus_client/",)):
            return "prometheus_client"
        if file.startswith(("cryptography/",)):
            return "cryptography"
        if file.startswith(("asyncio/", "uvloop/")) or func in (
            "run_forever",
            "run_until_complete",
        ):
            return "event loop"
    return "other"


def parse(raw: str) -> Profile:
    profile = Profile()
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack_text.split(";")]
        # py-spy puts "process NNN" / "thread (…)" pseudo frames first with some flags.
        frames = [f for f in frames if f[1]]
        if not frames:
            continue
        profile.samples += count
        func, file, lineno = frames[-1]
        profile.self_lines[f"{file}:{lineno} {func}"] += count
        profile.self_functions[f"{func} ({file})"] += count
        seen: set[str] = set()
        seen_files: set[str] = set()
        for f_func, f_file, _ in frames:
            if f_file.startswith("proxy/"):
                key = f"{f_file}:{f_func}"
                if key not in seen:
                    seen.add(key)
                    profile.inclusive_proxy[key] += count
            if f_file not in seen_files:
                seen_files.add(f_file)
                profile.inclusive_files[f_file] += count
        profile.buckets[bucket(frames)] += count
    return profile


def record(py_spy: str, pid: int, seconds: int, out: Path, rate: int = 250) -> Profile:
    args = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
    ]
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        args, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if not out.is_file():
        raise RuntimeError(f"py-spy failed ({result.returncode}): {result.stderr[-1500:]}")
    return parse(out.read_text())

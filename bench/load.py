"""Load generators and what they report: wrk (saturation), hey (fixed rate), curl (1 GiB).

Every run is bounded in time, targets loopback only, and samples the CPU time of the
server under test around the run, so each result also says how much CPU one request cost.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.peers import Server, big_file

BENCH = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH / "report.lua"

# Every command that produced a figure, in order, for BENCHMARKS.md (cookie values elided).
COMMANDS: list[str] = []


def _record(args: list[str]) -> None:
    shown = []
    for arg in args:
        if arg.startswith("Cookie: "):
            name = arg[len("Cookie: ") :].split("=", 1)[0]
            shown.append(f"Cookie: {name}=…")
        elif arg.startswith("Authorization: Bearer "):
            shown.append("Authorization: Bearer …")
        else:
            shown.append(arg)
    COMMANDS.append(shlex.join(shown))


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx answers
    cpu_us_per_request: float | None  # CPU time of the server's processes / requests
    error_detail: dict[str, int] = field(default_factory=dict)
    rounds: int = 1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def combine(parts: list[LoadResult]) -> LoadResult:
    """Rounds of one target as one result: totals for counts and CPU, the median round's
    latency percentiles (percentiles of different runs cannot be merged exactly)."""
    requests = sum(p.requests for p in parts)
    seconds = sum(p.seconds for p in parts)
    cpu = [p.cpu_us_per_request * p.requests for p in parts if p.cpu_us_per_request is not None]
    detail: dict[str, int] = {}
    for part in parts:
        for key, value in part.error_detail.items():
            detail[key] = detail.get(key, 0) + value
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=statistics.median(p.p50_ms for p in parts),
        p99_ms=statistics.median(p.p99_ms for p in parts),
        errors=sum(p.errors for p in parts),
        cpu_us_per_request=sum(cpu) / requests if cpu and requests else None,
        error_detail=detail,
        rounds=len(parts),
    )


def _run_measured(
    args: list[str], seconds: int, server: Server | None, record: bool
) -> tuple[str, float | None]:
    """Run a load generator; its output and the server's CPU seconds meanwhile."""
    if record:
        _record(args)
    cpu_before = server.cpu_seconds() if server else 0.0
    output = subprocess.run(  # noqa: S603 (fixed programs, loopback targets)
        args, capture_output=True, text=True, timeout=seconds + 30, check=False
    ).stdout
    return output, (server.cpu_seconds() - cpu_before) if server else None


def wrk(
    url: str,
    header: str,
    connections: int,
    seconds: int,
    server: Server | None,
    record: bool = True,
) -> LoadResult:
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        "-H",
        header,
        url,
    ]
    output, cpu = _run_measured(args, seconds, server, record)
    match = re.search(r"^WRK_JSON (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk gave no result:\n{output[-2000:]}")
    data = json.loads(match.group(1))
    requests, duration = data["requests"], data["duration_us"] / 1e6
    detail = {
        k: int(data[k])
        for k in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts")
        if data[k]
    }
    errors = sum(detail.values())
    return LoadResult(
        requests=requests,
        seconds=duration,
        rps=requests / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        cpu_us_per_request=cpu / requests * 1e6 if (cpu is not None and requests) else None,
        error_detail=detail,
    )


def hey(
    url: str,
    header: str,
    workers: int,
    rate_per_worker: int,
    seconds: int,
    server: Server | None,
    record: bool = True,
) -> LoadResult:
    """A fixed request rate (workers x rate_per_worker per second): latency without queueing."""
    args = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(workers),
        "-q",
        str(rate_per_worker),
        "-t",
        "5",
        "-H",
        header,
        url,
    ]
    output, cpu = _run_measured(args, seconds, server, record)

    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        if found is None:
            raise RuntimeError(f"hey output lacks {pattern!r}:\n{output[-2000:]}")
        return float(found.group(1))

    total = number(r"Total:\s+([\d.]+) secs")
    rps = number(r"Requests/sec:\s+([\d.]+)")
    statuses = {int(s): int(n) for s, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    requests = sum(statuses.values())
    error_lines = re.findall(r"^\s+\[(\d+)\]\s+Get ", output, re.MULTILINE)
    detail = {f"status {s}": n for s, n in statuses.items() if not 200 <= s < 300}
    if error_lines:
        detail["socket errors"] = sum(int(n) for n in error_lines)
    errors = sum(detail.values())
    return LoadResult(
        requests=requests,
        seconds=total,
        rps=rps,
        p50_ms=number(r"50%+ in ([\d.]+) secs") * 1000,
        p99_ms=number(r"99%+ in ([\d.]+) secs") * 1000,
        errors=errors,
        cpu_us_per_request=cpu / requests * 1e6 if (cpu is not None and requests) else None,
        error_detail=detail,
    )


@dataclass
class Transfer:
    direction: str  # download | upload
    status: int
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def curl_transfer(
    base_url: str,
    header: str,
    direction: str,
    work: Path,
    record: bool = True,
    ca_file: Path | None = None,
) -> Transfer:
    """GET /files/1g.bin or POST 1 GiB to /upload, streamed, discarding the answer; an
    https ``base_url`` is verified against ``ca_file`` only."""
    common = ["curl", "-sS", "-o", "/dev/null", "--max-time", "120", "-H", header]
    if ca_file is not None:
        common += ["--cacert", str(ca_file)]
    if direction == "download":
        args = [*common, "-w", "%{http_code} %{size_download} %{time_total}"]
        args.append(f"{base_url}/files/{big_file(work).name}")
    else:
        args = [*common, "-w", "%{http_code} %{size_upload} %{time_total}"]
        args += ["-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/octet-stream"]
        args += ["-T", str(big_file(work)), f"{base_url}/upload"]
    if record:
        _record(args)
    result = subprocess.run(args, capture_output=True, text=True, timeout=150, check=False)  # noqa: S603 (fixed programs, loopback targets)
    try:
        status, size, seconds = result.stdout.split()
        return Transfer(direction, int(status), int(size), float(seconds))
    except ValueError:
        raise RuntimeError(f"curl failed: {result.stdout} {result.stderr}") from None

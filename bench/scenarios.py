"""What every scenario of `make bench` shares: the small-GET targets and the 1 GiB
transfer paths, and the loops that measure them in interleaved rounds.

The cleartext run (bench/run.py) and the TLS upstream scenario (bench/tls_upstream.py)
both measure through these, so their figures are taken the same way.
"""

from __future__ import annotations

import ssl
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load, peers
from bench.peers import Server
from tests.support.processes import peak_rss_bytes, reset_peak_rss

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret"  # noqa: S105 (test IdP only)
SMALL_PATH = "/v2/account"
# hey: a fixed 500 requests/s in total, well below every target's capacity here (the
# slowest, the proxy with one worker, saturates at about 1000/s on a 2-core machine)
FIXED_RATE_WORKERS, FIXED_RATE_PER_WORKER = 10, 50
FIXED_RATE = FIXED_RATE_WORKERS * FIXED_RATE_PER_WORKER


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------- probes


def current_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found")


def fetch(url: str, header: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    name, _, value = header.partition(": ")
    request = urllib.request.Request(url, headers={name: value})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def bearer_via(base_url: str, header: str, context: ssl.SSLContext | None = None) -> str:
    """The Authorization header the upstream receives through this path."""
    status, body = fetch(base_url + "/echo-authorization", header, context)
    if status != 200 or not body.startswith("Bearer "):
        raise RuntimeError(f"{base_url}: no bearer reached the upstream ({status})")
    return body


# ---------------------------------------------------------------------- small GET


@dataclass
class Target:
    key: str
    name: str
    url: str
    header: str
    server: Server | None


@dataclass
class TargetResult:
    name: str
    c50: load.LoadResult
    c10: load.LoadResult
    fixed: load.LoadResult
    cookie_bytes: int


def _show(label: str, result: load.LoadResult) -> None:
    log(
        f"  {label:<40} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  "
        f"cpu {result.cpu_us_per_request or 0:5.0f} µs/req"
    )


Measure = Callable[[Target, bool], load.LoadResult]


def small_get_scenarios(
    targets: list[Target], seconds: int, rounds: int
) -> dict[str, TargetResult]:
    """Each scenario runs over all targets in turn, ``rounds`` times with ``seconds /
    rounds`` each: figures that are compared with each other were taken close together,
    and a burst of other work on this shared machine hits every target, not just one."""
    step = max(1, seconds // rounds)
    log(f"small GET: warm-up 2 s each; then {rounds} rounds of {step} s per target and scenario")
    for target in targets:
        load.wrk(target.url, target.header, 50, 2, target.server, record=False)
    parts: dict[str, dict[str, list[load.LoadResult]]] = {
        t.key: {"c50": [], "c10": [], "fixed": []} for t in targets
    }

    def each_round(scenario: str, title: str, measure: Measure) -> None:
        for round_ in range(rounds):
            log(f"{title}, round {round_ + 1} of {rounds}")
            for target in targets:
                result = measure(target, round_ == 0)
                parts[target.key][scenario].append(result)
                _show(target.name, result)

    each_round(
        "c50",
        f"wrk -t1 -c50 -d{step}s",
        lambda t, record: load.wrk(t.url, t.header, 50, step, t.server, record=record),
    )
    each_round(
        "c10",
        f"wrk -t1 -c10 -d{step}s",
        lambda t, record: load.wrk(t.url, t.header, 10, step, t.server, record=record),
    )
    each_round(
        "fixed",
        f"hey: fixed {FIXED_RATE} requests/s for {step}s",
        lambda t, record: load.hey(
            t.url, t.header, FIXED_RATE_WORKERS, FIXED_RATE_PER_WORKER, step, t.server, record
        ),
    )
    return {target.key: _combined(target, parts[target.key]) for target in targets}


def _combined(target: Target, parts: dict[str, list[load.LoadResult]]) -> TargetResult:
    runs = {scenario: load.combine(p) for scenario, p in parts.items()}
    cookie_bytes = len(target.header) - len("Cookie: ") if target.header.startswith("Cookie") else 0
    log(
        f"  {target.name:<32} c50 {runs['c50'].rps:7.0f} req/s, c10 {runs['c10'].rps:7.0f}"
        f" req/s, {FIXED_RATE}/s p99 {runs['fixed'].p99_ms:.1f} ms (all rounds)"
    )
    return TargetResult(target.name, runs["c50"], runs["c10"], runs["fixed"], cookie_bytes)


# ---------------------------------------------------------------------- 1 GiB transfers


@dataclass(frozen=True)
class StreamPath:
    base_url: str
    header: str
    rss_pid: int | None = None  # the process whose peak RSS growth is measured
    ca_file: Path | None = None  # for an https base_url: the private CA curl trusts


def stream_scenario(
    paths: dict[str, dict[str, StreamPath]], work: Path, tries: int
) -> dict[str, dict[str, Any]]:
    """1 GiB each way through every path, ``tries`` rounds with the paths in turn. Per
    path and direction: the fastest try's MB/s (other work only ever slows a transfer
    down), the median, and for the proxy the largest peak RSS growth."""
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {direction: [] for direction in by_direction} for name, by_direction in paths.items()
    }
    for attempt in range(tries):
        for name, by_direction in paths.items():
            for direction, path in by_direction.items():
                entry = _transfer(path, direction, work, record=attempt == 0)
                measured[name][direction].append(entry)
                grew = f", peak RSS +{entry['rss_growth_mb']:.1f} MB" if path.rss_pid else ""
                log(f"  {name:<26} {direction:<8} {entry['mb_per_s']:6.0f} MB/s{grew}")
    return {
        name: {direction: _summary(entries) for direction, entries in tried.items()}
        for name, tried in measured.items()
    }


def _summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(max(entries, key=lambda e: e["mb_per_s"]))
    best["tries_mb_per_s"] = [e["mb_per_s"] for e in entries]
    best["median_mb_per_s"] = statistics.median(best["tries_mb_per_s"])
    if "rss_growth_mb" in best:
        best["rss_growth_mb"] = max(e["rss_growth_mb"] for e in entries)
    return best


def _transfer(path: StreamPath, direction: str, work: Path, record: bool) -> dict[str, Any]:
    before = 0
    if path.rss_pid is not None:
        fetch(path.base_url + SMALL_PATH, path.header)  # first-request allocations
        reset_peak_rss(path.rss_pid)
        before = current_rss(path.rss_pid)
    transfer = load.curl_transfer(
        path.base_url, path.header, direction, work, record=record, ca_file=path.ca_file
    )
    if transfer.status != 200 or transfer.bytes != peers.BIG_FILE_BYTES:
        raise RuntimeError(
            f"{direction} via {path.base_url}: {transfer.status}, {transfer.bytes} B"
        )
    entry: dict[str, Any] = {
        "status": transfer.status,
        "bytes": transfer.bytes,
        "seconds": transfer.seconds,
        "mb_per_s": transfer.mb_per_s,
    }
    if path.rss_pid is not None:
        peak = peak_rss_bytes(path.rss_pid)
        entry |= {
            "rss_before_mb": before / 2**20,
            "peak_rss_mb": peak / 2**20,
            "rss_growth_mb": (peak - before) / 2**20,
        }
    return entry

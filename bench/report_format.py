"""Cells and tables that several sections of BENCHMARKS.md share: ratios, MB/s, and the
absolute small-GET table (cleartext and TLS upstream)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.scenarios import FIXED_RATE, TargetResult


def ms(value: float) -> str:
    return f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def speed(entry: dict[str, Any]) -> str:
    if "mb_per_s" not in entry:
        return "-"
    return f"{entry['mb_per_s']:,.0f} ({entry.get('median_mb_per_s', entry['mb_per_s']):,.0f})"


def paired_ratio(streams: dict[str, Any], a: str, b: str, direction: str) -> float | None:
    """The median over tries of a's MB/s / b's MB/s in the same try. The two transfers
    of one try run seconds apart, so a burst of other work on the shared machine hits
    both or neither: far steadier than comparing each path's best or median."""
    first, second = streams.get(a, {}).get(direction), streams.get(b, {}).get(direction)
    if not first or not second:
        return None
    pairs = zip(first["tries_mb_per_s"], second["tries_mb_per_s"], strict=False)
    ratios = [x / y for x, y in pairs if y]
    return statistics.median(ratios) if ratios else None


def stream_ratio(streams: dict[str, Any], a: str, b: str, direction: str) -> str:
    first, second = streams.get(a, {}).get(direction), streams.get(b, {}).get(direction)
    if not first or not second:
        return "-"
    paired = paired_ratio(streams, a, b, direction)
    best = ratio(first["mb_per_s"], second["mb_per_s"])
    median = ratio(first["median_mb_per_s"], second["median_mb_per_s"])
    return f"{fmt_ratio(paired)} ({fmt_ratio(best)} / {fmt_ratio(median)})"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def small_get_table(
    targets: dict[str, TargetResult], columns: tuple[tuple[str, str], ...]
) -> list[str]:
    """The absolute small-GET figures, one column per target that was measured."""
    lines: list[str] = []
    add = lines.append
    t = targets
    present = [(key, name) for key, name in columns if key in t]
    add("| | " + " | ".join(name for _, name in present) + " |")
    add("|---" * (len(present) + 1) + "|")

    def line(label: str, cell: Any) -> None:
        add(f"| {label} | " + " | ".join(cell(t[key]) for key, _ in present) + " |")

    for run, title in (("c50", "wrk -c50"), ("c10", "wrk -c10")):
        line(f"{title}: requests/s", lambda r, run=run: f"{getattr(r, run).rps:,.0f}")
        line(
            f"{title}: p50 / p99 ms",
            lambda r, run=run: f"{ms(getattr(r, run).p50_ms)} / {ms(getattr(r, run).p99_ms)}",
        )
    line(
        f"hey, fixed {FIXED_RATE} req/s: p50 / p99 ms",
        lambda r: f"{ms(r.fixed.p50_ms)} / {ms(r.fixed.p99_ms)}",
    )
    line(
        "server CPU µs per request (c50 / c10)",
        lambda r: (
            "-"
            if r.c50.cpu_us_per_request is None
            else f"{r.c50.cpu_us_per_request:.0f} / {r.c10.cpu_us_per_request or 0:.0f}"
        ),
    )

    def errors(r: Any) -> str:
        total: dict[str, int] = {}
        for run in (r.c50, r.c10, r.fixed):
            for key, value in run.error_detail.items():
                total[key] = total.get(key, 0) + value
        count = r.c50.errors + r.c10.errors + r.fixed.errors
        detail = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in total.items())
        return f"{count} ({detail})" if detail else str(count)

    line("errors + non-2xx (all runs)", errors)
    line("Cookie header bytes", lambda r: str(r.cookie_bytes) if r.cookie_bytes else "-")
    return lines

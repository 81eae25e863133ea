"""The "TLS upstream (the real path)" section of BENCHMARKS.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.report_format import fmt_ratio, ratio, small_get_table, speed, stream_ratio
from bench.scenarios import FIXED_RATE, TargetResult

if TYPE_CHECKING:
    from bench.tls_upstream import TlsResults

COLUMNS = (
    ("direct", "direct (nginx, https)"),
    ("oidc", "Apache + mod_auth_openidc"),
    ("w1", "proxy, 1 worker"),
    ("w2", "proxy, 2 workers"),
)
# (label, a, b): a / b, both measured from the TLS upstream
SMALL_GET_RATIOS = (
    ("proxy 1 worker / mod_auth_openidc", "w1", "oidc"),
    ("proxy 2 workers / mod_auth_openidc", "w2", "oidc"),
    ("proxy 1 worker / direct", "w1", "direct"),
    ("proxy 2 workers / direct", "w2", "direct"),
    ("mod_auth_openidc / direct", "oidc", "direct"),
)
DOWNLOAD_RATIOS = (
    ("proxy / direct", "proxy, 1 worker", "direct"),
    ("mod_auth_openidc / direct", "mod_auth_openidc", "direct"),
    ("proxy / mod_auth_openidc", "proxy, 1 worker", "mod_auth_openidc"),
)
INTRO = (
    "api.sipgate.com is HTTPS, so this is the path every deployment runs. nginx serves the "
    "same 205-byte JSON and 1 GiB file over TLS (1.2/1.3) on loopback, with an ECDSA "
    "P-256 certificate from a private CA made for the run (`tests/support/tls.py`). The "
    "proxy has `upstream.url: https://127.0.0.1:…` and trusts only that CA through "
    "`upstream.ca_file`; Apache + mod_auth_openidc proxies to the same upstream with "
    "`SSLProxyEngine on`, `SSLProxyVerify require` and `SSLProxyCACertificateFile`; the "
    "direct path is wrk (or curl, verifying against the CA) straight to the HTTPS nginx. "
    "Same IdP and the same proxy session as above, same load settings; every target "
    "holds a pooled keep-alive connection to the upstream, so the figures are mostly the "
    "cost of encrypting and decrypting, not of handshakes."
)


def section(tls: TlsResults, cleartext: dict[str, TargetResult]) -> list[str]:
    lines = ["## TLS upstream (the real path)", "", INTRO, ""]
    lines += _small_get_ratios(tls.targets, cleartext)
    lines += _download(tls.transfers)
    lines += ["Small GET from the TLS upstream, absolute figures:", ""]
    lines += small_get_table(tls.targets, COLUMNS)
    return [*lines, ""]


def _small_get_ratios(t: dict[str, TargetResult], cleartext: dict[str, TargetResult]) -> list[str]:
    lines = ["| ratio (this run, TLS upstream) | c50 | c10 |", "|---|---|---|"]
    for label, a, b in SMALL_GET_RATIOS:
        lines.append(_row(f"throughput, {label}", t, a, b, "rps"))
    for field, what in (("p99_ms", "p99 latency"), ("cpu_us_per_request", "CPU per request")):
        for label, a, b in SMALL_GET_RATIOS[:2]:  # against mod_auth_openidc
            lines.append(_row(f"{what}, {label}", t, a, b, field))
    if "w1" in t and "oidc" in t:
        fixed = ratio(t["w1"].fixed.p99_ms, t["oidc"].fixed.p99_ms)
        lines.append(
            f"| p99 at a fixed {FIXED_RATE} req/s, proxy 1 worker / mod_auth_openidc "
            f"| {fmt_ratio(fixed)} | |"
        )
    for key, name in (
        ("w1", "proxy 1 worker"),
        ("w2", "proxy 2 workers"),
        ("oidc", "mod_auth_openidc"),
    ):
        for field, what in (("rps", "throughput"), ("cpu_us_per_request", "CPU per request")):
            label = f"{what}, {name}: TLS / cleartext upstream"
            lines.append(_cost_row(label, (t, cleartext), key, field))
    return [*lines, ""]


def _value(t: dict[str, TargetResult], key: str, run: str, field: str) -> float | None:
    if key not in t:
        return None
    value: float | None = getattr(getattr(t[key], run), field)
    return value


def _row(label: str, t: dict[str, TargetResult], a: str, b: str, field: str) -> str:
    cells = [
        fmt_ratio(ratio(_value(t, a, run, field), _value(t, b, run, field)))
        for run in ("c50", "c10")
    ]
    return f"| {label} | {cells[0]} | {cells[1]} |"


def _cost_row(
    label: str, runs: tuple[dict[str, TargetResult], dict[str, TargetResult]], key: str, field: str
) -> str:
    """The same target from the TLS upstream over the cleartext one: what TLS costs it."""
    tls, clear = runs
    cells = [
        fmt_ratio(ratio(_value(tls, key, run, field), _value(clear, key, run, field)))
        for run in ("c50", "c10")
    ]
    return f"| {label} | {cells[0]} | {cells[1]} |"


def _download(transfers: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| 1 GiB download from the TLS upstream | MB/s best (median) | peak RSS growth |",
        "|---|---|---|",
    ]
    for name, entry in transfers.items():
        down = entry.get("download", {})
        growth = f"+{down['rss_growth_mb']:.1f} MB" if "rss_growth_mb" in down else "-"
        lines.append(f"| {name} | {speed(down)} | {growth} |")
    lines += [
        "",
        "| ratio (this run): median of per-try ratios (best / median MB/s) | download |",
        "|---|---|",
    ]
    for label, a, b in DOWNLOAD_RATIOS:
        lines.append(f"| {label} | {stream_ratio(transfers, a, b, 'download')} |")
    return [*lines, ""]

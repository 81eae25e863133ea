"""`make bench`: the proxy against the direct path and Apache httpd + mod_auth_openidc,
from a cleartext upstream and from an HTTPS one (bench/tls_upstream.py, the real path).

One run measures everything side by side on this machine and prints ratios (absolute
figures from shared machines are not comparable between runs; ratios from one run are),
then writes BENCHMARKS.md. Everything runs on loopback, every load step is bounded in
time; the whole run takes about nine minutes (plus at most a minute of waiting for the
shared machine to go quiet). Raw output goes to bench/results/ (not committed).

    .venv/bin/python bench/run.py [--seconds 12] [--rounds 4] [--transfers 5] [--quick]
                                  [--no-profile] [--keep] [--output FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from bench import load, peers, pyspy_profile, tls_upstream  # noqa: E402
from bench.bare_passthrough import COOKIE as BARE_COOKIE  # noqa: E402
from bench.bare_passthrough import seal  # noqa: E402
from bench.login import mod_auth_openidc_login, proxy_login  # noqa: E402
from bench.peers import ApacheSettings, ProxySettings, Server  # noqa: E402
from bench.scenarios import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    SMALL_PATH,
    StreamPath,
    Target,
    TargetResult,
    bearer_via,
    fetch,
    log,
    small_get_scenarios,
    stream_scenario,
)
from tests.support.idp import idp_available, start_idp  # noqa: E402

RESULTS = ROOT / "bench" / "results"  # raw output of the last run (not committed)
# The refresh scenario: access tokens live REFRESH_ACCESS_TTL s; Apache refreshes when less
# than REFRESH_SKEW s are left, the proxy when less than min(refresh_skew, half the
# lifetime) = 12 s are left, so REFRESH_WAIT s after the login every session needs a
# refresh, while the new tokens stay valid for longer than the burst of requests takes
# even on a loaded machine (a token that expires mid-burst would measure the machine).
REFRESH_ACCESS_TTL, REFRESH_SKEW, REFRESH_WAIT = 24, 20, 13
REFRESH_CONCURRENCY = 1000
COPY_RELAY = "relay, user-space copy (uvloop)"
BASELINE = "proxy at the baseline, 1 worker"  # --baseline: another checkout
QUIET_BUSY_PERCENT = 15  # CPU use by others above which the run waits (bounded)
READY_STARTS = 3  # start the proxy this often; the median start → ready counts

TARGETS = {  # issue 8
    "w2_vs_oidc": 1.0,
    "w1_vs_oidc": 0.55,
    "cpu_vs_bare": 1.1,
    "p99_c10_vs_oidc": 1.0,
    "stream_vs_direct": 0.8,
    "stream_rss_mb": 30.0,
    "idle_rss_mb": 60.0,
    "ready_s": 1.0,
}


# ---------------------------------------------------------------------- machine facts


def _first_line(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603 (fixed programs, loopback targets)
    except OSError:
        return "not installed"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_facts() -> dict[str, str]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    import aiohttp as aiohttp_module

    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "proxy"])
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "aiohttp": aiohttp_module.__version__,
        "uvloop": _module_version("uvloop"),
        "nginx": _first_line(["/usr/sbin/nginx", "-v"]),
        "apache": _first_line(["/usr/sbin/apache2", "-v"]),
        "mod_auth_openidc": _first_line(
            ["dpkg-query", "-W", "-f", "${Version}", "libapache2-mod-auth-openidc"]
        ),
        "wrk": _first_line(["wrk", "-v"]),
        "OpenSSL (system; nginx, Apache, wrk, curl)": _first_line(["openssl", "version"]),
        "OpenSSL (Python's ssl, the proxy)": ssl.OPENSSL_VERSION,
        "proxy commit": commit + (" + uncommitted changes in proxy/" if dirty != "?" else ""),
    }


def _module_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "not installed"


# ---------------------------------------------------------------------- helpers


def rss_mb(procs: list[psutil.Process]) -> list[float]:
    values = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            values.append(proc.memory_info().rss / 2**20)
    return values


def proxy_workers(server: Server) -> list[psutil.Process]:
    """The processes serving requests: the workers of a supervisor, else the process."""
    procs = server.processes()
    helpers = ("resource_tracker", "forkserver")
    workers = [p for p in procs[1:] if not any(h in part for part in _cmdline(p) for h in helpers)]
    return workers or procs[:1]


def pss_mb(procs: list[psutil.Process]) -> list[float]:
    """Proportional set size: shared pages split among the processes sharing them."""
    values = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            values.append(proc.memory_full_info().pss / 2**20)
    return values


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.NoSuchProcess:
        return []


def jwt_claims(bearer: str) -> dict[str, Any]:
    payload = bearer.removeprefix("Bearer ").split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# ---------------------------------------------------------------------- scenarios


@dataclass
class Results:
    facts: dict[str, str]
    seconds: int
    targets: dict[str, TargetResult] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    ready_all: dict[str, list[float]] = field(default_factory=dict)
    idle_rss: dict[str, list[float]] = field(default_factory=dict)
    idle_pss: dict[str, list[float]] = field(default_factory=dict)
    loaded_rss: dict[str, list[float]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    tls: tls_upstream.TlsResults | None = None
    profile: pyspy_profile.Profile | None = None
    profile_cpu_us: float | None = None
    notes: list[str] = field(default_factory=list)


async def concurrent_requests(url: str, cookie: str, count: int) -> dict[str, Any]:
    """``count`` requests at once, one connection each, all carrying the same cookie."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    statuses: dict[int, int] = {}
    set_cookie = 0
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:
        start = asyncio.Event()

        async def one() -> None:
            nonlocal set_cookie
            await start.wait()
            try:
                async with client.get(url, headers={"Cookie": cookie}) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if "Set-Cookie" in response.headers:
                        set_cookie += 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[-1] = statuses.get(-1, 0) + 1

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)
        began = time.monotonic()
        start.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - began
    return {"statuses": statuses, "with_set_cookie": set_cookie, "seconds": elapsed}


def refresh_scenario(results: Results, stack: contextlib.ExitStack, work: Path, key: str) -> None:
    """1000 concurrent requests of one session that is due for a refresh.

    The upstream here is the test suite's api.sipgate.com double, which verifies each
    Bearer JWT (signature, expiry) against the IdP's keys: a 200 means a valid token.
    """
    proxy_port, apache_port = peers.free_port(), peers.free_port()
    idp = start_idp(
        work / "refresh",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[
            f"http://127.0.0.1:{proxy_port}/oauth2/callback",
            f"http://127.0.0.1:{apache_port}{peers.REDIRECT_PATH}",
        ],
        access_ttl=REFRESH_ACCESS_TTL,
        log_requests=False,
    )
    stack.callback(idp.stop)
    upstream = peers.start_verifying_upstream(stack, work, idp.jwks_uri)
    settings = ProxySettings(
        idp.issuer, CLIENT_ID, CLIENT_SECRET, key, upstream.url, 1, REFRESH_SKEW, proxy_port
    )
    proxy, _ = peers.start_proxy(stack, work, settings, name="proxy-refresh")
    paths: list[tuple[str, str, str, str]] = []  # (name, url, cookie, subject)
    paths.append(
        (
            "proxy (1 worker)",
            proxy.url,
            asyncio.run(proxy_login(proxy.url, "refresh-proxy")),
            "refresh-proxy",
        )
    )
    if peers.apache_available()[0]:
        apache = peers.start_apache(
            stack,
            work,
            ApacheSettings(
                idp.issuer,
                CLIENT_ID,
                CLIENT_SECRET,
                upstream.url,
                upstream.url,
                secrets.token_hex(16),
                apache_port,
                extra=f"OIDCRefreshAccessTokenBeforeExpiry {REFRESH_SKEW}",
            ),
            name="apache-refresh",
        )
        cookie = asyncio.run(mod_auth_openidc_login(apache.url, "refresh-oidc"))
        paths.append(("mod_auth_openidc", apache.url, cookie, "refresh-oidc"))
    # Every session needs a refresh once REFRESH_WAIT seconds have passed since the last login.
    time.sleep(REFRESH_WAIT)
    for name, url, cookie, subject in paths:
        idp.reset_stats()
        log(
            f"refresh: {REFRESH_CONCURRENCY} concurrent requests, one session due for "
            f"refresh, {name}"
        )
        outcome = asyncio.run(concurrent_requests(url + SMALL_PATH, cookie, REFRESH_CONCURRENCY))
        stats = idp.stats()["token"].get("refresh_token", {})
        outcome["refresh_calls"] = sum(stats.values())
        outcome["refresh_outcomes"] = stats
        outcome["grant_alive"] = any(g.get("sub") == subject for g in idp.grants())
        results.refresh[name] = outcome
        if not stats:
            results.notes.append(f"refresh scenario, {name}: the session was not refreshed")
        log(
            f"  answers {outcome['statuses']}, refresh_token calls {stats}, grant alive "
            f"{outcome['grant_alive']}, {outcome['seconds']:.2f} s"
        )
    load.COMMANDS.append(
        f"# refresh: {REFRESH_CONCURRENCY} concurrent GET {SMALL_PATH} (aiohttp, one connection "
        f"each) with one session cookie, {REFRESH_WAIT} s after login; IdP access token TTL "
        f"{REFRESH_ACCESS_TTL} s; proxy refresh_skew {REFRESH_SKEW}; Apache "
        f"OIDCRefreshAccessTokenBeforeExpiry {REFRESH_SKEW}; upstream = tests/support/upstream.py "
        "(verifies JWTs)"
    )


def profile_proxy(results: Results, proxy: Server, header: str, seconds: int, work: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).is_file():
        results.notes.append("py-spy not installed: no profile")
        return
    log(f"profile: py-spy record on the proxy (1 worker) during wrk -c50 ({seconds}s)")
    url = proxy.url + SMALL_PATH
    args = ["wrk", "-t1", "-c50", f"-d{seconds + 2}s", "-H", header, url]
    load.COMMANDS.append(
        f"{Path(py_spy).name} record --pid <proxy pid> --duration {seconds} --rate 250 "
        "--format raw --nonblocking   # during: wrk -t1 -c50 -d"
        f"{seconds + 2}s -H 'Cookie: sipgate_proxy_0=…' {url}"
    )
    wrk = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        time.sleep(1)
        results.profile = pyspy_profile.record(py_spy, proxy.pid, seconds, work / "profile.txt")
    finally:
        wrk.wait(timeout=seconds + 30)
    RESULTS.mkdir(exist_ok=True)
    shutil.copy(work / "profile.txt", RESULTS / "profile.txt")


def measure_start(
    results: Results, stack: contextlib.ExitStack, work: Path, settings: ProxySettings, label: str
) -> Server:
    """Start the proxy READY_STARTS times (median start → ready); keep the last one running."""
    times: list[float] = []
    proxy: Server | None = None
    for attempt in range(READY_STARTS):
        last = attempt == READY_STARTS - 1
        with contextlib.ExitStack() as once:
            proxy, ready = peers.start_proxy(
                stack if last else once, work, settings, f"proxy-w{settings.workers}"
            )
            times.append(ready)
    assert proxy is not None
    results.ready[label] = statistics.median(times)
    results.ready_all[label] = times
    time.sleep(0.5)
    results.idle_rss[label] = rss_mb(proxy_workers(proxy))
    results.idle_pss[label] = pss_mb(proxy_workers(proxy))
    log(
        f"{label}: start → ready {', '.join(f'{t * 1000:.0f}' for t in times)} ms; idle RSS "
        f"{', '.join(f'{v:.1f}' for v in results.idle_rss[label])} MB"
    )
    return proxy


# ---------------------------------------------------------------------- the run


def wait_for_quiet(max_wait: float, results: Results) -> None:
    """These machines are shared: wait (bounded) until other work leaves the CPUs idle."""
    deadline = time.monotonic() + max_wait
    busy = psutil.cpu_percent(interval=2)
    while busy > QUIET_BUSY_PERCENT and time.monotonic() < deadline:
        log(f"CPUs {busy:.0f}% busy with other work; waiting for quiet (≤ {max_wait:.0f} s)")
        busy = psutil.cpu_percent(interval=5)
    results.facts["CPU busy before the run (other work)"] = f"{busy:.0f}%"
    if busy > QUIET_BUSY_PERCENT:
        results.notes.append(
            f"the machine was {busy:.0f}% busy with other work when the run started"
        )


def run(args: argparse.Namespace) -> Results:
    seconds = args.seconds
    results = Results(machine_facts(), seconds)
    wait_for_quiet(args.max_wait_quiet, results)
    ok, reason = idp_available()
    if not ok:
        raise SystemExit(f"the test IdP cannot run: {reason} (run bench/install-deps.sh)")
    apache_ok, apache_reason = peers.apache_available()
    if not apache_ok:
        results.notes.append(f"mod_auth_openidc not measured: {apache_reason}")
    work = Path(tempfile.mkdtemp(prefix="sipgate-bench-"))
    os.chmod(work, 0o755)  # noqa: S103 (Apache's children, as www-data, read their config)
    log(f"work directory {work}")
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, True)
        nginx = peers.start_nginx(stack, work)
        sink = peers.start_sink(stack, work)
        w1_port, w2_port = peers.free_port(), peers.free_port()
        apache_port, apache_tls_port = peers.free_port(), peers.free_port()
        idp = start_idp(
            work,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[
                f"http://127.0.0.1:{w1_port}/oauth2/callback",
                f"http://127.0.0.1:{apache_port}{peers.REDIRECT_PATH}",
                f"http://127.0.0.1:{apache_tls_port}{peers.REDIRECT_PATH}",
            ],
            access_ttl=3600,  # no refresh during the load runs
            log_requests=False,
        )
        stack.callback(idp.stop)
        key = peers.generate_session_key()

        def proxy_settings(workers: int, port: int, upstream: str = nginx.url) -> ProxySettings:
            return ProxySettings(
                idp.issuer, CLIENT_ID, CLIENT_SECRET, key, upstream, workers, port=port
            )

        # --- servers under test, all up at once (idle ones cost nothing)
        load_stack = stack.enter_context(contextlib.ExitStack())
        w1 = measure_start(results, load_stack, work, proxy_settings(1, w1_port), "proxy, 1 worker")
        w2 = measure_start(
            results, load_stack, work, proxy_settings(2, w2_port), "proxy, 2 workers"
        )
        proxy_cookie = "Cookie: " + asyncio.run(proxy_login(w1.url))
        bearer = bearer_via(w1.url, proxy_cookie)
        if bearer_via(w2.url, proxy_cookie) != bearer:
            raise RuntimeError("the 2-worker proxy does not accept the session")
        if jwt_claims(bearer).get("iss") != idp.issuer:
            raise RuntimeError("the proxy's bearer is not an access token of the test IdP")
        log(f"proxy: logged in, session cookie {len(proxy_cookie) - 8} bytes")
        # The direct path carries the very access token the proxy sends.
        direct_header = "Authorization: " + bearer
        targets = [Target("direct", "direct (nginx)", nginx.url + SMALL_PATH, direct_header, None)]

        apache: Server | None = None
        apache_cookie = ""
        if apache_ok:
            apache = peers.start_apache(
                stack,
                work,
                ApacheSettings(
                    idp.issuer,
                    CLIENT_ID,
                    CLIENT_SECRET,
                    nginx.url,
                    sink.url,
                    secrets.token_hex(16),
                    apache_port,
                ),
            )
            apache_cookie = "Cookie: " + asyncio.run(mod_auth_openidc_login(apache.url))
            if jwt_claims(bearer_via(apache.url, apache_cookie)).get("iss") != idp.issuer:
                raise RuntimeError("mod_auth_openidc's bearer is not from the test IdP")
            log(f"mod_auth_openidc: logged in, session cookie {len(apache_cookie) - 8} bytes")
            targets.append(
                Target("oidc", "mod_auth_openidc", apache.url + SMALL_PATH, apache_cookie, apache)
            )

        # The floor: bare aiohttp pass-through, AES-GCM cookie as long as the proxy's.
        bare_key = os.urandom(32)
        bare = peers.start_bare(load_stack, work, nginx.url, bare_key)
        bare2 = peers.start_bare(load_stack, work, nginx.url, bare_key, processes=2)
        sealed_len = len(proxy_cookie.split("=", 1)[1])
        access = bearer.removeprefix("Bearer ")
        bare_cookie = f"Cookie: {BARE_COOKIE}={seal(bare_key, access, sealed_len * 3 // 4 - 28)}"
        for server in (bare, bare2):
            if fetch(server.url + SMALL_PATH, bare_cookie)[0] != 200:
                raise RuntimeError("the bare pass-through does not work")
        if args.baseline is not None:
            base, _ = peers.start_proxy(
                load_stack, work, proxy_settings(1, peers.free_port()), "proxy-base", args.baseline
            )
            if bearer_via(base.url, proxy_cookie) != bearer:
                raise RuntimeError("the baseline proxy does not accept the session")
            targets.append(Target("base", BASELINE, base.url + SMALL_PATH, proxy_cookie, base))
        targets += [
            Target("w1", "proxy, 1 worker", w1.url + SMALL_PATH, proxy_cookie, w1),
            Target("w2", "proxy, 2 workers", w2.url + SMALL_PATH, proxy_cookie, w2),
            Target("bare", "bare aiohttp, 1 process", bare.url + SMALL_PATH, bare_cookie, bare),
            Target(
                "bare2", "bare aiohttp, 2 processes", bare2.url + SMALL_PATH, bare_cookie, bare2
            ),
        ]
        results.targets = small_get_scenarios(targets, seconds, args.rounds)
        results.loaded_rss["proxy, 1 worker"] = rss_mb(proxy_workers(w1))
        results.loaded_rss["proxy, 2 workers"] = rss_mb(proxy_workers(w2))
        if args.profile:
            results.profile_cpu_us = results.targets["w1"].c50.cpu_us_per_request
            profile_proxy(results, w1, proxy_cookie, seconds, work)
        load_stack.close()  # the proxies and the bare pass-through

        # --- 1 GiB streamed both ways. Downloads come from nginx (sendfile of a cached
        # file); uploads go to the sink, which reads the whole body before it answers
        # (nginx would answer first). Every path runs once per try, in turn, so a burst of
        # other work on this shared machine hits all of them alike; the best try counts.
        # The copy relay (bench/relays.py) carries no HTTP at all: it is the ceiling.
        log(f"streaming: 1 GiB download and upload, {args.transfers} interleaved tries")
        upstreams = {"download": nginx, "upload": sink}
        paths: dict[str, dict[str, StreamPath]] = {"direct": {}}
        for direction, upstream in upstreams.items():
            paths["direct"][direction] = StreamPath(upstream.url, direct_header)
        paths[COPY_RELAY] = {
            direction: StreamPath(peers.start_relay(stack, work, upstream).url, direct_header)
            for direction, upstream in upstreams.items()
        }
        if apache is not None:
            paths["mod_auth_openidc"] = {
                direction: StreamPath(apache.url, apache_cookie) for direction in upstreams
            }
        paths["proxy, 1 worker"] = {}
        for direction, upstream in upstreams.items():
            proxy, _ = peers.start_proxy(
                stack,
                work,
                proxy_settings(1, peers.free_port(), upstream.url),
                f"proxy-{direction}",
            )
            paths["proxy, 1 worker"][direction] = StreamPath(proxy.url, proxy_cookie, proxy.pid)
        results.transfers = stream_scenario(paths, work, args.transfers)

        # --- the same small GET and download from an HTTPS upstream (the real path)
        login = tls_upstream.Login(
            idp.issuer, key, proxy_cookie, bearer, apache_tls_port if apache_ok else None
        )
        rounds = tls_upstream.Rounds(seconds, args.rounds, args.transfers)
        results.tls = tls_upstream.measure(stack, work, login, rounds)

        # --- 1000 concurrent requests of one session due for refresh
        refresh_scenario(results, stack, work, key)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12, help="length of each load step")
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved rounds per scenario (split --seconds)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s steps, 1 round, no repeats (a smoke test)"
    )
    parser.add_argument(
        "--transfers", type=int, default=5, help="tries per 1 GiB transfer, all paths in turn"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--max-wait-quiet", type=float, default=60, help="seconds to wait for an idle machine"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of the proxy (git worktree add DIR REV), measured as one more "
        "small-GET target, 1 worker: what a change costs, as ratios from the same run",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=RESULTS / "run.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.transfers = 3, 1, 1
    from bench.report import render, to_json

    started = time.monotonic()
    results = run(args)
    elapsed = time.monotonic() - started
    results.facts["load average at the end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(results, elapsed, argv if argv is not None else sys.argv[1:])
    print()
    print(text)
    args.output.write_text(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_json(results), indent=2, default=str))
    log(f"done in {elapsed:.0f} s; wrote {args.output} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

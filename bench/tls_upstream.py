"""The TLS upstream scenario: the path every deployment runs, since api.sipgate.com is
HTTPS.

nginx serves the same small JSON and 1 GiB file as in the cleartext run, over TLS, with a
certificate from a private CA made for this run (tests/support/tls.py). The proxy trusts
that CA through ``upstream.ca_file``; Apache + mod_auth_openidc through
``SSLProxyCACertificateFile`` with ``SSLProxyVerify require``; the direct path is wrk
(or curl) straight to the HTTPS nginx. Small GET and the 1 GiB download are measured as
in the cleartext run (bench/scenarios.py), with the sessions of the same IdP.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peers
from bench.login import mod_auth_openidc_login
from bench.peers import ApacheSettings, ProxySettings, Server, TlsUpstream
from bench.scenarios import (
    CLIENT_ID,
    CLIENT_SECRET,
    SMALL_PATH,
    StreamPath,
    Target,
    TargetResult,
    bearer_via,
    log,
    small_get_scenarios,
    stream_scenario,
)
from tests.support.tls import make_certificates


@dataclass(frozen=True)
class Login:
    """What the scenario reuses from the cleartext run's set-up."""

    issuer: str
    session_key: str
    proxy_cookie: str  # "Cookie: …" from a real login through the proxy
    bearer: str  # "Bearer …": the access token the proxy sends for that session
    apache_port: int | None  # a redirect URI at the IdP for Apache; None: no Apache


@dataclass(frozen=True)
class Rounds:
    seconds: int
    rounds: int
    transfers: int


@dataclass
class TlsResults:
    targets: dict[str, TargetResult]  # keys as in the cleartext run: direct, oidc, w1, w2
    transfers: dict[str, dict[str, Any]]  # path name → {"download": …}


def measure(stack: contextlib.ExitStack, work: Path, login: Login, rounds: Rounds) -> TlsResults:
    upstream = _start_upstream(stack, work, login)
    direct = "Authorization: " + login.bearer
    apache = _start_apache(stack, work, login, upstream)
    with contextlib.ExitStack() as proxies:  # stopped before the downloads
        targets = [
            Target("direct", "direct (nginx, https)", upstream.url + SMALL_PATH, direct, None)
        ]
        if apache is not None:
            targets.append(apache.target("oidc", "mod_auth_openidc"))
        for key, workers in (("w1", 1), ("w2", 2)):
            proxy = _start_proxy(proxies, work, login, upstream, workers)
            name = f"proxy, {workers} worker" + ("s" if workers > 1 else "")
            targets.append(_Front(proxy, login.proxy_cookie).target(key, name))
        small = small_get_scenarios(targets, rounds.seconds, rounds.rounds)
    log(f"TLS upstream: 1 GiB download, {rounds.transfers} interleaved tries")
    paths = {"direct": StreamPath(upstream.url, direct, ca_file=upstream.ca_file)}
    if apache is not None:
        paths["mod_auth_openidc"] = StreamPath(apache.server.url, apache.header)
    # A fresh proxy, as in the cleartext run: its peak RSS growth is measured.
    proxy = _start_proxy(stack, work, login, upstream, 1, "proxy-tls-download")
    paths["proxy, 1 worker"] = StreamPath(proxy.url, login.proxy_cookie, proxy.pid)
    downloads = {name: {"download": path} for name, path in paths.items()}
    return TlsResults(small, stream_scenario(downloads, work, rounds.transfers))


@dataclass(frozen=True)
class _Front:
    """A server in front of the HTTPS upstream and the header that gets a client through."""

    server: Server
    header: str

    def target(self, key: str, name: str) -> Target:
        return Target(key, name, self.server.url + SMALL_PATH, self.header, self.server)


def _start_upstream(stack: contextlib.ExitStack, work: Path, login: Login) -> TlsUpstream:
    directory = work / "tls"
    directory.mkdir(exist_ok=True)
    upstream = peers.start_tls_nginx(stack, work, make_certificates(directory))
    trust = ssl.create_default_context(cafile=str(upstream.ca_file))
    if bearer_via(upstream.url, "Authorization: " + login.bearer, trust) != login.bearer:
        raise RuntimeError("the HTTPS nginx does not echo the bearer")
    log(f"TLS upstream: nginx at {upstream.url}, certificate from a private CA")
    return upstream


def _start_proxy(
    stack: contextlib.ExitStack,
    work: Path,
    login: Login,
    upstream: TlsUpstream,
    workers: int,
    name: str = "",
) -> Server:
    settings = ProxySettings(
        login.issuer,
        CLIENT_ID,
        CLIENT_SECRET,
        login.session_key,
        upstream.url,
        workers,
        ca_file=upstream.ca_file,
    )
    proxy, _ = peers.start_proxy(stack, work, settings, name or f"proxy-tls-w{workers}")
    # The same session as in the cleartext run: the same access token reaches nginx.
    if bearer_via(proxy.url, login.proxy_cookie) != login.bearer:
        raise RuntimeError(f"{proxy.name}: the proxy's bearer did not reach the HTTPS upstream")
    return proxy


def _start_apache(
    stack: contextlib.ExitStack, work: Path, login: Login, upstream: TlsUpstream
) -> _Front | None:
    if login.apache_port is None:
        return None
    settings = ApacheSettings(
        login.issuer,
        CLIENT_ID,
        CLIENT_SECRET,
        upstream.dns_url,
        upstream.dns_url,  # no upload in this scenario
        secrets.token_hex(16),
        login.apache_port,
        extra=peers.apache_tls_proxy(upstream.ca_file),
    )
    apache = peers.start_apache(stack, work, settings, name="apache-tls")
    cookie = "Cookie: " + asyncio.run(mod_auth_openidc_login(apache.url))
    bearer_via(apache.url, cookie)  # raises unless a bearer crossed SSLProxyVerify require
    log(f"TLS upstream: mod_auth_openidc logged in, session cookie {len(cookie) - 8} bytes")
    return _Front(apache, cookie)

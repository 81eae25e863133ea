"""Faults of every peer, each with the outcome the documentation (docs/) states.

IdP: down, slower than ``auth.oauth2.timeout``, answering 503 HTML, dropping the
connection (the real test IdP with ``set_faults``), and answering garbage on the token
endpoint (a small fake token endpoint: HTML, non-UTF-8, JSON that is no token response).
Upstream: down, slow, resetting mid-body, not speaking HTTP, headers beyond aiohttp's
client limits. Clients that abort mid-upload, mid-download and before the upstream
answered: the upstream request is cancelled and connections and tasks return to where
they were. Redis down with the Redis store: 503 with Retry-After, the session survives.

Every test also checks that the proxy logged no error and no traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import logging
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.server import handler_args
from tests.conftest import CLIENT_ID, CLIENT_SECRET, ProxyFactory, require
from tests.support.idp import RunningIdP, idp_available, start_idp
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer
from tests.support.scripted_browser import FORM_ACTION, NAVIGATION, ScriptedBrowser
from tests.support.secrets import WATCH
from tests.support.sessions import connect, cookie_store, opened, redis_store, seal

ServerFactory = Callable[..., Awaitable[TestServer]]

KEY = bytes(range(100, 132))
COOKIE = "sipgate_proxy"
JSON = {"Accept": "application/json"}
SESSION_KEYS = {"SIPGATE_PROXY_SESSION__KEYS": f"[{base64.b64encode(KEY).decode()}]"}


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def proxy_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Error records and tracebacks logged during the test (peers here never log any)."""
    caplog.set_level(logging.INFO)

    def errors() -> list[str]:
        found = []
        for record in caplog.records:
            error = record.exc_info[0] if record.exc_info else None
            if record.levelno >= logging.ERROR or error is not None:
                found.append(f"{record.name}: {record.getMessage()} {error and error.__name__}")
        return found

    return errors


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def as_jar(set_cookies: list[str]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for line in set_cookies:
        name, _, rest = line.partition("=")
        if "Max-Age=0" not in line:
            jar[name] = rest.split(";", 1)[0]
    return jar


def sealed_cookie(tokens: TokenSet) -> str:
    """A session cookie as the proxy would write it for ``tokens`` (same key and name)."""
    store = cookie_store(KeyRing([KEY]), COOKIE, False, 30 * 86400)
    jar = as_jar(seal(store, tokens, time.time(), {}))
    for value in (*jar.values(), tokens.access_token, tokens.refresh_token):
        WATCH.add(value)
    return cookie_header(jar)


def with_expiry(cookie: str, expires_in: float) -> str:
    """The same session with its access token expiring ``expires_in`` seconds from now."""
    store = cookie_store(KeyRing([KEY]), COOKIE, False, 30 * 86400)
    jar = dict(pair.split("=", 1) for pair in cookie.split("; "))
    stored = opened(store, jar)
    assert stored is not None
    return sealed_cookie(replace(stored.tokens, expires_at=time.time() + expires_in))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str
    set_cookies: list[str]
    seconds: float


async def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, **kwargs: object
) -> Answer:
    started = time.monotonic()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.request(
            method,
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=20),
            **kwargs,  # type: ignore[arg-type]
        ) as resp:
            body = await resp.text(errors="replace")
            return Answer(
                resp.status,
                dict(resp.headers),
                body,
                resp.headers.getall("Set-Cookie", []),
                time.monotonic() - started,
            )


def assert_retry_later(answer: Answer, code: str = "idp_unavailable") -> None:
    assert answer.status == 503, answer
    assert int(answer.headers["Retry-After"]) > 0
    assert json.loads(answer.body)["error"] == code
    assert answer.set_cookies == []  # the session is kept: never a silent logout


def assert_login_failed_page(answer: Answer, status: int = 502) -> None:
    assert answer.status == status, answer
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Try again" in answer.body


async def oauth_proxy(
    aiohttp_server: ServerFactory, upstream: TestServer, issuer: str, port: int, **env: str
) -> str:
    public_url = f"http://localhost:{port}"
    environ = {
        "SIPGATE_PROXY_PUBLIC_URL": public_url,
        "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": issuer,
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
        **SESSION_KEYS,
        "SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "true",  # some tests ask /oauth2/auth too
        **env,
    }
    settings = config.load(None, environ)
    await aiohttp_server(create_app(settings), port=port, **handler_args(settings))
    return public_url


async def until_callback(browser: ScriptedBrowser, public_url: str, user: str) -> str:
    """Log in at the IdP and stop before the proxy's callback; returns the callback URL."""
    start = f"{public_url}/oauth2/start?rd=/v2/after-login"
    status, headers, _, _ = await browser.request("GET", start, headers=NAVIGATION)
    assert status == 302
    url, status, body = await browser.navigate(headers["Location"], stop_at=public_url)
    if status:  # the IdP's login form
        match = FORM_ACTION.search(body)
        assert match, body[:300]
        action = urljoin(url, html.unescape(match.group(1)))
        status, headers, _, _ = await browser.request(
            "POST", action, data={"username": user, "password": "pw"}
        )
        url, _, _ = await browser.navigate(urljoin(action, headers["Location"]), public_url)
    assert url.startswith(f"{public_url}/oauth2/callback?")
    return url


async def callback(browser: ScriptedBrowser, url: str) -> Answer:
    started = time.monotonic()
    status, headers, body, cookies = await browser.request("GET", url, headers=NAVIGATION)
    return Answer(status, headers, body, cookies, time.monotonic() - started)


# --- the real IdP, down, slow or failing -------------------------------------------------


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningIdP, int]]:
    """One test IdP for the module; its redirect URI names the port every proxy here uses."""
    require(*idp_available())
    port = free_port()
    running_idp = start_idp(
        tmp_path_factory.mktemp("faults-idp"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"http://localhost:{port}/oauth2/callback"],
    )
    yield running_idp, port
    running_idp.stop()
    WATCH.add_idp_state(running_idp.state_path)


@pytest.fixture
def healthy_idp(idp: tuple[RunningIdP, int]) -> Iterator[tuple[RunningIdP, int]]:
    """The module's IdP, up and without faults before and after the test."""
    running_idp, _ = idp
    running_idp.start()
    running_idp.clear_faults()
    yield idp
    running_idp.start()
    running_idp.clear_faults()


async def logged_in(browser: ScriptedBrowser, public_url: str, user: str) -> str:
    await browser.login(public_url, user, "/")
    return cookie_header(browser.jar(public_url))


async def test_idp_down_login_page_503_for_expired_token_and_the_session_survives(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    healthy_idp: tuple[RunningIdP, int],
    proxy_errors: Callable[[], list[str]],
) -> None:
    idp_, port = healthy_idp
    public_url = await oauth_proxy(aiohttp_server, upstream, idp_.issuer, port)
    async with ScriptedBrowser() as browser:
        cookie = await logged_in(browser, public_url, "down-user")
        pending_login = await until_callback(browser, public_url, "down-user")
        idp_.stop()
        # Code exchange impossible: a page with a retry link, not an error.
        assert_login_failed_page(await callback(browser, pending_login))
    expired, due = with_expiry(cookie, -1), with_expiry(cookie, 10)
    # Refresh due, token still valid: used as it is.
    assert (await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": due})).status == 200
    # Expired and no IdP: 503 for APIs and browsers alike (a login could not work either).
    assert_retry_later(await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": expired}))
    answer = await fetch(f"{public_url}/v2/a", headers={**NAVIGATION, "Cookie": expired})
    assert_retry_later(answer)
    answer = await fetch(f"{public_url}/oauth2/auth", headers={"Cookie": expired})
    assert_retry_later(answer)
    idp_.start()
    answer = await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": expired})
    assert answer.status == 200
    assert any(c.startswith(f"{COOKIE}_0=") for c in answer.set_cookies)  # refreshed
    assert proxy_errors() == []


async def test_idp_slower_than_the_timeout_fails_fast(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    healthy_idp: tuple[RunningIdP, int],
    proxy_errors: Callable[[], list[str]],
) -> None:
    idp_, port = healthy_idp
    public_url = await oauth_proxy(
        aiohttp_server, upstream, idp_.issuer, port, SIPGATE_PROXY_AUTH__OAUTH2__TIMEOUT="0.5"
    )
    async with ScriptedBrowser() as browser:
        cookie = await logged_in(browser, public_url, "slow-user")
        pending_login = await until_callback(browser, public_url, "slow-user")
        idp_.set_faults(token_delay_ms=3000)
        answer = await callback(browser, pending_login)
        assert_login_failed_page(answer)
        assert answer.seconds < 2.0
    answer = await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": with_expiry(cookie, -1)})
    assert_retry_later(answer)
    assert answer.seconds < 2.0
    assert proxy_errors() == []


@pytest.mark.parametrize(
    "fault", [{"token_status": 503}, {"token_drop": True}], ids=["html-503", "dropped"]
)
async def test_idp_failing_the_token_endpoint_is_transient(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    healthy_idp: tuple[RunningIdP, int],
    proxy_errors: Callable[[], list[str]],
    fault: dict[str, object],
) -> None:
    idp_, port = healthy_idp
    public_url = await oauth_proxy(aiohttp_server, upstream, idp_.issuer, port)
    async with ScriptedBrowser() as browser:
        cookie = await logged_in(browser, public_url, "failing-user")
        pending_login = await until_callback(browser, public_url, "failing-user")
        idp_.set_faults(**fault)  # type: ignore[arg-type]
        assert_login_failed_page(await callback(browser, pending_login))
    expired = with_expiry(cookie, -1)
    assert_retry_later(await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": expired}))
    idp_.clear_faults()
    answer = await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": expired})
    assert answer.status == 200  # the session survived the outage
    assert proxy_errors() == []


# --- garbage from the token endpoint (a fake one; everything else is real) ---------------


@dataclass
class FakeIdP:
    """A token endpoint that answers whatever the test sets; nothing else."""

    server: TestServer
    answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
    calls: int = 0

    @property
    def issuer(self) -> str:
        return str(self.server.make_url("/auth/realms/fake"))


@pytest.fixture
async def fake_idp(aiohttp_server: ServerFactory) -> FakeIdP:
    app = web.Application()
    holder: list[FakeIdP] = []

    async def token(request: web.Request) -> web.Response:
        await request.read()
        fake = holder[0]
        fake.calls += 1
        status, content_type, body = fake.answer
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app.router.add_post("/auth/realms/fake/protocol/openid-connect/token", token)
    fake = FakeIdP(await aiohttp_server(app))
    holder.append(fake)
    return fake


def token_json(**fields: object) -> tuple[int, str, bytes]:
    body = {"access_token": "new.access.token", "token_type": "Bearer", "expires_in": 300}
    body.update(fields)
    return 200, "application/json", json.dumps(body).encode()


GARBAGE: dict[str, tuple[int, str, bytes]] = {
    "html-200": (200, "text/html", b"<html><body>Welcome</body></html>"),
    "empty-200": (200, "application/json", b""),
    "not-utf8-200": (200, "application/json", b'\xff\xfe{"access_token": "\xc3("}'),
    "json-array": (200, "application/json", b'["access_token"]'),
    "json-nested-100k-deep": (200, "application/json", b"[" * 100_000 + b"]" * 100_000),
    "over-1-mib": (200, "application/json", b'{"a": "' + b"x" * (1 << 20) + b'"}'),
    "no-access-token": token_json(access_token=None),
    "access-token-a-number": token_json(access_token=5),
    "token-type-mac": token_json(token_type="mac"),
    "html-400": (400, "text/html", b"<html>Bad Request</html>"),
    "error-not-a-string": (400, "application/json", b'{"error": ["invalid_grant"]}'),
    "html-502": (502, "text/html", b"<html>Bad Gateway</html>"),
    # JSON that parses, from an IdP gone wrong: none of it is a usable token response
    "expires-in-infinite": (200, "application/json", b'{"access_token": "a", "expires_in": 1e400}'),
    "expires-in-nan": (200, "application/json", b'{"access_token": "a", "expires_in": NaN}'),
    "expires-in-negative": token_json(expires_in=-1e300),
    "access-token-crlf": token_json(access_token="a.b.c\r\nX-Injected: 1"),
    "access-token-nul": token_json(access_token="a.b\x00c"),
    "access-token-lone-surrogate": (200, "application/json", b'{"access_token": "a.b\\ud800c"}'),
    "scope-lone-surrogate": (200, "application/json", b'{"access_token": "a", "scope": "\\udcff"}'),
}  # fmt: skip


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
async def test_token_endpoint_garbage_fails_the_login_with_a_page_and_keeps_sessions(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    fake_idp: FakeIdP,
    proxy_errors: Callable[[], list[str]],
    garbage: str,
) -> None:
    public_url = await oauth_proxy(aiohttp_server, upstream, fake_idp.issuer, free_port())
    fake_idp.answer = GARBAGE[garbage]
    async with ScriptedBrowser() as browser:
        status, headers, _, _ = await browser.request(
            "GET", f"{public_url}/oauth2/start?rd=/v2/x", headers=NAVIGATION
        )
        assert status == 302
        state = re.search(r"[?&]state=([^&]+)", headers["Location"])
        assert state is not None
        answer = await callback(
            browser, f"{public_url}/oauth2/callback?state={state.group(1)}&code=c0de"
        )
        assert_login_failed_page(answer)  # login outcome "idp_unavailable"
        assert not as_jar(answer.set_cookies)  # no session from an unusable answer
    # A session due for refresh meets the same answer: its current token is used while
    # valid, then 503; the session is never lost to an IdP gone wrong.
    cookie = sealed_cookie(TokenSet("old.access.token", "refresh-1", time.time() + 10, 4e9))
    for path in ("/v2/a", "/oauth2/auth"):
        answer = await fetch(f"{public_url}{path}", headers={**JSON, "Cookie": cookie})
        assert answer.status in (200, 202), (path, answer)
        assert answer.set_cookies == []
    expired = with_expiry(cookie, -1)
    for path in ("/v2/a", "/oauth2/auth"):
        assert_retry_later(await fetch(f"{public_url}{path}", headers={**JSON, "Cookie": expired}))
    assert fake_idp.calls >= 2
    assert proxy_errors() == []


def unsigned_jwt(claims: bytes) -> str:
    """A JWT-shaped access token with these raw claim bytes (the proxy never verifies it)."""
    parts = (b'{"alg":"RS256","typ":"JWT"}', claims, b"signature")
    return ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in parts)


async def test_unreadable_subject_claim_is_ignored_not_an_error(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    fake_idp: FakeIdP,
    proxy_errors: Callable[[], list[str]],
) -> None:
    """The subject is read from the access token unverified, for display and logs only; a
    claim that is no text (a lone surrogate from a JSON escape) must not break the login."""
    public_url = await oauth_proxy(aiohttp_server, upstream, fake_idp.issuer, free_port())
    fake_idp.answer = token_json(access_token=unsigned_jwt(b'{"sub": "\\ud800"}'))
    async with ScriptedBrowser() as browser:
        status, headers, _, _ = await browser.request(
            "GET", f"{public_url}/oauth2/start?rd=/v2/x", headers=NAVIGATION
        )
        state = re.search(r"[?&]state=([^&]+)", headers["Location"])
        assert state is not None
        answer = await callback(
            browser, f"{public_url}/oauth2/callback?state={state.group(1)}&code=c0de"
        )
        assert answer.status == 302, answer
        status, _, _, _ = await browser.request("GET", f"{public_url}/v2/a", headers=JSON)
        assert status == 200
        status, _, _, _ = await browser.request("GET", f"{public_url}/oauth2/userinfo")
        assert status == 200
    assert proxy_errors() == []


async def test_invalid_grant_ends_the_session(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    fake_idp: FakeIdP,
    proxy_errors: Callable[[], list[str]],
) -> None:
    public_url = await oauth_proxy(aiohttp_server, upstream, fake_idp.issuer, free_port())
    fake_idp.answer = (400, "application/json", b'{"error": "invalid_grant"}')
    expired = sealed_cookie(TokenSet("old.access.token", "refresh-1", time.time() - 1, 4e9))
    answer = await fetch(f"{public_url}/v2/a", headers={**JSON, "Cookie": expired})
    assert answer.status == 401
    assert json.loads(answer.body)["error"] == "unauthenticated"
    assert any("Max-Age=0" in c for c in answer.set_cookies)
    assert proxy_errors() == []


async def test_non_rotating_idp_with_short_lived_tokens_does_not_loop(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    fake_idp: FakeIdP,
    proxy_errors: Callable[[], list[str]],
) -> None:
    """An IdP that keeps the refresh token (none in its answer: RFC 6749 §6 allows it) and
    issues access tokens that live under GRACE_MIN_VALIDITY (5 s): a second request with
    the pre-refresh cookie (another tab) finds the grace copy too short-lived, refreshes
    it with the same refresh token, finds the same grace copy, and so on."""
    public_url = await oauth_proxy(aiohttp_server, upstream, fake_idp.issuer, free_port())
    fake_idp.answer = token_json(expires_in=2)
    old = sealed_cookie(TokenSet("old.access.token", "refresh-1", time.time() - 1, 4e9))
    for path in ("/v2/first", "/v2/second-tab", "/oauth2/auth"):
        answer = await fetch(f"{public_url}{path}", headers={**JSON, "Cookie": old})
        assert answer.status in (200, 202), (path, answer)
    assert proxy_errors() == []


# --- the upstream, down, slow, broken -----------------------------------------------------


@dataclass
class Recorder:
    events: list[str] = field(default_factory=list)

    def has(self, event: str) -> bool:
        return event in self.events


def fault_upstream(recorder: Recorder) -> web.Application:
    """Upstream behaviours the proxy must survive. Handlers never raise (so that any error
    logged during a test is the proxy's), they record what happened instead."""

    async def huge_header(request: web.Request) -> web.Response:
        return web.Response(text="{}", headers={"X-Big": "h" * int(request.query["bytes"])})

    async def many_headers(request: web.Request) -> web.Response:
        count = int(request.query["count"])
        return web.Response(text="{}", headers={f"X-H{i}": "v" for i in range(count)})

    async def reset_mid_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if request.query.get("length"):
            response.content_length = int(request.query["length"])
        await response.prepare(request)
        await response.write(b"r" * 20_000)
        await asyncio.sleep(0.05)
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # RST, not FIN
        recorder.events.append("reset")
        return response

    async def stall_mid_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 2_000
        await response.prepare(request)
        await response.write(b"s" * 1_000)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
        return response

    async def not_http(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        transport.close()
        return web.Response()

    async def slow_headers(request: web.Request) -> web.Response:
        recorder.events.append("slow:started")
        try:
            await asyncio.sleep(float(request.query.get("delay", "5")))
        except asyncio.CancelledError:
            recorder.events.append("slow:cancelled")
            raise
        recorder.events.append("slow:answered")
        return web.json_response({"late": True})

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        recorder.events.append("stream:started")
        try:
            for _ in range(200):
                await response.write(b"s" * 65536)
                await asyncio.sleep(0.02)
        except (asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
            recorder.events.append("stream:stopped")
            raise
        recorder.events.append("stream:complete")
        return response

    async def sink(request: web.Request) -> web.Response:
        recorder.events.append("sink:started")
        received = 0
        try:
            async for chunk in request.content.iter_chunked(65536):
                received += len(chunk)
        except (asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
            recorder.events.append("sink:stopped")
            raise
        recorder.events.append(f"sink:complete:{received}")
        return web.json_response({"received": received})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/huge-header", huge_header)
    app.router.add_get("/many-headers", many_headers)
    app.router.add_get("/reset", reset_mid_body)
    app.router.add_get("/stall", stall_mid_body)
    app.router.add_get("/not-http", not_http)
    app.router.add_get("/slow", slow_headers)
    app.router.add_get("/stream", slow_stream)
    app.router.add_post("/sink", sink)
    app.router.add_get("/ok", ok)
    return app


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@dataclass
class FaultyUpstream:
    server: TestServer
    recorder: Recorder

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def faulty_upstream(aiohttp_server: ServerFactory) -> FaultyUpstream:
    recorder = Recorder()
    return FaultyUpstream(await aiohttp_server(fault_upstream(recorder)), recorder)


async def pat_proxy(make_proxy: ProxyFactory, upstream: FaultyUpstream, **env: str) -> str:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__URL": upstream.url, **env})
    return str(proxy.make_url("")).rstrip("/")


async def test_upstream_refusing_connections_is_502(
    make_proxy: ProxyFactory, proxy_errors: Callable[[], list[str]]
) -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        proxy = await make_proxy(
            {"SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{bound.getsockname()[1]}"}
        )
        for method in ("GET", "POST"):
            answer = await fetch(str(proxy.make_url("/v2/a")), method)
            assert answer.status == 502
            assert json.loads(answer.body)["error"] == "bad_gateway"
    assert proxy_errors() == []


async def test_upstream_slower_than_read_timeout_is_504(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream, SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT="0.5")
    answer = await fetch(f"{url}/slow?delay=5")
    assert answer.status == 504
    assert json.loads(answer.body)["error"] == "gateway_timeout"
    assert answer.seconds < 3
    assert proxy_errors() == []


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
async def test_upstream_reset_mid_body_never_looks_complete(
    make_proxy: ProxyFactory,
    faulty_upstream: FaultyUpstream,
    proxy_errors: Callable[[], list[str]],
    length: bool,
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{url}/reset{'?length=1000000' if length else ''}") as resp:
            assert resp.status == 200  # the headers were out before the reset
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert faulty_upstream.recorder.has("reset")
    assert proxy_errors() == []


async def test_upstream_reset_within_a_small_answer_is_502(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    # A small answer is read whole before anything is sent, so a short one is refused
    # with a proper error instead of a cut connection.
    url = await pat_proxy(make_proxy, faulty_upstream)
    answer = await fetch(f"{url}/reset?length=30000")
    assert answer.status == 502
    assert json.loads(answer.body)["error"] == "bad_gateway"
    assert faulty_upstream.recorder.has("reset")
    assert proxy_errors() == []


async def test_upstream_stalling_within_a_small_answer_is_504(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream, SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT="0.5")
    answer = await fetch(f"{url}/stall")
    assert answer.status == 504
    assert json.loads(answer.body)["error"] == "gateway_timeout"
    assert answer.seconds < 3
    assert proxy_errors() == []


async def test_upstream_that_does_not_speak_http_is_502(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream)
    answer = await fetch(f"{url}/not-http")
    assert answer.status == 502
    assert json.loads(answer.body)["error"] == "bad_gateway"
    assert proxy_errors() == []


@pytest.mark.parametrize(
    "path",
    ["/huge-header?bytes=9000", "/huge-header?bytes=200000", "/many-headers?count=500"],
    ids=["9000-byte-header", "200-kB-header", "500-headers"],
)
async def test_upstream_headers_beyond_client_limits_are_502(
    make_proxy: ProxyFactory,
    faulty_upstream: FaultyUpstream,
    proxy_errors: Callable[[], list[str]],
    path: str,
) -> None:
    """aiohttp's client reads at most 8190 bytes per header line and 128 header fields."""
    url = await pat_proxy(make_proxy, faulty_upstream)
    answer = await fetch(f"{url}{path}")
    assert answer.status == 502
    assert json.loads(answer.body)["error"] == "bad_gateway"
    assert (await fetch(f"{url}/ok")).status == 200  # and the next request is fine
    assert proxy_errors() == []


# --- clients that go away ----------------------------------------------------------------


def upstream_connections(port: int) -> int:
    """Open connections of this process (the in-process proxy) to the upstream's port."""
    return sum(
        1
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


@dataclass
class Baseline:
    tasks: int
    connections: int


async def baseline(url: str, port: int) -> Baseline:
    """After one complete request (so pools hold what they hold at rest)."""
    assert (await fetch(f"{url}/ok", headers={"Connection": "close"})).status == 200
    await asyncio.sleep(0.1)
    return Baseline(len(asyncio.all_tasks()), upstream_connections(port))


async def settles_to(before: Baseline, port: int, seconds: float = 3.0) -> Baseline:
    deadline = time.monotonic() + seconds
    while True:
        now = Baseline(len(asyncio.all_tasks()), upstream_connections(port))
        if (now.tasks <= before.tasks and now.connections <= before.connections) or (
            time.monotonic() > deadline
        ):
            return now
        await asyncio.sleep(0.05)


async def raw_connection(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def test_client_abort_mid_download_cancels_the_upstream_response(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream)
    port = faulty_upstream.server.port
    assert port is not None
    before = await baseline(url, port)
    reader, writer = await raw_connection(url)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(200_000)  # the download is under way
    abort(writer)
    after = await settles_to(before, port)
    assert (after.tasks, after.connections) <= (before.tasks, before.connections), after
    assert faulty_upstream.recorder.has("stream:stopped")
    assert not faulty_upstream.recorder.has("stream:complete")
    assert proxy_errors() == []


async def test_client_abort_mid_upload_cancels_the_upstream_request(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream)
    port = faulty_upstream.server.port
    assert port is not None
    before = await baseline(url, port)
    _, writer = await raw_connection(url)
    writer.write(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    for _ in range(16):
        writer.write(b"u" * 65536)
        await writer.drain()
    await asyncio.sleep(0.2)  # the upstream is receiving
    assert faulty_upstream.recorder.has("sink:started")
    abort(writer)
    after = await settles_to(before, port)
    assert (after.tasks, after.connections) <= (before.tasks, before.connections), after
    assert faulty_upstream.recorder.has("sink:stopped")
    assert not any(e.startswith("sink:complete") for e in faulty_upstream.recorder.events)
    assert proxy_errors() == []


async def test_client_abort_before_the_upstream_answers_cancels_the_upstream_request(
    make_proxy: ProxyFactory, faulty_upstream: FaultyUpstream, proxy_errors: Callable[[], list[str]]
) -> None:
    url = await pat_proxy(make_proxy, faulty_upstream)  # read_timeout: 60 s
    port = faulty_upstream.server.port
    assert port is not None
    before = await baseline(url, port)
    _, writer = await raw_connection(url)
    writer.write(b"GET /slow?delay=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.3)
    assert faulty_upstream.recorder.has("slow:started")
    abort(writer)
    after = await settles_to(before, port)
    assert (after.tasks, after.connections) <= (before.tasks, before.connections), after
    assert faulty_upstream.recorder.has("slow:cancelled")
    assert proxy_errors() == []


# --- Redis down with the Redis store -----------------------------------------------------


@pytest.fixture
async def redis_session(redis_server: RedisServer) -> str:
    """A session cookie whose token set is stored in this Redis."""
    client = connect(redis_server.url, timeout=1)
    store = redis_store(client, KeyRing([KEY]), COOKIE, False, 30 * 86400)
    tokens = TokenSet("redis.access.token", "redis-refresh", time.time() + 3600, 4e9, "all", "r")
    jar = as_jar(await store.save(tokens, time.time(), {}, new_session=True))
    await client.aclose()
    for value in jar.values():
        WATCH.add(value)
    return cookie_header(jar)


async def test_redis_down_is_503_with_retry_after_and_sessions_survive(
    aiohttp_server: ServerFactory,
    upstream: TestServer,
    fake_idp: FakeIdP,
    redis_server: RedisServer,
    redis_session: str,
    proxy_errors: Callable[[], list[str]],
) -> None:
    public_url = await oauth_proxy(
        aiohttp_server,
        upstream,
        fake_idp.issuer,
        free_port(),
        SIPGATE_PROXY_SESSION__STORE="redis",
        SIPGATE_PROXY_SESSION__REDIS_URL=redis_server.url,
    )
    fake_idp.answer = token_json(refresh_token="r2", refresh_expires_in=3600)
    with_session = {**JSON, "Cookie": redis_session}
    assert (await fetch(f"{public_url}/v2/a", headers=with_session)).status == 200
    # a login attempt that will reach its callback while Redis is away
    async with ScriptedBrowser() as browser:
        status, headers, _, _ = await browser.request(
            "GET", f"{public_url}/oauth2/start?rd=/v2/x", headers=NAVIGATION
        )
        assert status == 302
        state = re.search(r"[?&]state=([^&]+)", headers["Location"])
        assert state is not None
        redis_server.stop()
        for method, path in (
            ("GET", "/v2/a"),
            ("POST", "/v2/sms"),
            ("GET", "/oauth2/userinfo"),
            ("GET", "/oauth2/auth"),
            ("POST", "/oauth2/sign_out"),
        ):
            answer = await fetch(f"{public_url}{path}", method, headers=with_session)
            assert_retry_later(answer, "session_store_unavailable")
        answer = await callback(
            browser, f"{public_url}/oauth2/callback?state={state.group(1)}&code=c0de"
        )
        assert answer.status == 503, answer
        assert int(answer.headers["Retry-After"]) > 0
    assert (await fetch(f"{public_url}/readyz")).status == 503
    # No session cookie at all: nothing to look up, so Redis is not needed for the 401.
    assert (await fetch(f"{public_url}/v2/a", headers=JSON)).status == 401
    redis_server.start()
    assert (await fetch(f"{public_url}/readyz")).status == 200
    assert (await fetch(f"{public_url}/v2/a", headers=with_session)).status == 200
    assert proxy_errors() == []

"""sipgate.io webhooks (issue 26): a sender signs events as sipgate does, the real proxy
verifies them and forwards them to a small app answering XML; forged, oversized and
misdirected requests never reach the app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxy import config
from proxy.crypto.keys import generate_key
from proxy.errors import WebhookInFlight
from proxy.webhooks.redis_memory import RedisMemory
from proxy.webhooks.replay import Answer
from proxy.webhooks.verify import built_in_keys
from tests.conftest import PAT_ENV, ProxyFactory
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer
from tests.support.sessions import connect

# sha256 of sipgate's key as DER SubjectPublicKeyInfo (sipgateio-node, pushapi-request-verifier)
SIPGATE_KEY_SHA256 = "893cfd6caad92efc277a5977daec63dee1597223b1df5b2bf69ef56cd92305b3"
XML = b'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="http://x/a"><Dial><Number>4915790000000</Number></Dial></Response>'
FROM, TO = "4915791234567", "4921100000001"
Poster = Callable[..., Awaitable["Reply"]]


@dataclass
class Reply:
    status: int
    content_type: str | None
    body: bytes


@dataclass
class App:
    """The legacy app: records every request, answers XML (or stalls, when told)."""

    received: list[dict[str, Any]] = field(default_factory=list)
    stall: bool = False
    fail_with: int | None = None  # the next answer's status, once

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            {"raw_path": request.raw_path, "headers": request.headers, "body": body}
        )
        if self.stall:
            await asyncio.Event().wait()  # never answers: the proxy's timeout must end it
        if self.fail_with is not None:
            status, self.fail_with = self.fail_with, None
            return web.Response(status=status, text="busy")
        return web.Response(body=XML, headers={"Content-Type": "application/xml"})


def event(name: str = "newCall", call_id: str = "a1b2c3d4e5f6", **extra: str) -> bytes:
    fields = [("event", name), ("direction", "in"), ("from", FROM), ("to", TO)]
    fields += [("callId", call_id), ("origCallId", call_id), ("xcid", "x" + call_id)]
    fields += [("user[]", "Alice"), ("userId[]", "w0"), ("fullUserId[]", "1234567w0")]
    return urlencode(fields + list(extra.items())).encode()


def sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def sipgate_headers(signature: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        "User-Agent": "sipgate.io",
    }
    if signature is not None:
        headers["X-Sipgate-Signature"] = signature
    return headers


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def keys_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "keys.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
async def app(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[App, TestServer]:
    recorder = App()
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", recorder.handle)
    return recorder, await aiohttp_server(application)


def webhook_env(keys_file: Path, forward_to: str, **more: str) -> dict[str, str]:
    env = {
        "SIPGATE_PROXY_WEBHOOKS__ENABLED": "true",
        "SIPGATE_PROXY_WEBHOOKS__FORWARD_TO": forward_to,
        "SIPGATE_PROXY_WEBHOOKS__PUBLIC_KEYS_FILE": str(keys_file),
        # PAT mode, and only 127.0.0.1 may use the API: webhooks are not the API
        "SIPGATE_PROXY_AUTH__ALLOWED_CLIENT_NETWORKS": "[127.0.0.1/32]",
    }
    return env | {f"SIPGATE_PROXY_WEBHOOKS__{k.upper()}": v for k, v in more.items()}


async def post(
    url: str, body: bytes, headers: dict[str, str], source: str = "127.0.0.1", chunked: bool = False
) -> Reply:
    """As sipgate posts; ``chunked``: the body without a Content-Length, in pieces."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    data: Any = pieces(body) if chunked else io.BytesIO(body)
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.post(url, data=data, headers=headers) as resp:
            return Reply(resp.status, resp.headers.get("Content-Type"), await resp.read())


@pytest.fixture
async def proxy(
    make_proxy: ProxyFactory, keys_file: Path, app: tuple[App, TestServer]
) -> TestServer:
    forward_to = str(app[1].make_url("/sipgate"))
    return await make_proxy(webhook_env(keys_file, forward_to))


async def pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 65536):
        yield body[start : start + 65536]


def url(proxy: TestServer, rest: str = "/calls") -> str:
    return str(proxy.make_url("/sipgate/webhooks" + rest))


async def test_a_signed_event_reaches_the_app_byte_for_byte_and_its_xml_comes_back(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    body, recorder = event(), app[0]
    signature = sign(key, body)
    # sipgate posts from the internet: an address outside allowed_client_networks
    reply = await post(
        url(proxy, "/calls?tenant=a%20b"), body, sipgate_headers(signature), "127.0.0.2"
    )
    assert (reply.status, reply.content_type, reply.body) == (200, "application/xml", XML)
    [received] = recorder.received
    assert received["raw_path"] == "/sipgate/calls?tenant=a%20b"
    assert received["body"] == body
    headers = received["headers"]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded; charset=UTF-8"
    assert headers["X-Sipgate-Signature"] == signature
    assert headers["X-Sipgate-Event"] == "newCall"
    assert headers["X-Sipgate-Call-Id"] == "a1b2c3d4e5f6"
    assert "Authorization" not in headers  # never the account's credential


async def test_forged_requests_are_refused_before_the_app(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    body = event()
    changed = body[:-1] + bytes([body[-1] ^ 1])
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "one byte changed": (changed, sign(key, body)),
        "signature of another body": (body, sign(key, event(call_id="other"))),
        "no header": (body, None),
        "empty header": (body, ""),
        "not base64": (body, "not*base64!"),
        "wrong key": (body, sign(other_key, body)),
    }
    for case, (sent, signature) in cases.items():
        reply = await post(url(proxy), sent, sipgate_headers(signature))
        assert reply.status == 401, case
        assert (reply.content_type or "").startswith("application/json"), case
        assert b'"bad_signature"' in reply.body, case
    big = event(pad="x" * 2 * 1024 * 1024)
    for chunked in (False, True):  # declared too long, and found too long while read
        reply = await post(url(proxy), big, sipgate_headers(sign(key, big)), chunked=chunked)
        assert reply.status == 413
    async with aiohttp.ClientSession() as client, client.get(url(proxy)) as resp:
        assert (resp.status, resp.headers["Allow"]) == (405, "POST")
    assert app[0].received == []


async def test_only_the_canonical_webhook_path_escapes_the_client_networks(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    """From 127.0.0.2 (outside allowed_client_networks), no spelling of another path is
    taken for the webhook path: each gets the API's 403 or a 400, never the upstream."""
    body = event()
    signed = sipgate_headers(sign(key, body))
    tricks = [
        "/sipgate/webhooks/../../v2/account",
        "/sipgate/webhooks/%2e%2e/%2e%2e/v2/account",
        "/sipgate/webhooks%2f..%2f..%2fv2/account",
        "/sipgate/webhooks/..%2f..%2fv2/account",
        "/SIPGATE/webhooks/calls",
        "/sipgate/webhooksX/calls",
        "/v2/account?/sipgate/webhooks/",
        # dot segments that lead to the webhook path are not normalised into it
        "/x/../sipgate/webhooks/calls",
        "/sipgate/webhooks/./calls",
        "/sipgate/webhooks/x/../calls",
    ]
    for target in tricks:
        status, answer = await raw_post(port(proxy), target, body, signed, "127.0.0.2")
        assert status in (400, 403), target
        assert b"client_not_allowed" in answer or b"bad_request" in answer, target
    assert app[0].received == []


def port(server: TestServer) -> int:
    assert server.port is not None
    return server.port


async def raw_post(
    port: int, target: str, body: bytes, headers: dict[str, str], source: str
) -> tuple[int, bytes]:
    """A request target exactly as written (aiohttp's client would normalise it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    lines = [f"POST {target} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode() + body)
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


async def test_an_event_delivered_again_gets_the_remembered_answer(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    body = event(name="hangup", cause="normalClearing")
    headers = sipgate_headers(sign(key, body))
    first = await post(url(proxy), body, headers)
    again = await asyncio.gather(*(post(url(proxy), body, headers) for _ in range(5)))
    assert len(app[0].received) == 1
    assert all(reply == first for reply in again)
    assert first.status == 200
    metrics = await get_text(str(proxy.make_url("/metrics")))
    assert 'sipgate_proxy_webhooks_total{event="hangup",outcome="delivered"} 1.0' in metrics
    assert 'sipgate_proxy_webhooks_total{event="hangup",outcome="replayed"} 5.0' in metrics


async def test_a_repeated_dtmf_reaches_the_app_each_time(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    """A dtmf event has no timestamp: a caller pressing 1, hearing the menu again and
    pressing 1 again sends the same body twice, and the app's menu must see both."""
    body = urlencode([("event", "dtmf"), ("callId", "c1"), ("originalCallId", "c1"), ("dtmf", "1")])
    headers = sipgate_headers(sign(key, body.encode()))
    for _ in range(2):
        assert (await post(url(proxy), body.encode(), headers)).status == 200
    assert len(app[0].received) == 2


async def test_an_apps_failure_is_not_remembered(
    proxy: TestServer, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    body = event(call_id="busy")
    headers = sipgate_headers(sign(key, body))
    app[0].fail_with = 503
    assert (await post(url(proxy), body, headers)).status == 503
    retried = await post(url(proxy), body, headers)  # sipgate's retry reaches the app
    assert (retried.status, retried.body) == (200, XML)
    assert len(app[0].received) == 2
    assert (await post(url(proxy), body, headers)).body == XML  # this one is remembered
    assert len(app[0].received) == 2


async def test_a_trickled_body_is_cut_off_within_the_timeout(
    make_proxy: ProxyFactory, keys_file: Path, app: tuple[App, TestServer]
) -> None:
    """The webhook path faces the internet: a body sent a byte at a time must not hold
    its connection (and a place under server.max_connections) for good."""
    slow = await make_proxy(webhook_env(keys_file, str(app[1].make_url("/x")), timeout="0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port(slow))
    head = ["POST /sipgate/webhooks/calls HTTP/1.1", "Host: localhost", "Content-Length: 1000"]
    writer.write("\r\n".join([*head, "", ""]).encode() + b"event=")
    started = asyncio.get_running_loop().time()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    waited = asyncio.get_running_loop().time() - started
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"webhook_body_timeout"' in answer
    assert 0.4 < waited < 5
    assert app[0].received == []


async def get_text(target: str) -> str:
    async with aiohttp.ClientSession() as client, client.get(target) as resp:
        return await resp.text()


async def test_two_proxies_on_one_redis_deliver_an_event_once(
    make_proxy: ProxyFactory,
    keys_file: Path,
    app: tuple[App, TestServer],
    key: rsa.RSAPrivateKey,
    redis_server: RedisServer,
) -> None:
    env = webhook_env(keys_file, str(app[1].make_url("/sipgate")))
    env |= {
        "SIPGATE_PROXY_SESSION__STORE": "redis",
        "SIPGATE_PROXY_SESSION__REDIS_URL": redis_server.url,
    }
    proxies = [await make_proxy(env), await make_proxy(env)]
    bodies = [event(call_id=f"call{n}") for n in range(3)]
    sends = [
        post(url(proxies[i % 2]), body, sipgate_headers(sign(key, body)))
        for body in bodies
        for i in range(8)
    ]  # each event 8 times, half to each proxy, all at once
    replies = await asyncio.gather(*sends)
    assert sorted(r["headers"]["X-Sipgate-Call-Id"] for r in app[0].received) == [
        "call0", "call1", "call2"
    ]  # fmt: skip
    assert all(reply == Reply(200, "application/xml", XML) for reply in replies)


async def test_a_replica_whose_claim_expired_never_clears_anothers(
    redis_server: RedisServer,
) -> None:
    """Review 3: replica A's pending mark expires while its app is slow; B claims the
    event and delivers. A's release (its delivery failed) or keep must not touch B's
    mark, or a third copy would reach the app while B is still delivering."""
    client = connect(redis_server.url, timeout=0.5)
    try:
        a, b, c = (RedisMemory(client, window=60, wait=0.1) for _ in range(3))
        digest = hashlib.sha256(b"event=newCall&callId=slow").digest()
        assert await a.claim(digest) is None  # A delivers; its mark lives 1.1 s
        await asyncio.sleep(1.3)
        assert await b.claim(digest) is None  # expired: B delivers
        await a.release(digest)  # A's delivery failed late
        with pytest.raises(WebhookInFlight):
            await c.claim(digest)  # B's mark still holds the event back
        answer = Answer(200, "application/xml", XML)
        await a.keep(digest, Answer(500, None, b"stale"))  # nor may A's answer replace it
        with pytest.raises(WebhookInFlight):
            await c.claim(digest)
        await b.keep(digest, answer)
        assert await c.claim(digest) == answer
    finally:
        await client.aclose()


async def test_source_networks_and_a_trusted_proxys_forwarded_for(
    make_proxy: ProxyFactory, keys_file: Path, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    env = webhook_env(
        keys_file,
        str(app[1].make_url("/sipgate")),
        source_networks="[127.0.0.3/32, 203.0.113.7/32]",
        trusted_proxies="[127.0.0.4/32]",
    )
    proxy = await make_proxy(env)
    cases = [  # (peer, X-Forwarded-For, status)
        ("127.0.0.3", None, 200),
        ("127.0.0.2", None, 403),
        ("127.0.0.4", "203.0.113.7", 200),  # the trusted proxy names the client
        ("127.0.0.4", "203.0.113.7, 127.0.0.4", 200),  # through it twice
        ("127.0.0.4", "198.51.100.1", 403),
        ("127.0.0.4", "203.0.113.7, 198.51.100.1", 403),  # the client wrote the first one
        ("127.0.0.4", None, 403),  # the proxy itself is no source
        ("127.0.0.2", "203.0.113.7", 403),  # an untrusted peer's header is ignored
        ("127.0.0.2", "127.0.0.3", 403),
    ]
    for n, (peer, forwarded_for, expected) in enumerate(cases):
        body = event(call_id=f"source{n}")
        headers = sipgate_headers(sign(key, body))
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        reply = await post(url(proxy), body, headers, peer)
        assert reply.status == expected, (peer, forwarded_for)
        if expected == 403:
            assert b'"source_refused"' in reply.body
    assert len(app[0].received) == 3


async def test_app_down_is_502_and_a_slow_app_504(
    make_proxy: ProxyFactory, keys_file: Path, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    down = await make_proxy(webhook_env(keys_file, f"http://127.0.0.1:{free_port()}/x"))
    body = event(call_id="down")
    headers = sipgate_headers(sign(key, body))
    reply = await post(url(down), body, headers)
    assert (reply.status, b'"app_unreachable"' in reply.body) == (502, True)
    app[0].stall = True
    slow = await make_proxy(webhook_env(keys_file, str(app[1].make_url("/x")), timeout="0.3"))
    reply = await post(url(slow), body, headers)
    assert (reply.status, b'"app_timeout"' in reply.body) == (504, True)
    # neither failure is remembered: sipgate's retry reaches the app
    app[0].stall = False
    assert (await post(url(slow), body, headers)).status == 200


async def test_the_access_log_names_event_and_call_never_the_numbers(
    proxy: TestServer, key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    body = event(name="answer", call_id="logged1", answeringNumber=TO)
    with caplog.at_level(logging.INFO):
        await post(url(proxy), body, sipgate_headers(sign(key, body)))
        await post(url(proxy), body, sipgate_headers("AAAA"))
    [access] = [
        r for r in caplog.records if r.name == "proxy.access" and r.__dict__["status"] == 200
    ]
    fields = access.__dict__
    assert (fields["event"], fields["call_id"], fields["webhook"]) == (
        "answer", "logged1", "delivered"
    )  # fmt: skip
    [refused] = [r for r in caplog.records if r.name == "proxy.webhooks"]
    assert refused.__dict__["peer"] == "127.0.0.1"
    assert "wrong signature" in refused.getMessage()
    for record in caplog.records:
        text = str(record.__dict__)
        assert FROM not in text
        assert TO not in text


def test_the_built_in_key_is_sipgates() -> None:
    [key] = built_in_keys()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.key_size == 4096
    assert hashlib.sha256(der).hexdigest() == SIPGATE_KEY_SHA256


async def test_the_built_in_key_is_used_without_a_keys_file(
    make_proxy: ProxyFactory, app: tuple[App, TestServer], key: rsa.RSAPrivateKey
) -> None:
    env = {
        "SIPGATE_PROXY_WEBHOOKS__ENABLED": "true",
        "SIPGATE_PROXY_WEBHOOKS__FORWARD_TO": str(app[1].make_url("/")),
    }
    proxy = await make_proxy(env)
    body = event()
    assert (await post(url(proxy), body, sipgate_headers(sign(key, body)))).status == 401


def test_a_keys_file_may_hold_several_keys_and_sipgates_mislabelled_one(tmp_path: Path) -> None:
    own = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = own.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    [sipgate] = built_in_keys()
    spki = sipgate.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "keys.pem"
    path.write_bytes(pem + spki.replace(b"PUBLIC KEY", b"CERTIFICATE"))  # as fastagi.pub
    settings = config.load(None, {**PAT_ENV, **webhook_env(path, "http://127.0.0.1:3000")})
    assert settings.webhooks.public_keys_file == path


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("forward_to", "ftp://app/x", "must be an http(s) URL"),
        ("forward_to", "http://user:pw@app/x", "must not contain credentials"),
        ("path", "sipgate", "must match the pattern"),
        ("path", "/oauth2/hooks", "must not overlap the path /oauth2"),
        ("path", "/healthz", "must not overlap the path /healthz"),
        ("path", "/v2/hooks", "must not overlap the path /v2"),
        ("path", "/", "must match the pattern"),
        ("path", "/a/../b", "must not contain '.' or '..' segments"),
        ("public_keys_file", "/etc/hostname", "holds no PEM public key"),
        ("public_keys_file", "/nonexistent.pem", "cannot read"),
        ("max_body_size", "10", "must be at least 1024"),
    ],
)
def test_config_refuses_unusable_webhook_settings(key: str, value: str, message: str) -> None:
    env = {**PAT_ENV, **webhook_env(Path("/unused"), "http://127.0.0.1:3000")}
    env.pop("SIPGATE_PROXY_WEBHOOKS__PUBLIC_KEYS_FILE")
    env[f"SIPGATE_PROXY_WEBHOOKS__{key.upper()}"] = value
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env)
    assert any(p.key == f"webhooks.{key}" and message in p.message for p in err.value.problems)


def test_forward_to_is_required_when_enabled() -> None:
    env = {**PAT_ENV, "SIPGATE_PROXY_WEBHOOKS__ENABLED": "true"}
    with pytest.raises(config.ConfigError, match=r"webhooks\.forward_to: required"):
        config.load(None, env)


OAUTH2_ENV = {
    "SIPGATE_PROXY_AUTH__MODE": "oauth2",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "webhook-test-client",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "webhook-test-secret",
}


@pytest.mark.parametrize("mode", ["oauth2", "service"])
async def test_webhooks_need_no_session_in_the_login_modes(
    mode: str,
    make_proxy: ProxyFactory,
    keys_file: Path,
    app: tuple[App, TestServer],
    key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    env = {**OAUTH2_ENV, **webhook_env(keys_file, str(app[1].make_url("/sipgate")))}
    if mode == "service":
        env |= {
            "SIPGATE_PROXY_AUTH__MODE": "service",
            "SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": "[operator]",
            "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": str(tmp_path / "identity"),
            "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
        }
    proxy = await make_proxy(env)
    body = event(call_id=mode)
    reply = await post(url(proxy), body, sipgate_headers(sign(key, body)), "127.0.0.2")
    assert (reply.status, reply.body) == (200, XML)
    async with aiohttp.ClientSession() as client, client.get(proxy.make_url("/v2/account")) as resp:
        # the API still needs its login: a session (oauth2), the operator's (service)
        assert resp.status == {"oauth2": 401, "service": 503}[mode]

"""Client credentials and least privilege for the shared modes (issue 15): each app its
own PAT-shaped credential and only the calls it needs; the real PAT never leaves."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import posixpath
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from proxy import config
from proxy.auth.clients.paths import canonical_segments
from proxy.auth.clients.rate_limit import TokenBucket
from proxy.auth.clients.reload import WATCH_INTERVAL
from proxy.config.allow_rules import parse_rule
from proxy.config.client_credentials import new_client, token_sha256
from tests.conftest import PAT_ENV, ProxyFactory, require
from tests.support.idp import find_node
from tests.support.nginx import FRONT_SECRET, auth_request_site, nginx, nginx_available
from tests.support.processes import free_port, http_status, running
from tests.support.secrets import WATCH
from tests.support.upstream import RECEIVED

READER_ID, READER_TOKEN = "token-Rd0nly", str(uuid.uuid4())
SENDER_ID, SENDER_TOKEN = "token-Sms001", str(uuid.uuid4())
for _id, _token in ((READER_ID, READER_TOKEN), (SENDER_ID, SENDER_TOKEN)):
    WATCH.add(_token)  # no log line of the whole suite may hold them (test_log_hygiene)
    WATCH.add(base64.b64encode(f"{_id}:{_token}".encode()).decode())
REAL_PAT = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"]
FORWARD_AUTH = {
    "SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "true",
    "SIPGATE_PROXY_FORWARD_AUTH__SECRET": FRONT_SECRET,
}
FRONT = {"X-Sipgate-Forward-Auth-Secret": FRONT_SECRET}  # what the front proxy adds


def client(name: str, token_id: str, token: str, allow: list[str], **extra: Any) -> dict[str, Any]:
    entry = {"name": name, "token_id": token_id, "token_sha256": token_sha256(token)}
    return entry | {"allow": allow} | extra


READER = client("reader", READER_ID, READER_TOKEN, ["GET,HEAD /v2/history/**", "GET /v2/account"])
SENDER = client(
    "sender",
    SENDER_ID,
    SENDER_TOKEN,
    ["POST /v2/sessions/sms"],
    rate_limit={"requests": 3, "per": 60},
)


def basic(token_id: str, token: str) -> dict[str, str]:
    raw = base64.b64encode(f"{token_id}:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def clients_env(*clients: dict[str, Any], **auth: str) -> dict[str, str]:
    env = {"SIPGATE_PROXY_AUTH__CLIENTS": json.dumps(list(clients))}
    return env | {f"SIPGATE_PROXY_AUTH__{k.upper()}": v for k, v in auth.items()}


async def call(
    proxy: TestServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, str(proxy.make_url("")).rstrip("/") + path, headers=headers or {}
        ) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body, dict(resp.headers)


def received(upstream: TestServer) -> list[str]:
    app: web.Application = upstream.app
    seen: list[str] = app[RECEIVED]
    return seen.copy()


# --- the rules and the canonical path --------------------------------------------------------


def test_rules_match_one_segment_or_the_rest() -> None:
    rule = parse_rule("GET,HEAD /v2/history/**")
    assert rule.allows("GET", ("v2", "history", "h1"))
    assert rule.allows("HEAD", ("v2", "history", "h1", "x"))
    assert not rule.allows("GET", ("v2", "history"))  # ** is one segment or more
    assert not rule.allows("get", ("v2", "history", "h1"))  # methods are case-sensitive
    assert not rule.allows("POST", ("v2", "history", "h1"))
    one = parse_rule("GET /v2/*/balance")
    assert one.allows("GET", ("v2", "w0", "balance"))
    assert not one.allows("GET", ("v2", "w0", "x", "balance"))
    exact = parse_rule("GET /v2/account")
    assert not exact.allows("GET", ("v2", "account", "extra"))  # an extra segment


@pytest.mark.parametrize(
    "rule", ["GET", "/v2/x", "get /v2/x", "GET v2/x", "GET /v2/**/x", "GET /v2/a b", "GET,/x"]
)
def test_malformed_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError, match=r"'"):
        parse_rule(rule)


# Spellings of refused paths: none may be read as an allowed one by any reader.
REFUSED_SPELLINGS = [
    "/v2/history/../sessions/sms",
    "/v2/history/%2e%2e/sessions/sms",
    "/v2/history/%2E%2E/sessions/sms",
    "/v2/history/.%2e/sessions/sms",
    "/v2/history/%2e./sessions/sms",
    "/v2/history/..%2fsessions/sms",
    "/v2/history/..%2Fsessions/sms",
    "/v2/history%2f..%2fsessions/sms",
    "/v2/history/%252e%252e/sessions/sms",
    "/v2/history/%25252e/sessions/sms",
    "/v2/history/..\\sessions/sms",
    "/v2/history/..%5csessions/sms",
    "/v2/history/..%5Csessions/sms",
    "/v2/history\\..\\sessions\\sms",
    "/v2/history/./../sessions/sms",
    "/v2/./history/../sessions/sms",
    "/v2/history//../sessions/sms",
    "//v2/history/../sessions/sms",
    "/v2//history/x",
    "/v2/history/x/",
    "/v2/history/./x",
    "/v2/history/.",
    "/v2/history/..",
    "/v2/history/%2e",
    "/v2/history/x%2f..%2f..%2fsessions%2fsms",
    "/v2/history/x%00",
    "/v2/history/\x00x",
    "/v2/history/x\ty",
    "/v2/history/x y",
    "/v2/history/\u2025/sessions/sms",
    "/v2/history/\uff0e\uff0e/sessions/sms",
    "/v2/history/%c0%ae%c0%ae/sessions/sms",
    "/v2/account/..",
    "/v2/account/.",
    "/v2/account%2f",
    "/v2/sessions/sms",
    "/v2/account/extra",
    # found by review: path parameters, escapes that are none, encoded spaces
    "/v2/history/..;/sessions/sms",
    "/v2/history/.;/..;/sessions/sms",
    "/v2/history/x;/../../sessions/sms",
    "/v2/history/..%3b/sessions/sms",
    "/v2/history/%%32%65%%32%65/sessions/sms",
    "/v2/history/%%32%66sessions",
    "/v2/history/%u002e%u002e/sessions/sms",
    "/v2/history/..%20/sessions/sms",
    "/v2/history/x%",
    # found by review 3: a fragment in a forward-auth X-Original-URI (nginx passes the
    # raw target upstream, fragment and all)
    "/v2/history/x#/../../sessions/sms",
    "/v2/account#/../sessions/sms",
]


@pytest.mark.parametrize("path", REFUSED_SPELLINGS)
def test_no_spelling_of_a_refused_path_is_allowed(path: str) -> None:
    reader = [parse_rule(r) for r in READER["allow"]]
    segments = canonical_segments(path)
    assert segments is None or not any(r.allows("GET", segments) for r in reader), path


_PLAIN_PIECES = ["v2", "history", "account", "x", "2e", "32", "%41"]
_TRICKY_PIECES = [".", "..", "", "%2e", "%2E", "%2f", "%5c", "%25", "\\", "%", "%3", "%u002e"]
_SEGMENT_PIECES = st.sampled_from([*_PLAIN_PIECES, *_TRICKY_PIECES, ";", "%3b", "%20"])


@given(st.lists(st.lists(_SEGMENT_PIECES, max_size=3).map("".join), max_size=6))
def test_an_accepted_path_reads_the_same_to_every_reader(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    accepted = canonical_segments(path)
    if accepted is None:
        return
    decoded = unquote(unquote(path))
    # Decoding (even twice) adds no separator and no dot segment: what the rules saw
    # is what a decoding, normalising upstream sees.
    assert "\\" not in decoded
    assert ";" not in decoded
    assert decoded.count("/") == path.count("/")
    assert posixpath.normpath(decoded) == decoded
    assert tuple(decoded[1:].split("/")) == tuple(unquote(unquote(s)) for s in accepted)


def test_token_bucket_lets_a_burst_pass_then_says_when() -> None:
    now = [0.0]
    bucket = TokenBucket(3, 60, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [None, None, None]
    assert bucket.take() == 20  # one token every 20 s
    now[0] = 20.0
    assert bucket.take() is None


# --- configuration ---------------------------------------------------------------------------


def test_clients_load_and_bad_entries_are_named() -> None:
    env = {**PAT_ENV, **clients_env(READER, SENDER)}
    settings = config.load(None, env)
    assert [c.name for c in settings.clients] == ["reader", "sender"]
    bad = dict(READER, token_id="tok-1", allow=["get /x"])
    with pytest.raises(config.ConfigError) as err:
        config.load(None, {**PAT_ENV, **clients_env(bad, dict(READER, name="reader"))})
    text = "\n".join(str(p) for p in err.value.problems)
    assert "auth.clients.0.token_id" in text
    assert "auth.clients.0.allow" in text
    assert READER_TOKEN not in text


def test_two_clients_with_one_name_or_id_are_refused() -> None:
    twin = dict(SENDER, name="reader")
    with pytest.raises(config.ConfigError) as err:
        config.load(None, {**PAT_ENV, **clients_env(READER, twin)})
    assert "two clients share the name 'reader'" in str(err.value.problems[0])


def test_clients_come_from_a_file_too(tmp_path: Any) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps({"clients": [SENDER]}))
    env = {**PAT_ENV, **clients_env(READER), "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)}
    assert [c.name for c in config.load(None, env).clients] == ["reader", "sender"]
    path.write_text("- name: Not A Name\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env)
    assert "auth.clients_file.0.name" in str(err.value.problems[0])


def test_new_client_prints_an_entry_that_loads(tmp_path: Any) -> None:
    entry, token_id, token = new_client("billing", ["GET /v2/history/**"], ["10.1.0.0/16"])
    assert token_id.startswith("token-")
    assert len(token_id) == 12
    assert uuid.UUID(token).version == 4
    assert token not in entry
    assert token_sha256(token) in entry
    path = tmp_path / "clients.yaml"
    path.write_text(entry)
    env = {**PAT_ENV, "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)}
    (loaded,) = config.load(None, env).clients
    assert loaded.name == "billing"
    assert loaded.allow == ["GET /v2/history/**"]


# --- through the proxy, against the upstream double --------------------------------------------


async def test_a_client_credential_becomes_the_real_pat(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(READER))
    status, echoed, _ = await call(proxy, "GET", "/v2/history/h1", basic(READER_ID, READER_TOKEN))
    assert status == 200
    sent = [v for k, v in echoed["headers"] if k.lower() == "authorization"]
    real = base64.b64encode(
        f"{PAT_ENV['SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID']}:{REAL_PAT}".encode()
    )
    assert sent == [f"Basic {real.decode()}"]  # the client's own never reaches sipgate
    status, _, _ = await call(
        proxy, "GET", "/v2/account", {"Authorization": f"Bearer {READER_TOKEN}"}
    )
    assert status == 200  # Bearer with the same token


async def test_a_read_only_client_cannot_send_sms(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(READER))
    status, body, _ = await call(proxy, "POST", "/v2/sessions/sms", basic(READER_ID, READER_TOKEN))
    assert status == 403
    assert body == {
        "error": "forbidden_by_policy",
        "message": body["message"],
        "client": "reader",
        "method": "POST",
        "path": "/v2/sessions/sms",
    }
    for spelling in (
        "/v2/history/../sessions/sms",
        "/v2/history/%2e%2e/sessions/sms",
        "/v2/account/x",
    ):
        status, body, _ = await call(proxy, "GET", spelling, basic(READER_ID, READER_TOKEN))
        assert (status, body["error"]) == (403, "forbidden_by_policy"), spelling
    assert received(upstream) == []  # nothing was forwarded


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "invalid_client_credentials"),
        (basic("token-Unknwn", READER_TOKEN), 401, "invalid_client_credentials"),
        (basic(READER_ID, str(uuid.uuid4())), 401, "invalid_client_credentials"),
        (basic(SENDER_ID, READER_TOKEN), 401, "invalid_client_credentials"),  # another's id
        ({"Authorization": "Basic not-base64!"}, 400, "malformed_credentials"),
        (
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            400,
            "malformed_credentials",
        ),
        ({"Authorization": "Digest x"}, 400, "malformed_credentials"),
    ],
)
async def test_bad_credentials_are_refused_and_nothing_is_forwarded(
    make_proxy: ProxyFactory,
    upstream: TestServer,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    proxy = await make_proxy(clients_env(READER, SENDER))
    got, body, answer_headers = await call(proxy, "GET", "/v2/account", headers)
    assert (got, body["error"]) == (status, error)
    if status == 401:
        assert answer_headers["WWW-Authenticate"].startswith("Basic")
    assert REAL_PAT not in json.dumps(body)
    assert received(upstream) == []


async def test_two_authorization_headers_are_malformed(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(READER))
    async with aiohttp.ClientSession() as session:
        headers = [("Authorization", basic(READER_ID, READER_TOKEN)["Authorization"])] * 2
        async with session.get(proxy.make_url("/v2/account"), headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "malformed_credentials"
    assert received(upstream) == []


async def test_the_right_credential_from_the_wrong_network_is_403(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    fenced = dict(READER, networks=["127.0.0.1/32"])
    proxy = await make_proxy(clients_env(fenced))
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(
            proxy.make_url("/v2/account"), headers=basic(READER_ID, READER_TOKEN)
        ) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "client_network_refused"
    assert received(upstream) == []
    status, _, _ = await call(proxy, "GET", "/v2/account", basic(READER_ID, READER_TOKEN))
    assert status == 200  # from 127.0.0.1


async def test_over_the_rate_exactly_one_429_with_retry_after(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(SENDER))
    answers = [
        await call(proxy, "POST", "/v2/sessions/sms", basic(SENDER_ID, SENDER_TOKEN))
        for _ in range(4)
    ]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    assert answers[3][1]["error"] == "rate_limited"
    assert int(answers[3][2]["Retry-After"]) == 20
    assert len(received(upstream)) == 3


async def test_anonymous_allow_keeps_the_old_behaviour_for_requests_without_one(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(clients_env(READER, anonymous="allow"))
    status, _, _ = await call(proxy, "POST", "/v2/sessions/sms")
    assert status == 200  # networks only, as before clients existed
    status, _, _ = await call(proxy, "POST", "/v2/sessions/sms", basic(READER_ID, READER_TOKEN))
    assert status == 403  # a client is still held to its rules


async def test_metrics_and_log_name_the_client(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy(clients_env(READER))
    caplog.set_level("INFO", logger="proxy.access")
    await call(proxy, "GET", "/v2/account", basic(READER_ID, READER_TOKEN))
    await call(proxy, "POST", "/v2/sessions/sms", basic(READER_ID, READER_TOKEN))
    await call(proxy, "GET", "/v2/account", basic(READER_ID, "wrong"))
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.make_url("/metrics")) as resp:
            text = await resp.text()
    assert 'sipgate_proxy_client_requests_total{client="reader",status="200"} 1.0' in text
    assert 'sipgate_proxy_policy_denied_total{client="reader",reason="policy"} 1.0' in text
    assert 'sipgate_proxy_policy_denied_total{client="unknown",reason="credentials"} 1.0' in text
    clients = [getattr(r, "client", None) for r in caplog.records if r.name == "proxy.access"]
    assert clients[:2] == ["reader", "reader"]
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert READER_TOKEN not in logged
    assert REAL_PAT not in logged


# --- sipgate's own Node.js library, with a proxy-issued credential in place of a PAT ---------

SIPGATEIO = Path(__file__).parent / "sipgateio"
USERINFO = client("legacy-app", READER_ID, READER_TOKEN, ["GET /v2/authorization/userinfo"])
USERINFO["allow"] += ["GET /v2/history"]


async def sipgateio(proxy: TestServer, action: str, token_id: str, token: str) -> dict[str, Any]:
    node = find_node()
    require(node is not None, "node is not installed")
    require((SIPGATEIO / "node_modules" / "sipgateio").is_dir(), "run scripts/install-test-deps.sh")
    assert node is not None
    kept = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # no HTTP_PROXY
    env = kept | {"SIPGATE_BASE": f"{str(proxy.make_url('')).rstrip('/')}/v2"}
    process = await asyncio.create_subprocess_exec(
        node,
        str(SIPGATEIO / "client.js"),
        action,
        env=env | {"TOKEN_ID": token_id, "TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    result: dict[str, Any] = json.loads(out)
    return result


async def test_sipgateio_with_a_client_credential_works_and_sipgate_sees_the_pat(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(USERINFO, SENDER))
    read = await sipgateio(proxy, "read", READER_ID, READER_TOKEN)
    assert read["ok"], read
    seen = [v for k, v in read["echoed"]["headers"] if k.lower() == "authorization"]
    token_id = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"]
    assert seen == ["Basic " + base64.b64encode(f"{token_id}:{REAL_PAT}".encode()).decode()]
    assert read["echoed"]["raw_path"] == "/v2/history?limit=2"
    assert READER_TOKEN not in json.dumps(read["echoed"])  # the app's own stays here
    # The read-only app cannot send an SMS: the library sees 403, sipgate sees nothing.
    refused = await sipgateio(proxy, "sms", READER_ID, READER_TOKEN)
    # (sipgateio words every 403 of the SMS call as "Invalid SMS extension")
    assert refused == {"ok": False, "error": "Invalid SMS extension"}
    assert "POST /v2/sessions/sms" not in received(upstream)
    sent = await sipgateio(proxy, "sms", SENDER_ID, SENDER_TOKEN)
    assert sent == {"ok": True}
    assert received(upstream).count("POST /v2/sessions/sms") == 1


# --- revocation without a restart --------------------------------------------------------------


async def test_a_changed_clients_file_is_reloaded_and_a_broken_one_keeps_the_old_list(
    make_proxy: ProxyFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps([READER, SENDER]))
    proxy = await make_proxy({"SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)})
    assert (await call(proxy, "GET", "/v2/account", basic(READER_ID, READER_TOKEN)))[0] == 200
    # Kubernetes swaps the Secret's directory: a new file appears in the path's place.
    fresh = tmp_path / "clients.new"
    fresh.write_text(json.dumps([SENDER]))
    fresh.replace(path)
    assert await eventually(proxy, basic(READER_ID, READER_TOKEN), 401)
    path.write_text("- name: [broken\n")  # not YAML

    def errors() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "clients not reloaded" in r.getMessage()]

    for _ in range(int(WATCH_INTERVAL * 20 / 0.05)):  # read once it holds for one look
        if errors():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(WATCH_INTERVAL * 3)  # an unchanged file is not read again
    assert len(errors()) == 1
    assert "auth.clients_file" in errors()[0].getMessage()
    status, _, _ = await call(proxy, "POST", "/v2/sessions/sms", basic(SENDER_ID, SENDER_TOKEN))
    assert status == 200  # the old list stays


async def eventually(proxy: TestServer, headers: dict[str, str], status: int) -> bool:
    for _ in range(int(WATCH_INTERVAL * 20 / 0.2)):
        if (await call(proxy, "GET", "/v2/account", headers))[0] == status:
            return True
        await asyncio.sleep(0.2)
    return False


def test_sighup_revokes_a_client_while_another_clients_download_goes_on(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    path = tmp_path / "clients.json"
    streamer = client("streamer", SENDER_ID, SENDER_TOKEN, ["GET /__test/slow_stream"])
    path.write_text(json.dumps([READER, streamer]))
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path),
        "SIPGATE_PROXY_LOG__LEVEL": "info",
    }
    log = tmp_path / "proxy.log"
    base = f"http://127.0.0.1:{proxy_port}"
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=log) as proxy,
    ):
        reader = basic(READER_ID, READER_TOKEN)
        assert http_status(base + "/v2/account", reader) == 200
        streamer_auth = basic(SENDER_ID, SENDER_TOKEN)
        download: dict[str, Any] = {}
        slow = base + "/__test/slow_stream?chunks=20&interval=0.1"  # 2 s in flight
        fetching = threading.Thread(target=fetch_into, args=(slow, streamer_auth, download))
        fetching.start()
        time.sleep(0.5)
        path.write_text(json.dumps([streamer]))
        os.utime(path, ns=(0, 0))  # the same mtime as never before: only SIGHUP reloads now
        proxy.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while http_status(base + "/v2/account", reader) != 401 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http_status(base + "/v2/account", reader) == 401
        fetching.join(timeout=30)
    assert download == {"status": 200, "bytes": 20 * 1000}  # whole, not cut
    text = log.read_text()
    assert "clients reloaded: streamer" in text
    assert READER_TOKEN not in text
    assert REAL_PAT not in text


def fetch_into(url: str, headers: dict[str, str], result: dict[str, Any]) -> None:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback http)
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        result["status"], result["bytes"] = answer.status, len(answer.read())


async def test_forward_auth_answers_only_a_client_credential_for_an_allowed_call(
    make_proxy: ProxyFactory,
) -> None:
    # nginx auth_request in front of an app: the subrequest carries the app's
    # Authorization, the original method and URI and the front proxy's secret; only then
    # does the PAT come back.
    proxy = await make_proxy(FORWARD_AUTH | clients_env(READER))

    async def ask(method: str, uri: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        original = {"X-Original-Method": method, "X-Original-URI": uri} | FRONT | headers
        async with (
            aiohttp.ClientSession() as session,
            session.get(proxy.make_url("/oauth2/auth"), headers=original) as resp,
        ):
            return resp.status, dict(resp.headers)

    status, headers = await ask("GET", "/v2/history/h1", basic(READER_ID, READER_TOKEN))
    assert status == 202
    assert headers["Authorization"].startswith("Basic ")
    assert READER_TOKEN not in headers["Authorization"]
    assert (await ask("GET", "/v2/history/h1", {}))[0] == 401  # no credential, no PAT
    assert (await ask("POST", "/v2/sessions/sms", basic(READER_ID, READER_TOKEN)))[0] == 403
    assert (await ask("GET", "/v2/history/../sessions/sms", basic(READER_ID, READER_TOKEN)))[
        0
    ] == 403


async def test_an_app_with_a_client_credential_never_gets_the_accounts_pat_through_nginx(
    make_proxy: ProxyFactory, upstream: TestServer, tmp_path: Path
) -> None:
    """Issue 24, 1: the documented nginx recipe in front of an app that holds only a client
    credential for GET /v2/history/**, on the proxy's own loopback (a pod's app
    container). Through nginx its allowed call reaches the API with the account's PAT; by
    no way does the PAT reach the app: asking /oauth2/auth itself with its valid
    credential is refused without the front proxy's secret, through nginx it is 404."""
    require(*nginx_available())
    proxy = await make_proxy(FORWARD_AUTH | clients_env(READER))
    port = free_port()
    site = auth_request_site(
        str(upstream.make_url("")).rstrip("/"), str(proxy.make_url("")).rstrip("/")
    )
    pat = (
        "Basic "
        + base64.b64encode(
            f"{PAT_ENV['SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID']}:{REAL_PAT}".encode()
        ).decode()
    )
    app = basic(READER_ID, READER_TOKEN)
    original = {"X-Original-Method": "GET", "X-Original-URI": "/v2/history/h1"}
    with nginx(tmp_path / "nginx", port, site):
        front = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{front}/v2/history/h1", headers=app) as resp:
                assert resp.status == 200
                echoed = await resp.json()
            async with session.post(f"{front}/v2/sessions/sms", headers=app) as resp:
                assert resp.status == 403
                assert pat not in str(resp.headers)
            async with session.get(f"{front}/oauth2/auth", headers=app | original) as resp:
                assert resp.status == 404
                assert "Authorization" not in resp.headers
            for forged in ({}, {"X-Sipgate-Forward-Auth-Secret": "guess-" * 10}):
                async with session.get(
                    proxy.make_url("/oauth2/auth"), headers=app | original | forged
                ) as resp:
                    assert resp.status == 403
                    assert "Authorization" not in resp.headers
                    assert REAL_PAT not in await resp.text()
    assert ["Authorization", pat] in echoed["headers"]
    assert received(upstream) == ["GET /v2/history/h1"]


async def test_an_empty_allow_list_allows_nothing(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    nothing = client("nothing", READER_ID, READER_TOKEN, [])
    proxy = await make_proxy(clients_env(nothing))
    status, body, _ = await call(proxy, "GET", "/v2/account", basic(READER_ID, READER_TOKEN))
    assert (status, body["error"]) == (403, "forbidden_by_policy")
    assert received(upstream) == []


@pytest.mark.parametrize(
    "header", ["Basic \u00e9", "Basic \xff\xfe", "Basic " + base64.b64encode(b"\xff:\xfe").decode()]
)
async def test_a_credential_that_is_not_ascii_or_utf8_is_400_not_500(
    make_proxy: ProxyFactory, upstream: TestServer, header: str
) -> None:
    proxy = await make_proxy(clients_env(READER))
    async with aiohttp.ClientSession() as session:
        raw = header.encode("latin-1")
        async with session.get(
            proxy.make_url("/v2/account"), headers={"Authorization": raw.decode("latin-1")}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "malformed_credentials"
    assert received(upstream) == []


async def test_method_and_path_overrides_never_reach_the_upstream(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(clients_env(READER))
    overrides = {
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
        "X-Original-URL": "/v2/sessions/sms",
        "X-Rewrite-URL": "/v2/sessions/sms",
    }
    status, echoed, _ = await call(
        proxy, "GET", "/v2/account", basic(READER_ID, READER_TOKEN) | overrides
    )
    assert status == 200
    sent = {k.lower() for k, _ in echoed["headers"]}
    assert not sent & {k.lower() for k in overrides}


async def test_a_reload_keeps_the_buckets_of_unchanged_clients_and_the_last_sighup_list(
    tmp_path: Path,
) -> None:
    from proxy.auth.clients.gate import ClientGate, known
    from proxy.auth.clients.reload import ClientList

    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps([SENDER]))
    env = {**PAT_ENV, **clients_env(READER), "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)}
    settings = config.load(None, env)
    gate = ClientGate([known(c) for c in settings.clients], anonymous=False)
    source = ClientList(settings.auth, gate)
    sender = {c.name: c for c in gate._clients}["sender"]
    assert sender.bucket is not None
    for _ in range(3):
        assert sender.bucket.take() is None  # the burst is spent
    await source.from_file()  # a reload (the file "changed")
    assert {c.name: c for c in gate._clients}["sender"].bucket is sender.bucket
    # SIGHUP without the inline reader; a later file change must not bring it back.
    source.live().apply(
        config.load(None, {**PAT_ENV, "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)})
    )
    assert gate.names == ["sender"]
    await source.settled()  # SIGHUP's own second read of the file, before it is rewritten
    await source.from_file()
    assert gate.names == ["sender"]
    path.write_bytes("- name: caf\xe9\n".encode("latin-1"))  # not UTF-8: a problem, not a crash
    await source.from_file()
    assert gate.names == ["sender"]


async def test_a_sighup_that_read_the_file_before_a_revocation_does_not_bring_it_back(
    tmp_path: Path,
) -> None:
    """Review 3: SIGHUP reads clients_file (version A: reader still in), the Secret is
    updated (B: reader revoked) and the watcher applies B, then SIGHUP applies its older
    A. The file as it is now must win."""
    from proxy.auth.clients.gate import ClientGate, known
    from proxy.auth.clients.reload import ClientList

    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps([READER, SENDER]))
    env = {**PAT_ENV, "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)}
    read_by_sighup = config.load(None, env)  # version A, read before the update
    gate = ClientGate([known(c) for c in read_by_sighup.clients], anonymous=False)
    source = ClientList(read_by_sighup.auth, gate)
    path.write_text(json.dumps([SENDER]))  # version B: the reader is revoked
    await source.from_file()  # the watcher saw B first
    assert gate.names == ["sender"]
    source.live().apply(read_by_sighup)  # SIGHUP's older read lands last
    await source.settled()
    assert gate.names == ["sender"]

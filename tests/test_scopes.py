"""Least privilege in sipgate's own words (issue 25): a client credential holds scopes,
each granting the operations sipgate's table says it grants; through the real proxy,
against the upstream double."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy import config
from proxy.auth.clients.paths import canonical_segments
from proxy.auth.session_scopes import granted_scopes
from proxy.config.client_credentials import token_sha256
from proxy.oauth.tokens import TokenSet
from proxy.sipgate.index import OperationIndex, sipgate_index
from proxy.sipgate.operations import Operation, operations, scope_names
from tests.conftest import PAT_ENV, ProxyFactory, StackFactory
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.secrets import WATCH
from tests.support.upstream import VERIFIER
from tests.test_cli import run_cli
from tests.test_clients import basic, clients_env, received, sipgateio
from tests.test_packaging import ci_values, manifests, render, rendered_config
from tests.test_service_mode import OPERATOR, ServiceStack, call_api
from tests.test_service_mode import service_stack as service_stack  # the fixture

TOKEN = str(uuid.uuid4())  # every test client shares it: the token id tells them apart
WATCH.add(TOKEN)


def token_id(n: int) -> str:
    return f"token-Sc{n:04d}"


def scoped(name: str, n: int, scopes: list[str], **extra: Any) -> dict[str, Any]:
    entry = {"name": name, "token_id": token_id(n), "token_sha256": token_sha256(TOKEN)}
    return entry | {"scopes": scopes} | extra


def as_client(n: int) -> dict[str, str]:
    WATCH.add(base64.b64encode(f"{token_id(n)}:{TOKEN}".encode()).decode())
    return basic(token_id(n), TOKEN)


# One client per scope name, all in one proxy: client n holds exactly scope_names()[n].
SCOPE_CLIENTS = [
    scoped(re.sub(r"[^a-z0-9-]", "-", name)[:40], n, [name]) for n, name in enumerate(scope_names())
]
HOLDER = {name: n for n, name in enumerate(scope_names())}


async def call(
    proxy: TestServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The path sent as written (no dot segment resolved, no escape decoded)."""
    url = URL(str(proxy.make_url("")).rstrip("/") + path, encoded=True)
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers or {}) as resp:
            body = await resp.json(content_type=None) if method != "HEAD" else {}
            return resp.status, body, dict(resp.headers)


def concrete(template: str) -> str:
    """A path of the template's shape: each ``{param}`` an id no literal shares."""
    return re.sub(r"\{(\w+)\}", lambda m: f"id-{m.group(1)}", template)


def segments(path: str) -> tuple[str, ...]:
    found = canonical_segments(path)
    assert found is not None, path
    return found


# --- the table and its index -------------------------------------------------------------------


def test_the_shipped_table_is_the_published_one() -> None:
    assert len(operations()) == 179
    assert len(scope_names()) == 121
    assert {s for op in operations() for s in op.scopes} <= set(scope_names())
    assert len({(op.method, op.template) for op in operations()}) == 179


@pytest.mark.parametrize("row", operations(), ids=lambda op: op.name)
def test_a_concrete_path_of_each_row_is_that_row(row: Operation) -> None:
    if row.template == "/v2/":  # an empty last segment: no canonical path spells it
        assert canonical_segments(row.template) is None
        return
    assert sipgate_index().match(row.method, segments(concrete(row.template))) is row


PRECEDENCE = [
    # (request, the operation it is): the first differing segment that is literal wins
    ("PUT /v2/calls/faxlines/muted", "setCallMuted"),  # not {userId}/faxlines/{faxlineId}
    ("PUT /v2/calls/c1/muted", "setCallMuted"),
    ("PUT /v2/w0/faxlines/f1", "changeFaxlineAlias"),
    ("GET /v2/history/export", "getHistoryCSV"),  # not history/{entryId}
    ("GET /v2/history/h1", "getHistoryById"),
    ("GET /v2/numbers/quickdial/validation/123", "validateQuickDialNumber"),
    ("GET /v2/contacts/internal", "getAllContacts"),
    ("DELETE /v2/contacts/internal", "deleteContact"),  # no DELETE of the literal: {contactId}
    # Templates of the request's method only: sipgate, matching the path first, finds
    # the POST-only sessions/sms and answers 405, so no operation runs that sms:read
    # does not grant (whenever its best template has the method, it is this one too).
    ("GET /v2/sessions/sms", "getSmsExtensions"),
    # the literal branch ends without an operation: the template branch is taken after all
    ("GET /v2/devices/sms/s1/callerids", "getSmsCallerIds"),
    ("GET /v2/history/sms", "getHistoryById"),
    ("GET /v2/history/sms/s1/callerids", "getSmsCallerIds"),
    # HEAD is GET; extra and missing segments are no operation
    ("HEAD /v2/balance", "getBalance"),
    ("GET /v2/balance/extra", None),
    ("PUT /v2/calls/c1", None),
    ("GET /v2", None),
    ("GET /v3/balance", None),
    # sipgate reads %61 as "a": the literal it reads decides
    ("PUT /v2/c%61lls/faxlines/muted", "setCallMuted"),
    ("GET /v2/hist%6Fry/export", "getHistoryCSV"),
]


@pytest.mark.parametrize(("request_line", "operation_id"), PRECEDENCE)
def test_literal_beats_template(request_line: str, operation_id: str | None) -> None:
    method, path = request_line.split(" ")
    found = sipgate_index().match(method, segments(path))
    assert (found.operation_id if found else None) == operation_id


def test_two_rows_of_one_shape_are_refused_when_the_index_is_built() -> None:
    twin = Operation(1, "GET", "/v2/{other}/sms", (), "twin")
    with pytest.raises(ValueError, match="has the shape of"):
        OperationIndex((*operations(), twin))


# --- configuration ----------------------------------------------------------------------------


def test_an_unknown_scope_is_named_with_the_closest_known_ones() -> None:
    env = clients_env(scoped("billing", 0, ["history:read", "histroy:read", "balance:read"]))
    with pytest.raises(config.ConfigError) as err:
        config.load(None, {**PAT_ENV, **env})
    (problem,) = err.value.problems
    assert problem.key == "auth.clients.0.scopes.1"
    assert "closest: history:read" in str(problem)


# --- through the proxy ------------------------------------------------------------------------


async def test_every_row_reaches_sipgate_with_its_scope_and_no_other(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    """Each row: a client holding exactly one of its scopes (each in turn) reaches the
    upstream with a concrete path; one holding a scope that grants it not gets 403
    ``insufficient_scope`` naming the row, and the upstream sees nothing of it."""
    proxy = await make_proxy(clients_env(*SCOPE_CLIENTS))
    wrong: list[str] = []
    others = [s for s in scope_names() if s != "all"]
    for row in operations():
        path = concrete(row.template)
        if row.template == "/v2/":
            continue  # the gate refuses an empty segment, whatever the scopes (below)
        for scope in row.scopes or ("all",):  # "-": no scope declared, only "all" grants it
            before = len(received(upstream))
            status, _, _ = await call(proxy, row.method, path, as_client(HOLDER[scope]))
            if status != 200 or received(upstream)[before:] != [f"{row.method} {path}"]:
                wrong.append(f"{row.name} with {scope}: {status}")
        refused = [s for s in others if s not in row.scopes]
        scope = refused[row.index % len(refused)]
        before = len(received(upstream))
        status, body, headers = await call(proxy, row.method, path, as_client(HOLDER[scope]))
        expected = {
            "error": "insufficient_scope",
            "message": body.get("message"),
            "client": SCOPE_CLIENTS[HOLDER[scope]]["name"],
            "operation": row.name,
            "operationId": row.operation_id,
            "scopes": list(row.scopes),
        }
        if (status, body) != (403, expected) or not headers["WWW-Authenticate"].startswith("Basic"):
            wrong.append(f"{row.name} with {scope}: {status} {body}")
        if len(received(upstream)) != before:
            wrong.append(f"{row.name} with {scope} reached the upstream")
    assert wrong == []
    status, body, _ = await call(proxy, "GET", "/v2/", as_client(HOLDER["all"]))
    assert (status, body["error"]) == (403, "forbidden_by_policy")


async def test_precedence_decides_which_scope_is_asked_for(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(*SCOPE_CLIENTS))
    faxlines, rtcm = as_client(HOLDER["faxlines:write"]), as_client(HOLDER["rtcm:write"])
    for path in ("/v2/calls/faxlines/muted", "/v2/c%61lls/faxlines/muted"):
        status, body, _ = await call(proxy, "PUT", path, faxlines)
        assert (status, body["operationId"]) == (403, "setCallMuted"), path
        assert (await call(proxy, "PUT", path, rtcm))[0] == 200
    assert (await call(proxy, "PUT", "/v2/w0/faxlines/f1", faxlines))[0] == 200
    history = as_client(HOLDER["history:read"])
    assert (await call(proxy, "GET", "/v2/history/export?from=1", history))[0] == 200
    assert (await call(proxy, "HEAD", "/v2/history/h1", history))[0] == 200  # HEAD as GET
    assert received(upstream) == [
        "PUT /v2/calls/faxlines/muted",
        "PUT /v2/c%61lls/faxlines/muted",
        "PUT /v2/w0/faxlines/f1",
        "GET /v2/history/export?from=1",
        "HEAD /v2/history/h1",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/history/h1/extra",  # an extra segment: no operation of the table
        "/v2/balance/x",
        "/v2/history/h1/note",  # PUT only
        "/__test/status/200",  # outside the table
    ],
)
async def test_a_path_outside_the_table_is_not_granted_by_a_scope(
    make_proxy: ProxyFactory, upstream: TestServer, path: str
) -> None:
    proxy = await make_proxy(clients_env(*SCOPE_CLIENTS))
    for scope in ("history:read", "all"):
        status, body, _ = await call(proxy, "GET", path, as_client(HOLDER[scope]))
        assert (status, body["error"]) == (403, "forbidden_by_policy"), (path, scope)
    assert received(upstream) == []


# Spellings of a path history:read grants that a reader could take for another path.
GATE_REFUSES = [
    "/v2/history/h1/",
    "/v2//history",
    "/v2/history/../balance",
    "/v2/history/%2e%2e/balance",
    "/v2/history/h1%2f..%2f..%2fsessions%2fsms",
    "/v2/history/..;/balance",
    "/v2/history/h1;x",
    "/v2/history/%68%31%2f",
    "/v2/history\\h1",
    "/v2/history/%c0%ae%c0%ae",
]


async def test_encoded_spellings_of_a_granted_path_are_refused_by_the_gate_first(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy(clients_env(*SCOPE_CLIENTS))
    for client in (HOLDER["history:read"], HOLDER["all"]):
        for path in GATE_REFUSES:
            status, body, _ = await call(proxy, "GET", path, as_client(client))
            assert (status, body["error"]) == (403, "forbidden_by_policy"), path
    assert received(upstream) == []
    status, _, _ = await call(proxy, "GET", "/v2/hist%6Fry/h1", as_client(HOLDER["history:read"]))
    assert status == 200  # one reading only, and that one is granted


async def test_scopes_and_allow_rules_add_up(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    billing = scoped("billing", 900, ["history:read", "balance:read"], allow=["GET /v2/app/links"])
    nothing = scoped("nothing", 901, [])
    proxy = await make_proxy(clients_env(billing, nothing))
    for path in ("/v2/history", "/v2/balance", "/v2/app/links"):
        assert (await call(proxy, "GET", path, as_client(900)))[0] == 200, path
    status, body, _ = await call(proxy, "POST", "/v2/sessions/sms", as_client(900))
    assert (status, body["error"], body["scopes"]) == (
        403,
        "insufficient_scope",
        ["all", "sessions:sms:write", "sessions:write"],
    )
    status, body, _ = await call(proxy, "GET", "/v2/balance", as_client(901))
    assert (status, body["error"]) == (403, "forbidden_by_policy")  # neither: nothing
    assert received(upstream) == ["GET /v2/history", "GET /v2/balance", "GET /v2/app/links"]


async def test_metrics_count_a_scope_refusal(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(clients_env(scoped("billing", 900, ["balance:read"])))
    await call(proxy, "POST", "/v2/sessions/sms", as_client(900))
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.make_url("/metrics")) as resp:
            text = await resp.text()
    assert 'sipgate_proxy_policy_denied_total{client="billing",reason="scope"} 1.0' in text


# --- sessions: auth.oauth2.enforce_scopes, with the real IdP ------------------------------------

ENFORCING = {
    "SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[balance:read]",
    "SIPGATE_PROXY_AUTH__OAUTH2__ENFORCE_SCOPES": "true",
}


async def test_a_session_without_the_scope_gets_the_bearer_challenge_locally(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack(ENFORCING)  # the IdP grants what is asked: balance:read
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "alice", "/")
        status, _, body, _ = await browser.request("GET", f"{stack.public_url}/oauth2/userinfo")
        assert (status, json.loads(body)["scopes"]) == (200, ["balance:read"])
        status, _, body, _ = await browser.request("GET", f"{stack.public_url}/v2/balance")
        assert (status, json.loads(body)["jwt_sub"]) == (200, "alice")
        status, headers, body, _ = await browser.request(
            "POST", f"{stack.public_url}/v2/sessions/sms", json={"message": "hi"}
        )
        status_other, _, _, _ = await browser.request(
            "GET",
            f"{stack.public_url}/v2/app/links",  # no scope declared: sipgate decides
        )
    assert status == 403
    assert headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="all sessions:sms:write sessions:write"'
    )
    assert json.loads(body) == {
        "error": "insufficient_scope",
        "message": json.loads(body)["message"],
        "operation": "POST /v2/sessions/sms",
        "operationId": "sendWebSms",
        "scopes": ["all", "sessions:sms:write", "sessions:write"],
    }
    assert status_other == 200
    assert stack.verifier.accepted == 2  # the balance and the links: the SMS never left


async def test_without_enforce_scopes_sipgate_decides(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[balance:read]"})
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "alice", "/")
        status, _, _, _ = await browser.request("POST", f"{stack.public_url}/v2/sessions/sms")
    assert status == 200  # the double does not check scopes; sipgate would answer 403
    assert stack.verifier.accepted == 1


async def test_unknown_oauth2_scopes_are_named_at_start_up(
    oauth_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="proxy.modes.common")
    await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid, histroy:read, email]"})
    warnings = [r.getMessage() for r in caplog.records if r.name == "proxy.modes.common"]
    assert warnings == [
        "auth.oauth2.scopes.2 ('histroy:read') is not a scope sipgate knows (sipgate ignores "
        "it); closest: history:read, history:write, ivrs:read"
    ]


def jwt_with(payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


@pytest.mark.parametrize(
    ("scope", "payload", "granted"),
    [
        ("balance:read openid", {"scope": "all"}, {"balance:read", "openid"}),  # the answer's
        ("", {"scope": "history:read", "realm_access": {"roles": ["all"]}}, {"history:read"}),
        ("", {"realm_access": {"roles": ["uma_authorization", "balance:read"]}}, None),
        ("", {"realm_access": {"roles": "balance:read"}}, set()),  # not a list: none
        ("", {}, set()),
    ],
)
def test_granted_scopes_come_from_the_answer_then_the_token(
    scope: str, payload: dict[str, Any], granted: set[str] | None
) -> None:
    tokens = TokenSet(jwt_with(payload), None, 0.0, 0.0, scope)
    roles = payload.get("realm_access", {}).get("roles")
    assert set(granted_scopes(tokens)) == (granted if granted is not None else set(roles))


# --- sipgate's own Node.js library with a scoped credential ------------------------------------


async def test_sipgateio_with_a_scoped_credential(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    # history:read for the history; sipgateio's userinfo call declares no scope: a rule
    reader = scoped("reader", 900, ["history:read"], allow=["GET /v2/authorization/userinfo"])
    sender = scoped("sender", 901, ["sessions:sms:write"])
    proxy = await make_proxy(clients_env(reader, sender))
    read = await sipgateio(proxy, "read", token_id(900), TOKEN)
    assert read["ok"], read
    assert read["echoed"]["raw_path"] == "/v2/history?limit=2"
    refused = await sipgateio(proxy, "sms", token_id(900), TOKEN)
    assert refused == {"ok": False, "error": "Invalid SMS extension"}  # its words for a 403
    assert received(upstream) == ["GET /v2/authorization/userinfo", "GET /v2/history?limit=2"]
    assert await sipgateio(proxy, "sms", token_id(901), TOKEN) == {"ok": True}
    assert received(upstream)[2:] == ["POST /v2/sessions/sms"]


# --- the Helm chart ----------------------------------------------------------------------------

CHART_SCHEMA = Path(__file__).resolve().parents[1] / "helm/sipgate-auth-proxy/values.schema.json"


def test_the_charts_schema_lists_exactly_the_shipped_scopes() -> None:
    schema = json.loads(CHART_SCHEMA.read_text())
    auth = schema["properties"]["config"]["properties"]["auth"]["properties"]
    assert auth["clients"]["items"]["properties"]["scopes"]["items"]["enum"] == list(scope_names())
    assert auth["oauth2"]["properties"]["enforce_scopes"]["type"] == "boolean"


def test_the_chart_passes_scopes_on_and_refuses_an_unknown_one() -> None:
    values = ci_values("standalone-pat")
    config_data = rendered_config(manifests(render(values)))
    assert config_data["auth"]["clients"][1]["scopes"] == ["sessions:sms:write"]
    values["config"]["auth"]["clients"][1]["scopes"] = ["sessions:sms:wrte"]
    with pytest.raises(Exception, match="/config/auth/clients/1/scopes/0") as caught:
        render(values)
    assert "HelmError" in [c.__name__ for c in type(caught.value).__mro__]  # helm refused


# --- the command line ------------------------------------------------------------------------


def test_cli_lists_the_scopes_and_what_each_grants() -> None:
    result = run_cli("scopes")
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines()[1:])
    assert list(counts) == list(scope_names())
    assert (counts["all"], counts["history:read"], counts["openid"]) == ("179", "3", "0")
    result = run_cli("scopes", "history:read")
    assert result.stdout.split("\n") == [
        "GET /v2/history            getHistory",
        "GET /v2/history/export     getHistoryCSV",
        "GET /v2/history/{entryId}  getHistoryById",
        "",
    ]
    result = run_cli("scopes", "histroy:read")
    assert result.returncode == 2
    assert "closest: history:read" in result.stderr


def test_cli_names_the_operation_a_request_is() -> None:
    result = run_cli("scopes", "--operation", "PUT /v2/calls/123/muted")
    assert (result.returncode, result.stdout) == (
        0,
        "PUT /v2/calls/{callId}/muted (setCallMuted): granted by all, rtcm:write\n",
    )
    result = run_cli("scopes", "--operation", "GET /v2/nothing/here/at/all")
    assert result.returncode == 1
    assert "not an operation of sipgate's table" in result.stdout
    result = run_cli("scopes", "--operation", "GET /v2/history/../balance")
    assert result.returncode == 2


def test_cli_new_client_writes_scopes_that_load(tmp_path: Path) -> None:
    result = run_cli("new-client", "billing", "--scope", "history:read", "--scope", "balance:read")
    assert result.returncode == 0, result.stderr
    assert "  scopes: [history:read, balance:read]\n" in result.stdout
    path = tmp_path / "clients.yaml"
    path.write_text(result.stdout)
    env = {**PAT_ENV, "SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path)}
    (loaded,) = config.load(None, env).clients
    assert (loaded.scopes, loaded.allow) == (["history:read", "balance:read"], [])
    result = run_cli("new-client", "billing", "--scope", "balance:reed")
    assert result.returncode == 2
    assert "closest: balance:read" in result.stderr


async def test_service_mode_enforces_the_identitys_scopes(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack(ENFORCING)
    async with ScriptedBrowser() as browser:
        await browser.sign_in(stack.public_url, OPERATOR)
    assert (await call_api(stack, "/v2/balance"))[0] == 200
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.post(f"{stack.public_url}/v2/sessions/sms") as resp:
            status, challenge = resp.status, resp.headers["WWW-Authenticate"]
            body = await resp.json()
    assert (status, body["operationId"]) == (403, "sendWebSms")
    assert challenge.startswith('Bearer error="insufficient_scope", scope="all ')
    assert stack.upstream.app[VERIFIER].accepted == 1  # the balance only

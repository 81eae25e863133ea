from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from proxy import config
from proxy.app import create_app
from proxy.auth.origin import SAFE_METHODS, OriginPolicy, vary_with_origin
from proxy.config.origins import normalise_origin
from tests.conftest import ProxyFactory

OWN = "https://proxy.example"
SPA = "https://app.example:8443"


@pytest.fixture
def policy() -> OriginPolicy:
    return OriginPolicy(OWN, [SPA, "http://localhost:3000"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://proxy.example", "https://proxy.example"),
        ("HTTPS://PROXY.EXAMPLE:443", "https://proxy.example"),
        ("https://proxy.example/", "https://proxy.example"),
        ("http://proxy.example:80", "http://proxy.example"),
        ("http://proxy.example:443", "http://proxy.example:443"),
        ("https://proxy.example:80", "https://proxy.example:80"),
        ("https://proxy.example:08443", "https://proxy.example:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::1]", "http://[::1]"),
        ("null", None),
        ("", None),
        ("proxy.example", None),
        ("ftp://proxy.example", None),
        ("https://proxy.example/path", None),
        ("https://proxy.example?x", None),
        ("https://proxy.example#x", None),
        ("https://user@proxy.example", None),
        ("https://proxy.example:0", None),
        ("https://proxy.example:65536", None),
        ("https://proxy.example:", None),
        ("https://proxy.example//", None),
        ("https://", None),
        ("https://pr\u00f6xy.example", None),
        ("https://proxy.example\\@evil.com", None),
    ],
)
def test_normalise_origin_when_values_vary(value: str, expected: str | None) -> None:
    assert normalise_origin(value) == expected


@pytest.mark.parametrize(
    "entry", ["https://app.example/path", "app.example", "*", "null", "https://*.example"]
)
def test_policy_raises_when_allowed_origin_is_not_bare(entry: str) -> None:
    with pytest.raises(ValueError, match="not a bare http"):
        OriginPolicy(OWN, [entry])


def test_policy_raises_when_own_origin_is_not_bare() -> None:
    with pytest.raises(ValueError, match="not a bare http"):
        OriginPolicy("https://proxy.example/prefix", [])


@pytest.mark.parametrize("method", sorted(SAFE_METHODS))
@pytest.mark.parametrize("origin", [None, "https://evil.example", "null"])
def test_unsafe_check_passes_when_method_is_safe(
    policy: OriginPolicy, method: str, origin: str | None
) -> None:
    assert policy.allows_unsafe_request(method, origin, "cross-site")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://proxy.example", True),
        ("HTTPS://PROXY.EXAMPLE:443", True),
        ("https://proxy.example/", True),
        ("https://app.example:8443", True),
        ("http://localhost:3000", True),
        ("null", False),
        ("", False),
        ("http://proxy.example", False),
        ("https://proxy.example:8443", False),
        ("https://app.example", False),
        ("https://proxy.example.evil.com", False),
        ("https://evilproxy.example", False),
        ("https://proxy.example@evil.com", False),
        ("https://sub.proxy.example", False),
        ("http://localhost:3001", False),
        ("https://localhost:3000", False),
        ("garbage", False),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_unsafe_request_follows_origin_when_origin_is_present(
    policy: OriginPolicy, method: str, origin: str, allowed: bool
) -> None:
    # Sec-Fetch-Site is ignored once an Origin is present.
    for sec_fetch_site in (None, "same-origin", "cross-site"):
        assert policy.allows_unsafe_request(method, origin, sec_fetch_site) is allowed


@pytest.mark.parametrize(
    ("sec_fetch_site", "allowed"),
    [
        (None, True),
        ("same-origin", True),
        ("none", True),
        ("Same-Origin", True),
        ("cross-site", False),
        ("same-site", False),
        ("", False),
        ("bogus", False),
    ],
)
def test_unsafe_request_follows_fetch_site_when_origin_is_absent(
    policy: OriginPolicy, sec_fetch_site: str | None, allowed: bool
) -> None:
    assert policy.allows_unsafe_request("POST", None, sec_fetch_site) is allowed


@pytest.mark.parametrize("origin", ["https://app.example:8443", "HTTPS://App.Example:8443"])
def test_cors_headers_echo_origin_when_other_origin_is_allowed(
    policy: OriginPolicy, origin: str
) -> None:
    assert policy.cors_headers(origin) == {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
    }


@pytest.mark.parametrize(
    "origin",
    [None, OWN, "null", "https://app.example", "https://app.example:8443.evil.com", "garbage"],
)
def test_cors_headers_are_empty_when_origin_is_own_or_not_allowed(
    policy: OriginPolicy, origin: str | None
) -> None:
    assert policy.cors_headers(origin) == {}


def test_cors_headers_are_empty_when_own_origin_is_also_listed() -> None:
    assert OriginPolicy(OWN, ["https://PROXY.example:443/"]).cors_headers(OWN) == {}


def test_preflight_allows_requested_method_and_headers_when_origin_is_allowed(
    policy: OriginPolicy,
) -> None:
    headers = policy.preflight_headers(SPA, "PATCH", "Content-Type, X-Request-Id")
    assert headers == {
        "Access-Control-Allow-Origin": SPA,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "PATCH",
        "Access-Control-Allow-Headers": "content-type, x-request-id",
        "Access-Control-Max-Age": "600",
    }


@pytest.mark.parametrize("request_headers", [None, "", " , "])
def test_preflight_omits_allowed_headers_when_none_are_requested(
    policy: OriginPolicy, request_headers: str | None
) -> None:
    headers = policy.preflight_headers(SPA, "DELETE", request_headers)
    assert headers is not None
    assert headers["Access-Control-Allow-Methods"] == "DELETE"
    assert "Access-Control-Allow-Headers" not in headers


@pytest.mark.parametrize(
    "request_headers",
    ["content-type, x y", "x-a\r\nSet-Cookie: a=b", "x-a, (bad)", "x-\u00e4", "x:a", 'x"a'],
)
def test_preflight_omits_allowed_headers_when_a_requested_name_is_invalid(
    policy: OriginPolicy, request_headers: str
) -> None:
    headers = policy.preflight_headers(SPA, "PUT", request_headers)
    assert headers is not None
    assert "Access-Control-Allow-Headers" not in headers


@pytest.mark.parametrize("request_method", ["", "PO ST", "GET\r\nX: y", "P\u00d6ST", "(GET)"])
def test_preflight_omits_allowed_methods_when_requested_method_is_invalid(
    policy: OriginPolicy, request_method: str
) -> None:
    headers = policy.preflight_headers(SPA, request_method, "content-type")
    assert headers is not None
    assert "Access-Control-Allow-Methods" not in headers
    assert headers["Access-Control-Allow-Headers"] == "content-type"


@pytest.mark.parametrize(
    ("origin", "request_method"),
    [
        (None, "POST"),
        ("null", "POST"),
        (OWN, "POST"),
        ("https://evil.example", "POST"),
        ("https://app.example:8443.evil.com", "POST"),
        (SPA, None),  # an OPTIONS request without Access-Control-Request-Method
    ],
)
def test_preflight_is_not_answered_when_origin_is_not_allowed_or_not_a_preflight(
    policy: OriginPolicy, origin: str | None, request_method: str | None
) -> None:
    assert policy.preflight_headers(origin, request_method, "content-type") is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "Origin"),
        (["Accept-Encoding"], "Accept-Encoding, Origin"),
        (["Accept-Encoding", " Accept-Language "], "Accept-Encoding, Accept-Language, Origin"),
        (["accept-encoding, ORIGIN"], None),
        (["*"], None),
        ([""], "Origin"),
    ],
)
def test_vary_with_origin_adds_origin_once_when_values_vary(
    values: list[str], expected: str | None
) -> None:
    assert vary_with_origin(values) == expected


# --- Vary through a running proxy ---------------------------------------------------------
# A shared cache must key on Origin whenever the answer could differ by it: with CORS on,
# that is every answer, whether or not the request carried an Origin.


def vary_tokens(headers: CIMultiDictProxy[str]) -> list[str]:
    return [t.strip().lower() for v in headers.getall("Vary", []) for t in v.split(",")]


@pytest.fixture
async def cors_proxy(make_proxy: ProxyFactory) -> TestServer:
    return await make_proxy({"SIPGATE_PROXY_SESSION__ALLOWED_ORIGINS": f"[{SPA}]"})


@pytest.mark.parametrize("origin", [SPA, None])
async def test_vary_keeps_upstream_fields_and_adds_origin_when_cors_is_on(
    cors_proxy: TestServer, origin: str | None
) -> None:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as client:
        async with client.get(cors_proxy.make_url("/__test/cors"), headers=headers) as resp:
            assert resp.status == 200
            assert vary_tokens(resp.headers) == ["accept-encoding", "origin"]
            assert ("Access-Control-Allow-Origin" in resp.headers) is (origin is not None)


@pytest.mark.parametrize(
    "upstream_vary", [["Accept-Encoding, origin"], ["Origin", "Accept-Encoding"], ["*"]]
)
async def test_vary_names_origin_once_when_upstream_already_varies_by_it(
    cors_proxy: TestServer, upstream_vary: list[str]
) -> None:
    url = cors_proxy.make_url("/__test/cors").with_query([("vary", v) for v in upstream_vary])
    async with aiohttp.ClientSession() as client:
        async with client.get(url, headers={"Origin": SPA}) as resp:
            tokens = vary_tokens(resp.headers)
    expected = [t.strip().lower() for v in upstream_vary for t in v.split(",")]
    assert tokens == expected


async def test_vary_names_origin_when_the_proxy_answers_itself(cors_proxy: TestServer) -> None:
    preflight = {"Origin": SPA, "Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession() as client:
        async with client.options(cors_proxy.make_url("/v2/x"), headers=preflight) as resp:
            assert resp.status == 204
            assert vary_tokens(resp.headers) == ["origin"]
        foreign = {"Origin": "https://evil.example"}
        async with client.post(cors_proxy.make_url("/v2/x"), headers=foreign) as resp:
            assert resp.status == 403
            assert vary_tokens(resp.headers) == ["origin"]
        async with client.get(cors_proxy.make_url("/readyz")) as resp:
            assert vary_tokens(resp.headers) == ["origin"]


async def test_vary_names_origin_on_the_401_of_a_browser_session_proxy(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    env = {
        "SIPGATE_PROXY_UPSTREAM__URL": "http://127.0.0.1:9",
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/realms/test",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "client",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "secret",
        "SIPGATE_PROXY_SESSION__ALLOWED_ORIGINS": f"[{SPA}]",
    }
    client = await aiohttp_client(create_app(config.load(None, env)))
    for headers in ({"Origin": SPA}, {}):
        async with client.get("/v2/account", headers=headers) as resp:
            assert resp.status == 401
            assert vary_tokens(resp.headers) == ["origin"]

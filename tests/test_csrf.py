from __future__ import annotations

import pytest

from proxy.csrf import SAFE_METHODS, OriginPolicy, normalise_origin

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
        "Vary": "Origin",
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
        "Vary": "Origin",
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

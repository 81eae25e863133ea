from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from proxy.auth.redirects import MAX_LENGTH, login_url, safe_return_path

HOSTILE = [
    None,
    "",
    # absolute URLs and other schemes
    "http://evil.com",
    "https://evil.com/path",
    "HTTPS://evil.com",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "mailto:a@evil.com",
    "evil.com/redirect",
    "redirect",
    "?next=/",
    "#fragment",
    # protocol-relative and backslash forms
    "//evil.com",
    "///evil.com",
    "////evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "/ \\evil.com",
    # whitespace and control characters that browsers strip
    "/ /evil.com",
    "/\t/evil.com",
    "/\t\\evil.com",
    "/\v/evil.com",
    "/\n/evil.com",
    "/\r/evil.com",
    "/\r\\evil.com",
    "/\x00/evil.com",
    "/\x7f/evil.com",
    "/\t/\t\\evil.com",
    "/\t\t\\\t/evil.com",
    " //evil.com",
    "//evil.com ",
    "/v2/account\nSet-Cookie: x=y",
    # dot segments that collapse to a "//" prefix
    "/./\\evil.com",
    "/./../../\\evil.com",
    "/.//evil.com",
    "/..//evil.com",
    "/%2e//evil.com",
    "/a/..//evil.com",
    # encoded slashes and controls right after the leading slash
    "/%2fevil.com",
    "/%2F%2Fevil.com",
    "/%5cevil.com",
    "/%5Cevil.com",
    "/%252f/evil.com",
    "/%25252F/evil.com",
    "/%09/evil.com",
    "/%0a/evil.com",
    "/%20/evil.com",
    "/%EF%BC%8Fevil.com",
    # Unicode lookalikes of "/" and "\" and other non-ASCII
    "/\uff0fevil.com",
    "\uff0f\uff0fevil.com",
    "/\u2215evil.com",
    "/\u2044evil.com",
    "/\ufe68evil.com",
    "/\u3002evil.com",
    "/v2/\u00e4",
    # backslash anywhere
    "/v2/a\\b",
    "/v2?x=\\\\evil.com",
    # too long
    "/" + "a" * MAX_LENGTH,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_return_path_falls_back_to_root_when_value_is_hostile(value: str | None) -> None:
    assert safe_return_path(value) == "/"


@pytest.mark.parametrize(
    "value",
    [
        "/",
        "/v2/account",
        "/v2/account?x=1",
        "/v2/account?x=1&y=%2F%2Fevil.com",
        "/a/b#frag",
        "/a/b?q=1#/route//x",
        "/app/?next=//not-a-redirect",
        "/v2/a%2Fb",
        "/%7Euser",
        "/@evil.com",  # a path on our origin, not userinfo
        "/evil.com",
        "/javascript:alert(1)",  # a path segment, not a scheme
        "/a/./b/../c",
        "/" + "a" * (MAX_LENGTH - 1),
    ],
)
def test_safe_return_path_keeps_value_when_it_is_a_same_origin_path(value: str) -> None:
    assert safe_return_path(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/v2/account?q=" + "a" * MAX_LENGTH, "/v2/account"),
        ("/v2/account#" + "a" * MAX_LENGTH, "/v2/account"),
        ("/v2/account?q=1#" + "a" * MAX_LENGTH, "/v2/account"),
        ("/" + "a" * (MAX_LENGTH - 1) + "?q=1", "/" + "a" * (MAX_LENGTH - 1)),
        ("/" + "a" * MAX_LENGTH + "?q=1", "/"),
        ("//evil.com?" + "a" * MAX_LENGTH, "/"),
        ("/\\evil.com#" + "a" * MAX_LENGTH, "/"),
    ],
)
def test_safe_return_path_is_cut_to_its_path_when_too_long(value: str, expected: str) -> None:
    assert safe_return_path(value) == expected


@pytest.mark.parametrize(
    ("return_path", "expected_rd"),
    [
        ("/v2/account?x=1&y=2#top", "/v2/account?x=1&y=2#top"),
        ("/", "/"),
        ("//evil.com", "/"),
        ("/a b", "/"),
    ],
)
def test_login_url_carries_safe_return_path_when_built(return_path: str, expected_rd: str) -> None:
    url = login_url("https://proxy.example", "/oauth2", return_path)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "proxy.example", "/oauth2/start")
    assert not parts.fragment
    assert parse_qs(parts.query) == {"rd": [expected_rd]}


def test_login_url_percent_encodes_query_characters_when_present() -> None:
    url = login_url("http://localhost:8080/", "/auth", "/v2/x?a=1&b=%20#f")
    assert url == "http://localhost:8080/auth/start?rd=/v2/x%3Fa%3D1%26b%3D%2520%23f"

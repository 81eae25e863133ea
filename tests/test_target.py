import pytest

from proxy.errors import BadRequestTarget
from proxy.upstream.target import UpstreamTarget, path_and_query


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/v2/account", "/v2/account"),
        ("/v2/a%2Fb?x=1&x=2", "/v2/a%2Fb?x=1&x=2"),
        ("http://evil.example/v2/x?y", "/v2/x?y"),
        ("https://evil.example:8443?y=1", "/?y=1"),
        ("http://evil.example", "/"),
        ("HTTP://user@evil.example/x", "/x"),
        ("//evil.example/x", "//evil.example/x"),
    ],
)
def test_path_and_query_when_target_forms_vary(raw: str, expected: str) -> None:
    assert path_and_query(raw) == expected


@pytest.mark.parametrize("raw", ["*", "evil.example:443", "", "javascript:alert(1)", "ftp//x"])
def test_path_and_query_refuses_when_not_a_path(raw: str) -> None:
    with pytest.raises(BadRequestTarget):
        path_and_query(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "//evil.example/x",
        "/@evil.example",
        "/%2F%2Fevil.example",
        "http://evil.example/x",
        "/..%2F..%2F",
        "/\\evil.example",
    ],
)
def test_upstream_origin_never_changes_when_target_is_hostile(raw: str) -> None:
    target = UpstreamTarget("https://api.sipgate.com")
    url = target.url_for(raw)
    assert (url.scheme, url.host, url.port) == ("https", "api.sipgate.com", 443)


def test_upstream_base_path_is_kept() -> None:
    url = UpstreamTarget("http://127.0.0.1:9000/base/").url_for("/v2/x?a=%20")
    assert str(url) == "http://127.0.0.1:9000/base/v2/x?a=%20"

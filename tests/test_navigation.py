from __future__ import annotations

import pytest

from proxy.auth.navigation import MAX_ACCEPT_LENGTH, is_browser_navigation

CHROME_NAVIGATE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_NAVIGATE = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIREFOX_OLD_NAVIGATE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
SAFARI_NAVIGATE = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CHROME_STYLESHEET = "text/css,*/*;q=0.1"
AXIOS = "application/json, text/plain, */*"


@pytest.mark.parametrize(
    "accept",
    [
        CHROME_NAVIGATE,
        FIREFOX_NAVIGATE,
        FIREFOX_OLD_NAVIGATE,
        SAFARI_NAVIGATE,
        "text/html",
        "TEXT/HTML",
        "text/*",
        "text/html;q=0.001",
        "application/json;q=0.5, text/html;q=0.6",
        "text/html;level=1;q=0.9, */*;q=0.1",
        "text/html ; Q=1.000 , application/json ; q=0.999",
        "text/html,,",
        "text/html, application/json;q=0",
        "text/html, text/*;q=0, */*;q=0",
    ],
)
def test_navigation_when_accept_prefers_html(accept: str) -> None:
    assert is_browser_navigation("GET", accept, "navigate")
    assert is_browser_navigation("GET", accept, None)
    assert is_browser_navigation("HEAD", accept, "navigate")


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",  # curl, fetch() and scripts
        AXIOS,
        CHROME_IMAGE,
        CHROME_STYLESHEET,
        "application/json",
        "application/json, text/html",  # a tie goes to JSON
        "text/html;q=0.5, application/json",
        "text/html;q=0",
        "text/html;q=0, */*",
        "*/*;q=0.8, application/json;q=0.9",
        "text/plain",
        "application/*",
        "application/*;q=0.9, text/*;q=0.9",
    ],
)
def test_not_navigation_when_accept_does_not_prefer_html(accept: str | None) -> None:
    assert not is_browser_navigation("GET", accept, "navigate")


@pytest.mark.parametrize(
    "accept",
    [
        ";;;",
        ",,,",
        "text/html;q=abc",
        "text/html;q=1.5",
        "text/html;q=0.0001",
        "text/html;q=-1",
        "text/html;q=",
        "text/html;q",
        "text/html;",
        "text/html;=1",
        "text",
        "text/",
        "/html",
        "*/html",
        "text/html/x",
        "text/h tml",
        'text/html, application/json;q="x"',
        "text/html, \u00e9/\u00e9",
        "text/html\x00",
        "text/html," + "a" * MAX_ACCEPT_LENGTH,
        "text/html," * 100_000,
        "text/html;q=1;" * 10_000,
    ],
)
def test_not_navigation_when_accept_is_malformed(accept: str) -> None:
    assert not is_browser_navigation("GET", accept, "navigate")


@pytest.mark.parametrize(
    "sec_fetch_mode", ["cors", "no-cors", "same-origin", "websocket", "", "navigated"]
)
def test_not_navigation_when_fetch_mode_is_not_navigate(sec_fetch_mode: str) -> None:
    assert not is_browser_navigation("GET", CHROME_NAVIGATE, sec_fetch_mode)


def test_navigation_when_fetch_mode_differs_only_in_case() -> None:
    assert is_browser_navigation("GET", CHROME_NAVIGATE, "Navigate")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "head"])
def test_not_navigation_when_method_is_not_get_or_head(method: str) -> None:
    assert not is_browser_navigation(method, CHROME_NAVIGATE, "navigate")

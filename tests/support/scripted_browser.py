"""A scripted "browser" for login flows without Chromium: follows redirects by hand,
keeps cookies per origin (host:port, as a browser keeps them per host), fills the IdP's
login form. The real-browser test uses Chromium; this one makes API-level tests fast."""

from __future__ import annotations

import html
import re
from http.cookies import SimpleCookie
from urllib.parse import urljoin, urlsplit

import aiohttp

from tests.support.secrets import WATCH

FORM_ACTION = re.compile(r'<form id="kc-form-login" action="([^"]+)"')


class ScriptedBrowser:
    """Use as ``async with ScriptedBrowser() as browser``; it owns a cookie-less client."""

    def __init__(self) -> None:
        # DummyCookieJar: this class alone decides which cookies are sent.
        self.client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.cookies: dict[str, dict[str, str]] = {}

    async def __aenter__(self) -> ScriptedBrowser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    def jar(self, url: str) -> dict[str, str]:
        return self.cookies.setdefault(urlsplit(url).netloc, {})

    async def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: object
    ) -> tuple[int, dict[str, str], str, list[str]]:
        """One request, no redirect following; returns status, headers, body, Set-Cookies."""
        jar = self.jar(url)
        all_headers = dict(headers or {})
        if jar:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        async with self.client.request(
            method,
            url,
            headers=all_headers,
            allow_redirects=False,
            **kwargs,  # type: ignore[arg-type]
        ) as resp:
            body = await resp.text()
            set_cookies = resp.headers.getall("Set-Cookie", [])
            for line in set_cookies:
                parsed: SimpleCookie = SimpleCookie()
                parsed.load(line)
                for name, morsel in parsed.items():
                    if morsel["max-age"] == "0" or (
                        morsel["expires"] and "1970" in morsel["expires"]
                    ):
                        jar.pop(name, None)
                    else:
                        jar[name] = morsel.value
                        WATCH.add(morsel.value)
            return resp.status, dict(resp.headers), body, set_cookies

    async def navigate(self, url: str, stop_at: str | None = None) -> tuple[str, int, str]:
        """GET and follow redirects; stop before a URL starting with ``stop_at``."""
        for _ in range(20):
            if stop_at and url.startswith(stop_at):
                return url, 0, ""
            status, headers, body, _ = await self.request("GET", url, headers=NAVIGATION)
            if status in (301, 302, 303, 307, 308):
                url = urljoin(url, headers["Location"])
                continue
            return url, status, body
        raise RuntimeError("too many redirects")

    async def login(self, proxy_url: str, username: str, return_path: str = "/") -> str:
        """Log in through the proxy's /oauth2/start; returns where the proxy sent us."""
        status, headers, body = await self.sign_in(proxy_url, username, return_path)
        assert status == 302, (status, body[:300])
        return headers["Location"]

    async def sign_in(
        self, proxy_url: str, username: str, return_path: str = "/"
    ) -> tuple[int, dict[str, str], str]:
        """The whole login; the proxy's answer to the callback (status, headers, body)."""
        start = f"{proxy_url}/oauth2/start?rd={return_path}"
        status, headers, _, _ = await self.request("GET", start, headers=NAVIGATION)
        assert status == 302, status
        url, status, body = await self.navigate(headers["Location"], stop_at=proxy_url)
        if status:  # the login form (no live session at the IdP)
            match = FORM_ACTION.search(body)
            assert match, body[:500]
            action = urljoin(url, html.unescape(match.group(1)))
            status, headers, _, _ = await self.request(
                "POST", action, data={"username": username, "password": "pw"}
            )
            assert status in (302, 303), status
            url, _, _ = await self.navigate(urljoin(action, headers["Location"]), proxy_url)
        status, headers, body, _ = await self.request("GET", url, headers=NAVIGATION)
        return status, headers, body


NAVIGATION = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Mode": "navigate",
}

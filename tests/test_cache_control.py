"""Every proxied answer is one account's answer: whose session, client credential or PAT
it was sent with decides what the upstream said. A shared cache in front of the proxy
(a CDN, a corporate proxy) must not hand it to anyone else, whatever the upstream's
``Cache-Control`` allows: ``public`` goes, ``private`` comes, every other directive
(``max-age``, ``no-store``, …) stays. In OAuth2 mode the answer also varies by ``Cookie``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from proxy.oauth.tokens import TokenSet
from tests.conftest import ProxyFactory
from tests.support.processes import free_port
from tests.test_clients import READER_ID, READER_TOKEN, basic, client, clients_env
from tests.test_faults import oauth_proxy, sealed_cookie

ServerFactory = Callable[..., Awaitable[TestServer]]
STREAMED = "&bytes=200000"  # above the forwarder's whole-read size: the streamed path


def directives(headers: CIMultiDictProxy[str]) -> list[str]:
    return [d.strip() for v in headers.getall("Cache-Control", []) for d in v.split(",")]


def vary(headers: CIMultiDictProxy[str]) -> list[str]:
    return [t.strip().lower() for v in headers.getall("Vary", []) for t in v.split(",")]


async def answer_headers(url: str, headers: dict[str, str] | None = None) -> CIMultiDictProxy[str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.get(url, headers=headers or {}) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
            return resp.headers


@pytest.mark.parametrize("size", ["", STREAMED], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("upstream_says", "proxy_says"),
    [
        (["public, max-age=600"], ["max-age=600", "private"]),
        (["max-age=60", "public"], ["max-age=60", "private"]),
        (["no-store"], ["no-store", "private"]),
        (["PUBLIC, s-maxage=600, must-revalidate"], ["s-maxage=600", "must-revalidate", "private"]),
        # a qualified private leaves the rest of the answer to shared caches
        (['private="Set-Cookie", max-age=600'], ["max-age=600", "private"]),
        (["private"], ["private"]),
        ([], ["private"]),  # no word from upstream: no heuristic caching either
    ],
)
async def test_account_answers_are_private_whatever_the_upstream_allows(
    make_proxy: ProxyFactory, upstream_says: list[str], proxy_says: list[str], size: str
) -> None:
    proxy = await make_proxy()
    query = "".join(f"&cc={value}" for value in upstream_says) or "&cc="
    headers = await answer_headers(str(proxy.make_url(f"/__test/cacheable?x=1{query}{size}")))
    assert directives(headers) == proxy_says
    assert "cookie" not in vary(headers)  # PAT mode: no cookie decides the answer


async def test_client_credential_answers_are_private(make_proxy: ProxyFactory) -> None:
    reader = client("reader", READER_ID, READER_TOKEN, ["GET /__test/**"])
    proxy = await make_proxy(clients_env(reader))
    url = str(proxy.make_url("/__test/cacheable"))
    headers = await answer_headers(url, basic(READER_ID, READER_TOKEN))
    assert directives(headers) == ["max-age=600", "private"]


@pytest.mark.parametrize("size", ["", STREAMED], ids=["whole", "streamed"])
async def test_session_answers_are_private_and_vary_by_cookie(
    aiohttp_server: ServerFactory, upstream: TestServer, size: str
) -> None:
    public_url = await oauth_proxy(
        aiohttp_server, upstream, "http://127.0.0.1:1/auth/realms/none", free_port()
    )
    cookie = sealed_cookie(TokenSet("alice.access.token", "r", time.time() + 3600, 4e9))
    url = f"{public_url}/__test/cacheable?x=1{size}"
    headers = await answer_headers(url, {"Cookie": cookie})
    assert directives(headers) == ["max-age=600", "private"]
    assert vary(headers) == ["accept-encoding", "cookie", "origin"]  # the upstream's kept

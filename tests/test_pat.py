"""Personal Access Token mode: exact header bytes, and only allowed client networks."""

from __future__ import annotations

import base64
import ipaddress

import aiohttp

from proxy.auth.headless_clients import ClientNetworks
from proxy.auth.personal_access_token import basic_authorization
from tests.conftest import PAT_ENV, ProxyFactory
from tests.test_forward import get_json, header_values


def test_basic_header_is_base64_of_id_colon_token() -> None:
    header = basic_authorization("token-AB12cd", "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11")
    expected = base64.b64encode(b"token-AB12cd:3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11")
    assert header == "Basic " + expected.decode()


def test_client_networks_when_addresses_vary() -> None:
    loopback = ClientNetworks(
        [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    )
    assert loopback.allows("127.0.0.1")
    assert loopback.allows("127.8.9.10")
    assert loopback.allows("::1")
    assert loopback.allows("::ffff:127.0.0.1")  # IPv4-mapped on a dual-stack socket
    assert not loopback.allows("10.0.0.1")
    assert not loopback.allows("::ffff:10.0.0.1")
    assert not loopback.allows(None)
    assert not loopback.allows("not-an-ip")
    assert not loopback.allows("")


async def test_forwarded_request_carries_exact_basic_header(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    status, echoed = await get_json(
        str(proxy.make_url("/v2/account")), headers={"Authorization": "Bearer client-supplied"}
    )
    token_id = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"]
    token = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"]
    raw = base64.b64encode(f"{token_id}:{token}".encode()).decode()
    assert status == 200
    assert header_values(echoed, "Authorization") == [f"Basic {raw}"]


async def test_client_outside_allowed_networks_gets_403(make_proxy: ProxyFactory) -> None:
    # Only 127.0.0.1 is allowed; the client connects from 127.0.0.2, a real other peer.
    proxy = await make_proxy({"SIPGATE_PROXY_AUTH__ALLOWED_CLIENT_NETWORKS": "[127.0.0.1/32]"})
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.get(proxy.make_url("/v2/account")) as resp:
            assert resp.status == 403
            body = await resp.json()
    assert body["error"] == "client_not_allowed"
    assert "token" not in str(body).lower().replace("client_not_allowed", "")
    status, _ = await get_json(str(proxy.make_url("/v2/account")))
    assert status == 200  # from 127.0.0.1


async def test_web_pages_cannot_borrow_the_loopback_position(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    url = str(proxy.make_url("/v2/sessions/sms"))
    async with aiohttp.ClientSession() as client:
        # a cross-site form or fetch from another site
        async with client.post(url, headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with client.get(url, headers={"Sec-Fetch-Site": "cross-site"}) as resp:
            assert resp.status == 403
        # DNS rebinding: the page's own origin, but a foreign host name
        rebound = {
            "Host": "rebind.evil.example:8080",
            "Sec-Fetch-Site": "same-origin",
        }
        async with client.get(url, headers=rebound) as resp:
            assert resp.status == 403
        # a page served by the proxy itself, and plain non-browser clients, are fine
        own = {"Host": "localhost:8080", "Origin": "http://localhost:8080"}
        async with client.post(url, headers=own) as resp:
            assert resp.status == 200
        async with client.post(url, headers={"Host": "sipgate-proxy.svc"}) as resp:
            assert resp.status == 200

"""An https upstream (what api.sipgate.com is), trusted through upstream.ca_file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy import config
from tests.conftest import PAT_ENV, ProxyFactory
from tests.support.tls import make_certificates
from tests.support.upstream import create_upstream_app
from tests.test_forward import get_json, header_values

ServerFactory = Callable[..., Awaitable[TestServer]]


async def _tls_upstream(aiohttp_server: ServerFactory, directory: Path) -> tuple[str, Path]:
    certificates = make_certificates(directory)
    server = await aiohttp_server(
        create_upstream_app(), ssl=certificates.server_context(), host="127.0.0.1"
    )
    return str(server.make_url("")).rstrip("/"), certificates.ca_file


async def test_https_upstream_trusted_through_ca_file(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    url, ca_file = await _tls_upstream(aiohttp_server, tmp_path)
    assert url.startswith("https://127.0.0.1:")
    proxy = await make_proxy(
        {"SIPGATE_PROXY_UPSTREAM__URL": url, "SIPGATE_PROXY_UPSTREAM__CA_FILE": str(ca_file)}
    )
    status, echoed = await get_json(str(proxy.make_url("/v2/account")))
    assert status == 200
    assert header_values(echoed, "Authorization")[0].startswith("Basic ")
    # a streamed answer well above the one-write limit arrives whole over TLS
    size = 3_000_000
    async with aiohttp.ClientSession() as client:
        url_ = proxy.make_url("/__test/download").with_query(bytes=str(size), length="1")
        async with client.get(url_) as resp:
            assert resp.status == 200
            assert len(await resp.read()) == size


async def test_untrusted_https_upstream_is_a_502_not_a_plain_connection(
    make_proxy: ProxyFactory,
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, _ = await _tls_upstream(aiohttp_server, tmp_path)  # signed by a CA nobody trusts
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__URL": url})
    status, body = await get_json(str(proxy.make_url("/v2/account")))
    assert status == 502
    assert body["error"] == "bad_gateway"
    handshake = [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert handshake, "the log says why, so an operator knows to set upstream.ca_file"
    assert "CERTIFICATE_VERIFY_FAILED" in handshake[0].getMessage()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), (b"not a certificate\n", "holds no PEM certificate")],
)
def test_unusable_ca_file_stops_the_start_naming_the_key(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    environ = {**PAT_ENV, "SIPGATE_PROXY_UPSTREAM__CA_FILE": str(ca_file)}
    with pytest.raises(config.ConfigError) as caught:
        config.load(None, environ)
    message = str(caught.value)
    assert "upstream.ca_file" in message
    assert reason in message

"""The floor for any aiohttp-based proxy: decrypt one AES-GCM cookie, add a Bearer header,
forward through a pooled client, stream the answer back. Nothing else (no routing beyond
a catch-all, no metrics, no logging, no header hygiene, no refresh).

Issue 8 states the proxy's CPU per request should stay within 1.1x of this; the benchmark
runs it in the same run as everything else so that ratio is measured, not assumed.

The cookie is ``bare=<base64url(nonce | AESGCM(key, plaintext))>``; the plaintext is the
access token followed by padding, so the sealed cookie is as long as the proxy's.

Usage: python bench/bare_passthrough.py PORT UPSTREAM_URL KEY_B64 [PROCESSES]
"""

from __future__ import annotations

import base64
import multiprocessing
import signal
import sys

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "bare"
AAD = b"bench-bare"


def seal(key: bytes, access_token: str, total_plaintext: int) -> str:
    import os

    plaintext = (
        access_token.encode()
        + b"\x00"
        + os.urandom(max(0, total_plaintext - len(access_token) - 1))
    )
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, AAD)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def make_app(upstream: str, key: bytes) -> web.Application:
    cipher = AESGCM(key)
    state: dict[str, aiohttp.ClientSession] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        text = request.cookies.get(COOKIE)
        if not text:
            return web.json_response({"error": "unauthenticated"}, status=401)
        sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plaintext = cipher.decrypt(sealed[:12], sealed[12:], AAD)
        token = plaintext.split(b"\x00", 1)[0].decode()
        async with state["client"].request(
            request.method,
            upstream + request.raw_path,
            headers={"Authorization": "Bearer " + token},
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status)
            content_type = upstream_response.headers.get("Content-Type")
            if content_type:
                response.headers["Content-Type"] = content_type
            if upstream_response.content_length is not None:
                response.content_length = upstream_response.content_length
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def client(app: web.Application):  # type: ignore[no-untyped-def]
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        ) as session:
            state["client"] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def serve(port: int, upstream: str, key: bytes, reuse_port: bool) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        make_app(upstream, key),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        max_field_size=65536,
        max_line_size=65536,
        reuse_port=reuse_port,
    )


def main() -> None:
    port, upstream, key_b64 = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    key = base64.b64decode(key_b64)
    if workers == 1:
        serve(port, upstream, key, reuse_port=False)
        return
    # N processes on one port (SO_REUSEPORT), forked after the imports, like a
    # pre-forking server; SIGTERM to the parent stops them all.
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=serve, args=(port, upstream, key, True)) for _ in range(workers)
    ]
    for child in children:
        child.start()

    def stop(signum: int, frame: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()


if __name__ == "__main__":
    main()

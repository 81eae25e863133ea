"""Session keys rotate without a restart: SIGHUP loads the configuration again; what only
a removed key sealed is no session any more, at once (the opened-cookie cache included),
and a configuration that does not load changes nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from proxy.crypto.keys import decode_key, generate_key
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from tests.support.processes import free_port, http_status, running
from tests.support.secrets import WATCH
from tests.support.sessions import cookie_store, opened, seal

COOKIE = "sipgate_proxy"


def session_cookie(key: str) -> str:
    store = cookie_store(KeyRing([decode_key(key)]), COOKIE, False, 30 * 86400)
    now = time.time()
    tokens = TokenSet("eyJh.eyJz.c2ln" + os.urandom(8).hex(), "refresh", now + 3600, now + 86400)
    lines = seal(store, tokens, now, {})
    cookie = "; ".join(line.split(";", 1)[0] for line in lines)
    WATCH.add(cookie.split("=", 1)[1])
    return cookie


def test_new_keys_close_what_only_the_old_ones_opened_even_when_cached() -> None:
    old, new = generate_key(), generate_key()
    ring = KeyRing([decode_key(old)])
    store = cookie_store(ring, COOKIE, False, 30 * 86400)
    now = time.time()
    jar = dict(
        line.split(";", 1)[0].split("=", 1)
        for line in seal(store, TokenSet("a.b.c", "r", now + 3600, now + 86400), now, {})
    )
    assert opened(store, jar) is not None  # now in the opened-cookie cache
    ring.replace([decode_key(new), decode_key(old)])  # rotation: the new one seals
    assert opened(store, jar) is not None  # the old key still opens
    ring.replace([decode_key(new)])  # the old key retired
    assert opened(store, jar) is None


def test_sighup_rotates_the_session_keys_and_a_broken_file_changes_nothing(
    tmp_path: Path,
) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    old, new = generate_key(), generate_key()
    keys_file = tmp_path / "session-keys"
    keys_file.write_text(old + "\n")
    env = {
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_PUBLIC_URL": f"http://localhost:{proxy_port}",
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_AUTH__MODE": "oauth2",
        # an IdP that is not there: these sessions never need a refresh
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": f"http://127.0.0.1:{free_port()}/realms/x",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "rotation",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "rotation-secret",
        "SIPGATE_PROXY_SESSION__KEYS_FILE": str(keys_file),
        "SIPGATE_PROXY_LOG__LEVEL": "info",
    }
    log = tmp_path / "proxy.log"
    url = f"http://127.0.0.1:{proxy_port}/v2/account"
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=log) as proxy,
    ):
        with_old, with_new = session_cookie(old), session_cookie(new)
        assert http_status(url, cookie_headers(with_old)) == 200
        assert http_status(url, cookie_headers(with_new)) == 401
        keys_file.write_text("not a key\n")  # broken: nothing may change
        proxy.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration not reloaded" in log.read_text())
        assert http_status(url, cookie_headers(with_old)) == 200
        keys_file.write_text(new + "\n")  # the old key retired
        proxy.send_signal(signal.SIGHUP)
        assert wait_for(lambda: http_status(url, cookie_headers(with_old)) == 401)
        assert http_status(url, cookie_headers(with_new)) == 200
    text = log.read_text()
    assert text.count("configuration not reloaded") == 1
    assert "session.keys" in text  # the problem names the key, never the value
    assert old not in text
    assert new not in text


def wait_for(condition: object, seconds: float = 10) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def cookie_headers(cookie: str) -> dict[str, str]:
    return {"Cookie": cookie, "Accept": "application/json"}

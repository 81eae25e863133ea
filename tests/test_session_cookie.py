"""The session cookie codec: sealing, packing and chunking, with sipgate-sized tokens."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import (
    MAX_SET_COOKIE_BYTES,
    CookieAttributes,
    read_chunks,
    write_chunks,
)
from proxy.session.store import SessionStore
from tests.support.sessions import cookie_store, opened, run_now, seal

NOW = 1_800_000_000.0
# sipgate's sample token response from its authentication docs (real Keycloak tokens
# from 2018, long expired): access 1193 B, refresh 1141 B, id 1001 B.
SEED = Path(__file__).parent / "data" / "sipgate-token-response.json"


def seed_token_response() -> dict[str, object]:
    return dict(json.loads(SEED.read_text()))


def sipgate_tokens(keep_id_token: bool = True) -> TokenSet:
    return TokenSet.from_response(seed_token_response(), NOW, keep_id_token=keep_id_token)


def storage(keys: list[bytes] | None = None, name: str = "sipgate_proxy") -> SessionStore:
    ring = KeyRing(keys or [bytes(32)])
    return cookie_store(ring, name, secure=True, max_lifetime=30 * 86400, clock=lambda: NOW)


def as_jar(set_cookies: list[str]) -> dict[str, str]:
    """What a browser keeps from Set-Cookie lines (expired ones removed)."""
    jar: dict[str, str] = {}
    for line in set_cookies:
        name, _, rest = line.partition("=")
        value = rest.split(";", 1)[0]
        if "Max-Age=0" in line:
            jar.pop(name, None)
        else:
            jar[name] = value
    return jar


def test_seed_tokens_have_sipgate_sizes() -> None:
    tokens = sipgate_tokens()
    assert (
        len(tokens.access_token),
        len(tokens.refresh_token or ""),
        len(tokens.id_token or ""),
    ) == (
        1193,
        1141,
        1001,
    )


def test_round_trip_when_session_has_sipgate_sized_tokens() -> None:
    store, tokens = storage(), sipgate_tokens()
    headers = seal(store, tokens, NOW - 10, {})
    loaded = opened(store, as_jar(headers))
    assert loaded is not None
    assert loaded.tokens == tokens
    assert loaded.created == NOW - 10


@pytest.mark.parametrize("rejected", [False, True])
def test_round_trip_keeps_whether_the_upstream_refused_a_refreshed_token(rejected: bool) -> None:
    tokens = replace(sipgate_tokens(), rejected_after_refresh=rejected)
    stored = StoredSession(tokens, NOW - 10, NOW)
    encoded = session_codec.encode(stored)
    assert session_codec.decode(encoded).tokens.rejected_after_refresh is rejected
    # the note costs nothing in the usual case: no field at all when it is not set
    plain = session_codec.encode(StoredSession(sipgate_tokens(), NOW - 10, NOW))
    assert (encoded == plain) is not rejected


def test_every_set_cookie_fits_4096_bytes_with_sipgate_tokens() -> None:
    headers = seal(storage(), sipgate_tokens(), NOW, {})
    assert len(headers) == 1  # 3335 bytes of tokens fit one cookie after packing
    assert all(len(f"Set-Cookie: {h}") <= MAX_SET_COOKIE_BYTES for h in headers)
    assert "HttpOnly" in headers[0]
    assert "SameSite=Lax" in headers[0]
    assert "Secure" in headers[0]
    assert "Path=/" in headers[0]


def test_packing_is_exact_for_non_jwt_and_odd_tokens() -> None:
    odd = TokenSet("not.a.jwt!", "opaque-refresh", NOW + 300, NOW + 3600, "all", "sub", "a.b")
    stored = StoredSession(odd, NOW, NOW)
    assert session_codec.decode(session_codec.encode(stored)) == stored


def test_every_flipped_character_is_no_session() -> None:
    store = storage()
    value = as_jar(seal(store, sipgate_tokens(), NOW, {}))["sipgate_proxy_0"]
    for position in range(len(value)):
        swap = "A" if value[position] != "A" else "B"
        flipped = value[:position] + swap + value[position + 1 :]
        # the last character of unpadded base64 can hide bits that decode to nothing
        if flipped.rstrip("=") != value and position < len(value) - 1:
            assert opened(store, {"sipgate_proxy_0": flipped}) is None, position


def test_every_flipped_bit_of_the_sealed_bytes_is_rejected() -> None:
    ring = KeyRing([bytes(32)])
    sealed = ring.seal(b"x" * 100, b"ctx")
    for position in range(len(sealed)):
        for bit in range(8):
            tampered = bytearray(sealed)
            tampered[position] ^= 1 << bit
            assert ring.open(bytes(tampered), b"ctx") is None


@pytest.mark.parametrize("cut", [1, 2, 3, 10, 100, 500, 1000])
def test_truncated_cookie_is_no_session(cut: int) -> None:
    store = storage()
    value = as_jar(seal(store, sipgate_tokens(), NOW, {}))["sipgate_proxy_0"]
    assert opened(store, {"sipgate_proxy_0": value[:-cut]}) is None


def test_chunks_reordered_or_missing_is_no_session() -> None:
    store = storage()
    big = TokenSet(
        base64.urlsafe_b64encode(os.urandom(9000)).decode(),  # incompressible
        "r" * 10,
        NOW + 300,
        NOW + 3600,
    )
    jar = as_jar(seal(store, big, NOW, {}))
    assert len(jar) >= 3
    assert opened(store, jar) is not None
    swapped = dict(jar)
    swapped["sipgate_proxy_1"], swapped["sipgate_proxy_2"] = (
        jar["sipgate_proxy_2"],
        jar["sipgate_proxy_1"],
    )
    assert opened(store, swapped) is None
    missing = {k: v for k, v in jar.items() if k != "sipgate_proxy_1"}
    assert opened(store, missing) is None


@pytest.mark.parametrize(
    "first",
    ["", ".", "0.abc", "9.abc", "99.abc", "-1.abc", "x.abc", "1.", "1.%%%", "1." + "A" * 40000],
)
def test_malformed_chunk_header_is_no_session(first: str) -> None:
    assert opened(storage(), {"sipgate_proxy_0": first}) is None


def test_key_rotation_old_key_still_opens_new_key_seals() -> None:
    old, new = os.urandom(32), os.urandom(32)
    written_with_old = seal(storage([old]), sipgate_tokens(), NOW, {})
    rotated = storage([new, old])
    assert opened(rotated, as_jar(written_with_old)) is not None
    rewritten = seal(rotated, sipgate_tokens(), NOW, {})
    assert opened(storage([new]), as_jar(rewritten)) is not None
    assert opened(storage([old]), as_jar(rewritten)) is None  # sealed with the new key


def test_removed_key_means_no_session() -> None:
    written = seal(storage([os.urandom(32)]), sipgate_tokens(), NOW, {})
    assert opened(storage([os.urandom(32)]), as_jar(written)) is None


def test_cookie_name_is_bound_to_the_value() -> None:
    value = as_jar(seal(storage(name="app_a"), sipgate_tokens(), NOW, {}))["app_a_0"]
    assert opened(storage(name="app_b"), {"app_b_0": value}) is None


def test_seal_time_is_enforced() -> None:
    ring = KeyRing([bytes(32)])
    old_writer = cookie_store(ring, "s", True, 3600, clock=lambda: NOW - 7200)
    future_writer = cookie_store(ring, "s", True, 3600, clock=lambda: NOW + 600)
    reader = cookie_store(ring, "s", True, 3600, clock=lambda: NOW)
    fresh = TokenSet("a", "r", NOW + 300, NOW + 86400)
    assert opened(reader, as_jar(seal(old_writer, fresh, NOW, {}))) is None
    assert opened(reader, as_jar(seal(future_writer, fresh, NOW, {}))) is None


def test_shrinking_session_expires_stale_chunks() -> None:
    store = storage()
    big = TokenSet(base64.urlsafe_b64encode(os.urandom(9000)).decode(), "r", NOW + 300, NOW + 3600)
    jar = as_jar(seal(store, big, NOW, {}))
    assert len(jar) >= 3
    headers = seal(store, sipgate_tokens(), NOW, {**jar, "other": "1"})
    expired = [h.split("=")[0] for h in headers if "Max-Age=0" in h]
    assert expired == sorted(n for n in jar if n != "sipgate_proxy_0")
    after = as_jar(headers)
    browser = {**{k: v for k, v in jar.items() if k not in expired}, **after}
    assert set(browser) == {"sipgate_proxy_0"}
    assert opened(store, browser) is not None


@pytest.mark.parametrize("name_length", [1, 20, 64])
def test_chunks_stay_at_or_under_4096_whatever_the_name_length(name_length: int) -> None:
    name = "n" * name_length
    attributes = CookieAttributes(secure=True)
    for size in (1, 100, 3900, 4000, 4096, 8000, 12_000):
        headers = write_chunks(name, "v" * size, attributes, 2592000, {})
        assert all(len(f"Set-Cookie: {h}") <= MAX_SET_COOKIE_BYTES for h in headers)
        jar = as_jar(headers)
        assert read_chunks(name, jar) == "v" * size
        # and the boundary is used: no chunk is needlessly short but the last
        if len(headers) > 1:
            assert len(f"Set-Cookie: {headers[0]}") >= MAX_SET_COOKIE_BYTES - 8


def test_clear_expires_every_chunk_present() -> None:
    jar = {"sipgate_proxy_0": "1.x", "sipgate_proxy_1": "y", "sipgate_proxy_flow_a": "f", "x": "1"}
    cleared = run_now(storage().clear(jar))
    assert [h.split("=")[0] for h in cleared] == ["sipgate_proxy_0", "sipgate_proxy_1"]
    assert all("Max-Age=0" in h for h in cleared)


def test_repr_never_shows_tokens() -> None:
    tokens = sipgate_tokens()
    assert tokens.access_token not in repr(tokens)
    assert (tokens.refresh_token or "x") not in repr(tokens)


@pytest.mark.parametrize("first", ["².abc", "①.abc", "\u0661.abc", "1\u200b.abc"])
def test_unicode_digits_in_chunk_count_are_no_session(first: str) -> None:
    assert opened(storage(), {"sipgate_proxy_0": first}) is None

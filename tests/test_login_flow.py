"""Login-attempt cookies: one per tab, single use, capped, expiring, tamper-proof."""

from __future__ import annotations

import pytest

from proxy.crypto.sealing import KeyRing
from proxy.login.flow_cookie import FLOW_LIFETIME, MAX_FLOWS, LoginFlows
from proxy.session.cookie_chunks import CookieAttributes

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def flows(clock: Clock | None = None) -> LoginFlows:
    return LoginFlows(
        KeyRing([bytes(32)]),
        "sipgate_proxy",
        CookieAttributes(secure=True, path="/oauth2/"),
        clock=clock or Clock(),
    )


def jar(headers: list[str], base: dict[str, str] | None = None) -> dict[str, str]:
    cookies = dict(base or {})
    for line in headers:
        name, _, rest = line.partition("=")
        if "Max-Age=0" in line:
            cookies.pop(name, None)
        else:
            cookies[name] = rest.split(";", 1)[0]
    return cookies


def test_flow_round_trips_once_when_state_matches() -> None:
    login = flows()
    flow, headers = login.begin("/v2/account", pkce=True, nonce=True, cookies={})
    assert "Path=/oauth2/" in headers[0]
    assert "Max-Age=600" in headers[0]
    found, expire = login.finish(flow.state, jar(headers))
    assert found == flow
    assert found.verifier is not None
    assert found.nonce is not None
    assert all("Max-Age=0" in h for h in expire)
    again, _ = login.finish(flow.state, jar(headers))  # replay with the same cookie
    assert again is None


@pytest.mark.parametrize("filler", ["a", '"', "%"])
def test_flow_opens_and_fits_one_cookie_when_return_path_is_the_longest_allowed(
    filler: str,
) -> None:
    # 2048 is the documented rd limit; '"' is the character JSON would have to escape.
    longest = "/?" + filler * (2048 - 2)
    login = LoginFlows(
        KeyRing([bytes(32)]), "n" * 64, CookieAttributes(secure=True, path="/oauth2/")
    )
    flow, headers = login.begin(longest, pkce=True, nonce=True, cookies={})
    assert len("Set-Cookie: " + headers[0]) <= 4096
    found, _ = login.finish(flow.state, jar(headers))
    assert found is not None
    assert found.return_path == longest


def test_state_is_unguessable_and_verifier_long_enough() -> None:
    first, _ = flows().begin("/", True, False, {})
    second, _ = flows().begin("/", True, False, {})
    assert first.state != second.state
    assert len(first.state) >= 43
    assert first.verifier is not None
    assert 43 <= len(first.verifier) <= 128
    assert first.nonce is None


def test_wrong_state_or_foreign_cookie_is_refused() -> None:
    login = flows()
    flow, headers = login.begin("/", True, False, {})
    cookies = jar(headers)
    assert login.finish(flow.state + "x", cookies)[0] is None
    _, other_headers = login.begin("/", True, False, {})
    # The cookie of attempt B renamed to attempt A's name does not open as A.
    (name_a,) = cookies
    (name_b,) = jar(other_headers)
    swapped = {name_a: jar(other_headers)[name_b]}
    assert login.finish(flow.state, swapped)[0] is None


def test_flow_expires_after_its_lifetime() -> None:
    clock = Clock()
    login = flows(clock)
    flow, headers = login.begin("/", True, False, {})
    clock.now += FLOW_LIFETIME + 1
    assert login.finish(flow.state, jar(headers))[0] is None


def test_several_tabs_log_in_at_once_and_oldest_beyond_cap_is_dropped() -> None:
    clock = Clock()
    login = flows(clock)
    cookies: dict[str, str] = {}
    started = []
    for _ in range(MAX_FLOWS + 2):
        clock.now += 1
        flow, headers = login.begin("/", True, False, cookies)
        cookies = jar(headers, cookies)
        started.append(flow)
    assert len(cookies) == MAX_FLOWS
    assert login.finish(started[0].state, cookies)[0] is None  # evicted
    assert login.finish(started[-1].state, cookies)[0] == started[-1]
    assert login.finish(started[-2].state, cookies)[0] == started[-2]


def test_tampered_flow_cookie_is_refused() -> None:
    login = flows()
    flow, headers = login.begin("/", True, False, {})
    ((name, value),) = jar(headers).items()
    for tampered in (value[:-2], value + "A", "", "%%%", "A" * 5000):
        assert login.finish(flow.state, {name: tampered})[0] is None

"""One short-lived encrypted cookie per login attempt: state, PKCE verifier, nonce, return path.

Each attempt has its own cookie (named after a digest of its state), so several tabs can
log in at once; at most ``MAX_FLOWS`` are kept, oldest dropped first. The cookie's path
is the login prefix, so proxied API requests never carry it, except under a ``__Host-``
name: the flow cookie keeps the prefix (a flow cookie tossed from a sibling subdomain
would carry the attacker's state: login CSRF), and the prefix demands ``Path=/``.
A state is good once: the callback expires its cookie, and a bounded in-memory set
refuses a replay meanwhile.

The sealed text is the JSON of the generated fields, a newline, then the return path as
is (printable ASCII, never escaped), so its size is known: any return path that
``redirects`` lets through fits ``MAX_FLOW_COOKIE``, and that fits one Set-Cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.auth import redirects
from proxy.clock import Clock
from proxy.crypto import b64
from proxy.crypto.sealing import HEADER_BYTES, TAG_BYTES, KeyRing, context
from proxy.oauth.pkce import pkce_verifier
from proxy.session.cookie_chunks import CookieAttributes, host_only

FLOW_LIFETIME = 600  # seconds a user has to complete the IdP's login form
MAX_FLOWS = 5
_MAX_FIELDS = 256  # JSON of state (43), verifier (64), nonce (32), start time: ~180 bytes
MAX_FLOW_COOKIE = -(-(HEADER_BYTES + _MAX_FIELDS + 1 + redirects.MAX_LENGTH + TAG_BYTES) * 4 // 3)


def flow_attributes(cookie_name: str, secure: bool, login_prefix: str) -> CookieAttributes:
    """Flow cookies live under the login prefix, or at "/" where the name demands it."""
    return CookieAttributes(secure, path="/" if host_only(cookie_name) else login_prefix + "/")


@dataclass(frozen=True)
class LoginFlow:
    state: str
    verifier: str | None
    nonce: str | None
    return_path: str
    started_at: float


class LoginFlows:
    def __init__(
        self,
        keys: KeyRing,
        cookie_name: str,
        attributes: CookieAttributes,
        clock: Clock = time.time,
    ) -> None:
        self.cookie_name = cookie_name
        self._keys = keys
        self._prefix = f"{cookie_name}_flow_"
        self._attributes = attributes
        self._clock = clock
        self._used = _UsedStates()

    def begin(
        self, return_path: str, pkce: bool, nonce: bool, cookies: Mapping[str, str]
    ) -> tuple[LoginFlow, list[str]]:
        verifier = pkce_verifier() if pkce else None
        flow = LoginFlow(
            state=secrets.token_urlsafe(32),
            verifier=verifier,
            nonce=secrets.token_urlsafe(24) if nonce else None,
            return_path=redirects.safe_return_path(return_path),
            started_at=self._clock(),
        )
        name = self._name(flow.state)
        fields = json.dumps([flow.state, flow.verifier, flow.nonce, flow.started_at]).encode()
        assert len(fields) <= _MAX_FIELDS, "flow fields outgrew MAX_FLOW_COOKIE"
        payload = fields + b"\n" + flow.return_path.encode("ascii")
        sealed = self._keys.seal(payload, context("flow", name))
        value = b64.encode(sealed)
        headers = [f"{name}={value}; {self._attributes.render(FLOW_LIFETIME)}"]
        return flow, headers + self._evict_oldest(cookies)

    def finish(self, state: str, cookies: Mapping[str, str]) -> tuple[LoginFlow | None, list[str]]:
        """The flow for this state (once), and the Set-Cookie that ends it."""
        name = self._name(state)
        flow = self._open(name, cookies.get(name))
        expire = [self._expire(name)] if name in cookies else []
        if flow is None or not hmac.compare_digest(flow.state.encode(), state.encode()):
            return None, expire
        if not self._used.claim(flow.state, flow.started_at + FLOW_LIFETIME, self._clock()):
            return None, expire
        return flow, expire

    def peek_return_path(self, state: str | None, cookies: Mapping[str, str]) -> str:
        """Where a failed attempt started, for a retry link (never a redirect)."""
        if not state:
            return "/"
        flow = self._open(self._name(state), cookies.get(self._name(state)))
        return flow.return_path if flow else "/"

    def _name(self, state: str) -> str:
        digest = hashlib.sha256(state.encode("utf-8", "replace")).digest()
        return self._prefix + base64.urlsafe_b64encode(digest[:9]).decode("ascii")

    def _open(self, name: str, value: str | None) -> LoginFlow | None:
        if not value or len(value) > MAX_FLOW_COOKIE:
            return None
        sealed = b64.decode(value)
        plaintext = self._keys.open(sealed, context("flow", name)) if sealed else None
        if plaintext is None:
            return None
        try:
            flow = _parse(plaintext)
        except (ValueError, TypeError):
            return None
        age = self._clock() - flow.started_at
        return flow if -60 <= age <= FLOW_LIFETIME else None

    def _evict_oldest(self, cookies: Mapping[str, str]) -> list[str]:
        flows = [name for name in cookies if name.startswith(self._prefix)]
        if len(flows) < MAX_FLOWS:
            return []

        def started(name: str) -> float:
            flow = self._open(name, cookies[name])
            return flow.started_at if flow else float("-inf")

        oldest_first = sorted(flows, key=started)
        return [self._expire(name) for name in oldest_first[: len(flows) - MAX_FLOWS + 1]]

    def _expire(self, name: str) -> str:
        return f"{name}=; {self._attributes.render(0)}"


def _parse(plaintext: bytes) -> LoginFlow:
    fields, newline, return_path = plaintext.partition(b"\n")
    if not newline:  # written before the return path moved out of the JSON
        state, verifier, nonce, old_path, started_at = json.loads(plaintext)
        return LoginFlow(state, verifier, nonce, str(old_path), float(started_at))
    state, verifier, nonce, started_at = json.loads(fields)
    return LoginFlow(state, verifier, nonce, return_path.decode("ascii"), float(started_at))


class _UsedStates:
    """States already redeemed, remembered until their flow would have expired anyway."""

    def __init__(self, limit: int = 10_000) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def claim(self, state: str, until: float, now: float) -> bool:
        while self._until and next(iter(self._until.values())) < now:
            self._until.popitem(last=False)
        if state in self._until:
            return False
        self._until[state] = until
        if len(self._until) > self._limit:
            self._until.popitem(last=False)
        return True

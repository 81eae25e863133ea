"""The token set a session holds, with absolute expiry times computed on arrival."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from proxy.oauth.errors import MalformedTokenResponse, TokenSetTooLarge

# sipgate's refresh tokens live 30 days; used when an IdP does not say.
DEFAULT_REFRESH_LIFETIME = 30 * 24 * 3600


# Token text (access + refresh + kept ID token + scope) a session holds at most: five
# times sipgate's 3.3 KB, and even incompressible it seals into 6 cookies of < 4 KB
# (the cookie store's limit is 8), far inside every store's field limits.
MAX_TOKEN_SET_BYTES = 16 * 1024


_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1: what a Bearer header carries
_VSCHAR = re.compile(r"[\x20-\x7e]+")  # RFC 6749 Appendix A: refresh tokens, scopes


def _checked(value: object, pattern: re.Pattern[str], name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedTokenResponse(f"{name} is not a token")
    return value


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: float  # unix seconds
    refresh_expires_at: float
    scope: str = ""
    subject: str = ""
    id_token: str | None = None
    issued_at: float | None = None  # when the IdP's answer arrived; None in older sessions
    # The upstream refused this access token right after a forced refresh produced it:
    # it is not the token the upstream minds, so its 401s force no further refresh.
    rejected_after_refresh: bool = False

    def __repr__(self) -> str:
        return (
            f"TokenSet(subject={self.subject!r}, scope={self.scope!r}, "
            f"expires_at={self.expires_at:.0f}, refresh_expires_at={self.refresh_expires_at:.0f}"
            ", tokens=<redacted>)"
        )

    def access_expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - now < seconds

    def refresh_due(self, skew: float, now: float) -> bool:
        """Less than min(skew, half the access token's lifetime) is left: a token that
        lives shorter than the skew is still used for half its life, not refreshed on
        every request."""
        return self.access_expires_within(self.refresh_margin(skew), now)

    def refresh_margin(self, skew: float) -> float:
        if self.issued_at is None:
            return skew
        return min(skew, (self.expires_at - self.issued_at) / 2)

    def refresh_expired(self, now: float) -> bool:
        return self.refresh_token is None or self.refresh_expires_at <= now

    def unusable(self, now: float) -> bool:
        """Neither the access token nor a refresh can serve a request any more."""
        return self.refresh_expired(now) and self.expires_at <= now

    @classmethod
    def from_response(
        cls,
        body: Mapping[str, Any],
        now: float,
        previous: TokenSet | None = None,
        keep_id_token: bool = False,
    ) -> TokenSet:
        """Build from a token endpoint answer; ``previous`` fills what a refresh leaves out."""
        access = _access_token(body)
        refresh, refresh_at = _refresh_token(body, now, previous)
        expires_at = now + _seconds(body.get("expires_in"), default=300)
        scope = _checked(body.get("scope"), _VSCHAR, "scope")
        id_token = _checked(body.get("id_token"), _B64TOKEN, "id_token") if keep_id_token else None
        _check_size(access, refresh, id_token, scope)
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=expires_at,
            refresh_expires_at=refresh_at,
            scope=scope if scope is not None else (previous.scope if previous else ""),
            subject=unverified_claim(access, "sub") or (previous.subject if previous else ""),
            id_token=id_token,
            issued_at=now,
        )

    def with_subject(self, subject: str) -> TokenSet:
        return replace(self, subject=subject)


def _access_token(body: Mapping[str, Any]) -> str:
    access = _checked(body.get("access_token"), _B64TOKEN, "access_token")
    if access is None:
        raise MalformedTokenResponse("no access_token")
    if str(body.get("token_type", "bearer")).lower() != "bearer":
        raise MalformedTokenResponse("token_type is not bearer")
    return access


def _refresh_token(
    body: Mapping[str, Any], now: float, previous: TokenSet | None
) -> tuple[str | None, float]:
    """The refresh token and when it expires."""
    refresh = _checked(body.get("refresh_token"), _VSCHAR, "refresh_token")
    refresh_in = _seconds(body.get("refresh_expires_in"), default=DEFAULT_REFRESH_LIFETIME)
    # A refresh that does not rotate keeps the old refresh token and its lifetime.
    if refresh is None and previous is not None:
        return previous.refresh_token, previous.refresh_expires_at
    return refresh, now + (refresh_in if refresh_in > 0 else DEFAULT_REFRESH_LIFETIME)


def _check_size(*tokens: str | None) -> None:
    size = sum(len(t or "") for t in tokens)
    if size > MAX_TOKEN_SET_BYTES:
        raise TokenSetTooLarge(
            f"token answer of {size} bytes is more than a session holds ({MAX_TOKEN_SET_BYTES})"
        )


def _seconds(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if not math.isfinite(value) or value < 0:
        raise MalformedTokenResponse("an expiry that is not a number of seconds")
    return float(value)


def unverified_claim(jwt: str, claim: str) -> str:
    """A claim from a JWT payload, read without verification.

    Only for display and logging of tokens that came straight from the token endpoint
    over TLS; never for an access decision.
    """
    value = unverified_payload(jwt).get(claim)
    # printable: a JSON escape can produce a lone surrogate, which nothing can encode
    return value if isinstance(value, str) and value.isprintable() else ""


def unverified_payload(jwt: str) -> dict[str, Any]:
    """A JWT's payload, unverified (see ``unverified_claim``); {} when it is none."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}

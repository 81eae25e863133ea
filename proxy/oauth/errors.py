"""What can go wrong speaking OAuth with the IdP. Protocol facts only: the proxy's HTTP
answers to them (proxy/errors.py) are chosen where they are caught, never here.

    OAuthError
    ├── TokenError                the token endpoint answered {"error": …} (invalid_grant,
    │                             invalid_client, …): ``code`` decides, never the text
    ├── NoUsableAnswer            the IdP gave no answer the protocol can use: try later
    │   ├── IdPUnreachable        no connection, or it broke
    │   ├── IdPTimeout            the token endpoint did not answer in time: the IdP may
    │   │                         still have acted on the request
    │   └── BadAnswer             5xx, too large, not JSON, a discovery document that does
    │       │                     not fit the issuer
    │       └── MalformedTokenResponse   HTTP 200, but not a token set we can use (the
    │           │                        IdP has acted: a refresh token may be rotated)
    │           └── TokenSetTooLarge     more token text than any session holds
    └── InvalidIdToken            the ID token's signature, issuer, audience, expiry or
                                  nonce does not check out
"""

from __future__ import annotations

# Codes after which the grant is gone for good: the user has to log in again.
FATAL_CODES = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class OAuthError(Exception):
    pass


class TokenError(OAuthError):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"token endpoint error {code} (HTTP {status})")
        self.code = code
        self.status = status

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


class NoUsableAnswer(OAuthError):
    pass


class IdPUnreachable(NoUsableAnswer):
    pass


class IdPTimeout(NoUsableAnswer):
    pass


class BadAnswer(NoUsableAnswer):
    pass


class MalformedTokenResponse(BadAnswer, ValueError):
    pass


class TokenSetTooLarge(MalformedTokenResponse):
    """An answer whose tokens no session can hold: refused, never half-stored."""


class InvalidIdToken(OAuthError, ValueError):
    pass

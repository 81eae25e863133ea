"""Check an ID token (OIDC Core §3.1.3.7): signature by the IdP's JWKS, issuer, audience,
expiry, and the nonce this login attempt sent."""

from __future__ import annotations

import hmac
from typing import Any

from proxy.oauth.errors import InvalidIdToken

ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
LEEWAY = 60


def verify(
    id_token: str, jwks: dict[str, Any], issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    import jwt  # only at a login callback: not worth 2.7 MB in every worker from the start

    try:
        header = jwt.get_unverified_header(id_token)
        key = _signing_key(jwks, header.get("kid"), header.get("alg"))
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key,
            algorithms=ALLOWED_ALGORITHMS,
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as err:
        raise InvalidIdToken(type(err).__name__) from None
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise InvalidIdToken("nonce mismatch")
    return claims


def _signing_key(jwks: dict[str, Any], kid: object, alg: object) -> Any:
    import jwt

    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidIdToken("algorithm not allowed")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    matching = [k for k in keys if kid is None or k.get("kid") == kid]
    if not matching:
        raise InvalidIdToken("no matching signing key")
    try:
        return jwt.PyJWK(matching[0], algorithm=str(alg)).key
    except jwt.PyJWTError as err:
        raise InvalidIdToken(type(err).__name__) from None

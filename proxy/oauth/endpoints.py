"""Where the IdP's endpoints are: Keycloak's fixed layout under the issuer (sipgate's
realms by default), or the issuer's discovery document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.config import OAuth2
from proxy.oauth.errors import BadAnswer

SIPGATE_LOGIN = "https://login.sipgate.com/auth/realms/{realm}"


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization: str
    token: str
    jwks: str
    revocation: str | None
    end_session: str | None
    legacy_logout: str | None  # Keycloak's POST …/logout with refresh_token


def realm_of(settings: OAuth2) -> str:
    """sipgate's newer client ids end in ':<realm>'; that suffix wins over config."""
    if settings.client_id and ":" in settings.client_id:
        suffix = settings.client_id.rsplit(":", 1)[1]
        if suffix and all(c.isalnum() or c in "._-" for c in suffix):
            return suffix
    return settings.realm


def issuer_of(settings: OAuth2) -> str:
    return (settings.issuer or SIPGATE_LOGIN.format(realm=realm_of(settings))).rstrip("/")


def keycloak_endpoints(issuer: str) -> Endpoints:
    base = f"{issuer}/protocol/openid-connect"
    return Endpoints(
        issuer=issuer,
        authorization=f"{base}/auth",
        token=f"{base}/token",
        jwks=f"{base}/certs",
        revocation=f"{base}/revoke",
        end_session=f"{base}/logout",
        legacy_logout=f"{base}/logout",
    )


def endpoints_from_discovery(issuer: str, document: dict[str, Any]) -> Endpoints:
    if document.get("issuer", "").rstrip("/") != issuer:
        raise BadAnswer("discovery document names another issuer")
    try:
        return Endpoints(
            issuer=issuer,
            authorization=str(document["authorization_endpoint"]),
            token=str(document["token_endpoint"]),
            jwks=str(document["jwks_uri"]),
            revocation=document.get("revocation_endpoint"),
            end_session=document.get("end_session_endpoint"),
            legacy_logout=None,
        )
    except KeyError as missing:
        raise BadAnswer(f"discovery document lacks {missing}") from None

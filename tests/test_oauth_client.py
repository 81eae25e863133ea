"""Keycloak endpoint layout, realm from the client id, PKCE, token-response parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest

from proxy.config import OAuth2
from proxy.oauth.endpoints import issuer_of, keycloak_endpoints, realm_of
from proxy.oauth.errors import MalformedTokenResponse
from proxy.oauth.pkce import pkce_challenge
from proxy.oauth.tokens import TokenSet


@pytest.mark.parametrize(
    ("client_id", "realm", "expected"),
    [
        ("2556404-0-dc848ae6-085c-11e8-92a6-31b99c83912e", "sipgate-apps", "sipgate-apps"),
        (
            "2678637-1-2c52f4e4-1d8f-11ee-8a4b-0242ac120002:third-party",
            "sipgate-apps",
            "third-party",
        ),
        ("x:", "sipgate-apps", "sipgate-apps"),
        ("x:bad/realm", "third-party", "third-party"),
    ],
)
def test_realm_comes_from_client_id_suffix_when_present(
    client_id: str, realm: str, expected: str
) -> None:
    assert realm_of(OAuth2(client_id=client_id, realm=realm)) == expected


def test_default_issuer_and_keycloak_layout() -> None:
    issuer = issuer_of(OAuth2(client_id="1:third-party"))
    assert issuer == "https://login.sipgate.com/auth/realms/third-party"
    endpoints = keycloak_endpoints(issuer)
    base = "https://login.sipgate.com/auth/realms/third-party/protocol/openid-connect"
    assert endpoints.authorization == f"{base}/auth"
    assert endpoints.token == f"{base}/token"
    assert endpoints.jwks == f"{base}/certs"
    assert endpoints.revocation == f"{base}/revoke"
    assert endpoints.legacy_logout == f"{base}/logout"


def test_configured_issuer_wins() -> None:
    assert issuer_of(OAuth2(issuer="http://127.0.0.1:1/auth/realms/x/")) == (
        "http://127.0.0.1:1/auth/realms/x"
    )


def test_pkce_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert pkce_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_token_response_expiry_is_absolute_from_arrival() -> None:
    tokens = TokenSet.from_response(
        {
            "access_token": "a",
            "refresh_token": "r",
            "expires_in": 300,
            "refresh_expires_in": 2592000,
            "token_type": "bearer",
        },
        now=1000.0,
    )
    assert tokens.expires_at == 1300.0
    assert tokens.refresh_expires_at == 1000.0 + 2592000
    assert tokens.access_expires_within(30, now=1271.0)
    assert not tokens.access_expires_within(30, now=1269.0)


def test_refresh_without_rotation_keeps_previous_refresh_token() -> None:
    first = TokenSet.from_response({"access_token": "a", "refresh_token": "r1"}, now=0.0)
    second = TokenSet.from_response({"access_token": "b"}, now=10.0, previous=first)
    assert second.refresh_token == "r1"
    assert second.refresh_expires_at == first.refresh_expires_at


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"access_token": ""},
        {"access_token": 5},
        {"access_token": "a", "token_type": "mac"},
        {"access_token": "a", "refresh_token": 7},
    ],
)
def test_malformed_token_response_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(MalformedTokenResponse):
        TokenSet.from_response(body, now=0.0)

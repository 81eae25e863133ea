"""The ``auth`` section: the mode and each mode's credentials, the client networks and the
per-app client credentials. Every field carries its one-line description (``Meta``): the
configuration reference and the JSON Schema are generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from proxy.config.rules import allow_rules, known_scope
from proxy.config.secret import Secret
from proxy.config.section import Check, IPNetwork, Positive, Section, loopback

TokenId = Annotated[str, Meta(pattern=r"^token-[A-Za-z0-9]{6}\Z")]


class OAuth2(Section, frozen=True, kw_only=True):
    """sipgate's OAuth2 login (Keycloak): the OAuth client and how the proxy uses it."""

    realm: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._-]+\Z",
            description="Keycloak realm; a ':realm' suffix of client_id picks it instead",
        ),
    ] = "sipgate-apps"
    issuer: Annotated[
        str | None,
        Meta(
            description="the IdP's issuer URL; unset: https://login.sipgate.com/auth/realms/{realm}"
        ),
    ] = None
    discovery: Annotated[
        bool, Meta(description="read the endpoints from {issuer}/.well-known/openid-configuration")
    ] = False
    client_id: Annotated[
        str | None, Meta(description="the OAuth client's id (console.sipgate.com), sent unchanged")
    ] = None
    client_secret: Annotated[
        Secret | None, Meta(description="the OAuth client's secret (or client_secret_file)")
    ] = None
    client_auth: Annotated[
        Literal["client_secret_post", "client_secret_basic"],
        Meta(description="how the client authenticates at the token endpoint"),
    ] = "client_secret_post"
    scopes: Annotated[
        list[str],
        Meta(description="scopes the login asks for; a name sipgate does not know is warned about"),
    ] = msgspec.field(default_factory=lambda: ["all"])
    pkce: Annotated[bool, Meta(description="PKCE (S256) on the authorization-code flow")] = True
    # Below sipgate's 300 s token lifetime, or every request would refresh.
    refresh_skew: Annotated[
        float,
        Meta(
            ge=0,
            lt=300,
            description="seconds before expiry at which the access token is refreshed "
            "(at most half its lifetime)",
        ),
    ] = 30.0
    timeout: Annotated[
        Positive, Meta(description="seconds for any call to the IdP (token, revoke, JWKS)")
    ] = 10.0
    path_prefix: Annotated[
        str,
        Meta(
            pattern=r"^(/[A-Za-z0-9._~-]+)+\Z",
            description="where the proxy's own endpoints live (/oauth2/start, /callback, …)",
        ),
    ] = "/oauth2"
    idp_logout: Annotated[
        bool, Meta(description="sign-out also ends the login at the IdP (keeps the ID token)")
    ] = False
    enforce_scopes: Annotated[
        bool,
        Meta(
            description="refuse locally (403 insufficient_scope) what the session's token "
            "has no scope for"
        ),
    ] = False


class PersonalAccessToken(Section, frozen=True, kw_only=True):
    """personal_access_token mode: the account's Personal Access Token."""

    token_id: Annotated[
        TokenId | None, Meta(description="the token's id, token-XXXXXX (app.sipgate.com)")
    ] = None
    token: Annotated[Secret | None, Meta(description="the token itself (or token_file)")] = None


class Service(Section, frozen=True, kw_only=True):
    """service mode: one operator's login, used by headless clients."""

    allowed_subjects: Annotated[
        list[str], Meta(description="the subjects (the IdP's sub) that may become the identity")
    ] = msgspec.field(default_factory=list)
    state_file: Annotated[
        Path | None,
        Meta(description="where the sealed identity is kept; unset: in Redis (session.store)"),
    ] = None


class RateLimit(Section, frozen=True, kw_only=True):
    """A client's token bucket, per process."""

    requests: Annotated[int, Meta(ge=1, description="requests allowed per period")]
    per: Annotated[Positive, Meta(description="the period, in seconds")]


class Client(Section, frozen=True, kw_only=True):
    """One app's own credential for a shared mode (PAT, service): what it may call."""

    name: Annotated[
        str, Meta(pattern=r"^[a-z0-9-]{1,40}\Z", description="the app's name in logs and metrics")
    ]
    token_id: Annotated[TokenId, Meta(description="the credential's id (new-client prints it)")]
    token_sha256: Annotated[
        str,
        Meta(pattern=r"^[0-9a-f]{64}\Z", description="SHA-256 of the credential's token, in hex"),
    ]
    scopes: Annotated[
        list[Annotated[str, Check(known_scope)]],
        Meta(description="sipgate scopes whose operations the app may call (besides allow)"),
    ] = msgspec.field(default_factory=list)
    allow: Annotated[
        list[str],
        Check(allow_rules),
        Meta(description='calls the app may make, e.g. "GET,HEAD /v2/history/**"'),
    ] = msgspec.field(default_factory=list)
    networks: Annotated[
        list[IPNetwork] | None,
        Meta(description="where the credential works; unset: auth.allowed_client_networks"),
    ] = None
    rate_limit: Annotated[
        RateLimit | None, Meta(description="a token bucket for this app; unset: no limit")
    ] = None


class Auth(Section, frozen=True, kw_only=True):
    """Which credential requests leave with, and who may use it."""

    mode: Annotated[
        Literal["oauth2", "personal_access_token", "service"],
        Meta(
            description="oauth2: each user logs in; personal_access_token: the account's PAT; "
            "service: one operator's login for headless clients"
        ),
    ] = "oauth2"
    oauth2: OAuth2 = msgspec.field(default_factory=OAuth2)
    personal_access_token: PersonalAccessToken = msgspec.field(default_factory=PersonalAccessToken)
    service: Service = msgspec.field(default_factory=Service)
    # Headless modes (PAT, service) act as the account for anyone who reaches them.
    allowed_client_networks: Annotated[
        list[IPNetwork],
        Meta(description="PAT and service mode: the networks that may use the proxy"),
    ] = msgspec.field(default_factory=loopback)
    clients: Annotated[
        list[Client],
        Meta(description="PAT and service mode: each app presents its own credential"),
    ] = msgspec.field(default_factory=list)
    clients_file: Annotated[
        Path | None,
        Meta(description="more clients, same format (a mounted Secret); reloaded on change"),
    ] = None
    anonymous: Annotated[
        Literal["deny", "allow"],
        Meta(description="with clients: requests without a credential (allow: networks only)"),
    ] = "deny"

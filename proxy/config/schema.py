"""The settings' schema: one frozen msgspec Struct per section, with each field's rules.

Limits and patterns are ``msgspec.Meta`` (patterns end in ``\\Z``: msgspec searches, and
``$`` would admit a trailing newline); rules msgspec cannot state are ``Check``s that
return the value (possibly normalised) or raise ValueError. ``convert.py`` applies both.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from proxy.config.origins import is_loopback_host, secure_prefix
from proxy.config.rules import (
    allow_rules,
    bare_origins,
    decodable_keys,
    host_ports,
    http_url,
    known_scope,
    public_origin,
)
from proxy.config.secret import Secret
from proxy.config.section import Check, IPNetwork, Positive, Section
from proxy.config.tracing import Tracing
from proxy.config.webhooks import Webhooks

LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]


def _loopback() -> list[IPNetwork]:
    return [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]


Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,64}\Z")]
DEFAULT_COOKIE_NAME = "sipgate_proxy"  # behind an https public_url: config/derived.py


class Listen(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8080


class Upstream(Section, frozen=True, kw_only=True):
    url: Annotated[str, Check(http_url)] = "https://api.sipgate.com"
    connect_timeout: Positive = 5.0
    read_timeout: Positive = 60.0
    max_body_size: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024
    forward_cookies: bool = False
    allow_insecure_http: bool = False  # plain http to a host that is not loopback
    ca_file: Path | None = None  # PEM bundle trusted for https instead of the system's roots


class OAuth2(Section, frozen=True, kw_only=True):
    realm: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]+\Z")] = "sipgate-apps"
    issuer: str | None = None
    discovery: bool = False
    client_id: str | None = None
    client_secret: Secret | None = None
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    scopes: list[str] = msgspec.field(default_factory=lambda: ["all"])
    pkce: bool = True
    # Below sipgate's 300 s token lifetime, or every request would refresh.
    refresh_skew: Annotated[float, msgspec.Meta(ge=0, lt=300)] = 30.0
    timeout: Positive = 10.0
    path_prefix: Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9._~-]+)+\Z")] = "/oauth2"
    idp_logout: bool = False
    # Refuse locally (403 insufficient_scope) what the session's token has no scope for.
    enforce_scopes: bool = False


class PersonalAccessToken(Section, frozen=True, kw_only=True):
    token_id: Annotated[str, msgspec.Meta(pattern=r"^token-[A-Za-z0-9]{6}\Z")] | None = None
    token: Secret | None = None


class Service(Section, frozen=True, kw_only=True):
    # Only these subjects (the IdP's "sub") may become the service identity.
    allowed_subjects: list[str] = msgspec.field(default_factory=list)
    state_file: Path | None = None  # without it, session.store: redis keeps the identity


class RateLimit(Section, frozen=True, kw_only=True):
    requests: Annotated[int, msgspec.Meta(ge=1)]
    per: Positive  # seconds


class Client(Section, frozen=True, kw_only=True):
    """One app's own credential for a shared mode (PAT, service): what it may call."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{1,40}\Z")]
    token_id: Annotated[str, msgspec.Meta(pattern=r"^token-[A-Za-z0-9]{6}\Z")]
    token_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
    # sipgate's scope names: the operations they grant (proxy/sipgate/), besides allow
    scopes: list[Annotated[str, Check(known_scope)]] = msgspec.field(default_factory=list)
    allow: Annotated[list[str], Check(allow_rules)] = msgspec.field(default_factory=list)
    networks: list[IPNetwork] | None = None  # None: wherever allowed_client_networks allow
    rate_limit: RateLimit | None = None


class Auth(Section, frozen=True, kw_only=True):
    mode: Literal["oauth2", "personal_access_token", "service"] = "oauth2"
    oauth2: OAuth2 = msgspec.field(default_factory=OAuth2)
    personal_access_token: PersonalAccessToken = msgspec.field(default_factory=PersonalAccessToken)
    service: Service = msgspec.field(default_factory=Service)
    # Headless modes (PAT, service) act as the account for anyone who reaches them.
    allowed_client_networks: list[IPNetwork] = msgspec.field(default_factory=_loopback)
    # With clients listed, each app presents its own credential (auth/clients/).
    clients: list[Client] = msgspec.field(default_factory=list)
    clients_file: Path | None = None  # more clients, same format (a mounted Secret)
    anonymous: Literal["deny", "allow"] = "deny"  # requests without a client credential


class Session(Section, frozen=True, kw_only=True):
    # Unless set: __Host-sipgate_proxy behind an https public_url (config/derived.py)
    cookie_name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")] = (
        DEFAULT_COOKIE_NAME
    )
    # None: on, except for a loopback http public_url with an unprefixed cookie_name
    cookie_secure: bool | None = None
    keys: Annotated[list[Secret], Check(decodable_keys)] = msgspec.field(default_factory=list)
    store: Literal["cookie", "redis"] = "cookie"
    redis_mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    # standalone: redis://, rediss:// (TLS) or unix://; cluster: any node, as the seed
    redis_url: Secret | None = None
    redis_lock_ttl: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    redis_tls_ca_file: Path | None = None  # the data nodes' CA, if not the system's
    # sentinel: the sentinels name the primary. A URL could not hold both the sentinels'
    # and the data nodes' credentials and TLS, so each has its own keys.
    redis_sentinels: Annotated[list[str], Check(host_ports)] = msgspec.field(default_factory=list)
    redis_sentinel_master: str | None = None
    redis_sentinel_username: str | None = None
    redis_sentinel_password: Secret | None = None
    redis_sentinel_tls: bool = False
    redis_sentinel_tls_ca_file: Path | None = None
    redis_username: str | None = None  # the data nodes' (sentinel mode)
    redis_password: Secret | None = None
    redis_tls: bool = False
    max_lifetime: Positive = 30 * 24 * 3600
    allowed_origins: Annotated[list[str], Check(bare_origins)] = msgspec.field(default_factory=list)


class Server(Section, frozen=True, kw_only=True):
    max_field_size: Annotated[int, msgspec.Meta(ge=8190)] = 65536
    # The whole header block (request line included): what the parser may hold per
    # connection. Above it: 431.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=8192)] = 65536
    header_timeout: Positive = 10.0  # from connecting (or a request's first byte): 408
    # Idle between requests; above the front proxies' own (nginx 60 s, Traefik 90 s), or
    # they would reuse a connection the proxy is closing.
    keepalive_timeout: Positive = 120.0
    # Main listener; None: half the descriptors the process may open, less a reserve.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] | None = None
    shutdown_timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # With workers > 1: where the supervisor makes the workers' private directory
    # (refresh locks); None: the system's temporary directory ($TMPDIR, else /tmp).
    runtime_dir: Path | None = None


class Management(Section, frozen=True, kw_only=True):
    # A second listener for probes and metrics (e.g. a port only the cluster reaches);
    # when set, /metrics is served there only.
    listen: Listen | None = None


class ForwardAuth(Section, frozen=True, kw_only=True):
    # /oauth2/auth hands out the Bearer (or the PAT): off unless a front proxy needs it.
    enabled: bool = False
    # Peers that may ask; a front proxy on the same host is a loopback peer.
    allowed_networks: list[IPNetwork] = msgspec.field(default_factory=_loopback)
    listener: Literal["main", "management"] = "main"
    # Where the front proxy puts the original request's method and URI; nginx's by default
    # (Traefik: X-Forwarded-Method / X-Forwarded-Uri). No other header is read.
    method_header: HeaderName = "X-Original-Method"
    uri_header: HeaderName = "X-Original-URI"
    # What the front proxy sends in X-Sipgate-Forward-Auth-Secret to prove it is the front
    # proxy (secret_file: from a mounted file). Required in the shared modes, where the
    # answer is the account's own credential; checked whenever it is set.
    secret: Secret | None = None


class Log(Section, frozen=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Document(Section, frozen=True, kw_only=True):
    """The configuration as written (file, environment, secret files), before its mode
    is resolved; ``Settings`` adds what the mode requires."""

    listen: Listen = msgspec.field(default_factory=Listen)
    public_url: Annotated[str, Check(public_origin)] = "http://localhost:8080"
    upstream: Upstream = msgspec.field(default_factory=Upstream)
    auth: Auth = msgspec.field(default_factory=Auth)
    session: Session = msgspec.field(default_factory=Session)
    server: Server = msgspec.field(default_factory=Server)
    management: Management = msgspec.field(default_factory=Management)
    forward_auth: ForwardAuth = msgspec.field(default_factory=ForwardAuth)
    log: Log = msgspec.field(default_factory=Log)
    tracing: Tracing = msgspec.field(default_factory=Tracing)
    webhooks: Webhooks = msgspec.field(default_factory=Webhooks)

    @property
    def is_local(self) -> bool:
        """A plain-http loopback public_url: a developer's machine."""
        parts = urlsplit(self.public_url)
        return parts.scheme == "http" and is_loopback_host(parts.hostname or "")

    @property
    def cookie_secure(self) -> bool:
        if self.session.cookie_secure is None:
            # Browsers keep Secure cookies set over http://localhost, too.
            return not self.is_local or secure_prefix(self.session.cookie_name) is not None
        return self.session.cookie_secure

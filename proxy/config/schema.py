"""The settings' schema: one frozen msgspec Struct per section, with each field's rules
and its one-line description (the configuration reference in docs/ and the JSON Schema,
``config-schema``, are generated from them: a field without one fails their test).

Limits and patterns are ``msgspec.Meta`` (patterns end in ``\\Z``: msgspec searches, and
``$`` would admit a trailing newline); rules msgspec cannot state are ``Check``s that
return the value (possibly normalised) or raise ValueError, their docstring's first line
says the rule in the reference. ``convert.py`` applies both. The larger sections live in
modules of their own (``auth_schema``, ``session_schema``, ``tracing``, ``webhooks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from proxy.config.auth_schema import Auth
from proxy.config.origins import is_loopback_host, secure_prefix
from proxy.config.rules import http_url, public_origin
from proxy.config.secret import Secret
from proxy.config.section import Check, IPNetwork, Positive, Section, loopback
from proxy.config.session_schema import Session
from proxy.config.tracing import Tracing
from proxy.config.webhooks import Webhooks

Port = Annotated[int, Meta(ge=0, le=65535)]
HeaderName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,64}\Z")]


class Listen(Section, frozen=True, kw_only=True):
    """An address and port to listen on."""

    host: Annotated[str, Meta(description="address to listen on; 0.0.0.0 in a container")] = (
        "127.0.0.1"
    )
    port: Annotated[Port, Meta(description="TCP port")] = 8080


class Upstream(Section, frozen=True, kw_only=True):
    """The API the proxy forwards to."""

    url: Annotated[str, Check(http_url), Meta(description="the API's origin")] = (
        "https://api.sipgate.com"
    )
    connect_timeout: Annotated[
        Positive, Meta(description="seconds to open a connection (then 504)")
    ] = 5.0
    read_timeout: Annotated[
        Positive, Meta(description="seconds without a byte from the upstream (then 504)")
    ] = 60.0
    max_body_size: Annotated[
        int, Meta(ge=0, description="request body limit in bytes (above: 413)")
    ] = 64 * 1024 * 1024
    forward_cookies: Annotated[
        bool, Meta(description="send the client's cookies upstream (never the proxy's own)")
    ] = False
    allow_insecure_http: Annotated[
        bool, Meta(description="allow plain http to a host that is not loopback")
    ] = False
    ca_file: Annotated[
        Path | None, Meta(description="PEM bundle trusted for https instead of the system's roots")
    ] = None


class Server(Section, frozen=True, kw_only=True):
    """Limits and processes of the listeners."""

    max_field_size: Annotated[
        int, Meta(ge=8190, description="largest header line in bytes (above: 400)")
    ] = 65536
    # What the parser may hold per connection.
    max_header_bytes: Annotated[
        int,
        Meta(ge=8192, description="the whole header block, request line included (above: 431)"),
    ] = 65536
    header_timeout: Annotated[
        Positive,
        Meta(description="seconds for a header block, from connecting or its first byte (408)"),
    ] = 10.0
    # Above the front proxies' own (nginx 60 s, Traefik 90 s), or they would reuse a
    # connection the proxy is closing.
    keepalive_timeout: Annotated[
        Positive, Meta(description="seconds an idle connection stays open between requests")
    ] = 120.0
    max_connections: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        Meta(
            description="open connections on the main listener, more get 503; unset: "
            "half the descriptors the process may open, less a reserve"
        ),
    ] = None
    shutdown_timeout: Annotated[
        float, Meta(ge=0, description="seconds in-flight requests get after SIGTERM")
    ] = 30.0
    workers: Annotated[
        int, Meta(ge=1, le=64, description="processes sharing the port (SO_REUSEPORT)")
    ] = 1
    runtime_dir: Annotated[
        Path | None,
        Meta(
            description="with workers > 1: where their private directory (refresh locks) "
            "is made; unset: $TMPDIR, else /tmp"
        ),
    ] = None


class Management(Section, frozen=True, kw_only=True):
    """A second listener for probes and metrics."""

    listen: Annotated[
        Listen | None,
        Meta(description="/healthz, /readyz and /metrics there (and /metrics only there)"),
    ] = None


class ForwardAuth(Section, frozen=True, kw_only=True):
    """/oauth2/auth for a front proxy (nginx auth_request, Traefik ForwardAuth)."""

    enabled: Annotated[
        bool, Meta(description="serve /oauth2/auth: it hands out the Bearer (or the PAT)")
    ] = False
    allowed_networks: Annotated[
        list[IPNetwork],
        Meta(description="peers that may ask; a front proxy on the same host is loopback"),
    ] = msgspec.field(default_factory=loopback)
    listener: Annotated[
        Literal["main", "management"],
        Meta(description="which listener serves it (management: needs management.listen)"),
    ] = "main"
    # nginx's by default (Traefik: X-Forwarded-Method / X-Forwarded-Uri). No other header
    # is read.
    method_header: Annotated[
        HeaderName, Meta(description="where the front proxy puts the original method")
    ] = "X-Original-Method"
    uri_header: Annotated[
        HeaderName, Meta(description="where the front proxy puts the original URI")
    ] = "X-Original-URI"
    # Required in the shared modes, where the answer is the account's own credential;
    # checked whenever it is set.
    secret: Annotated[
        Secret | None,
        Meta(description="what the front proxy sends in X-Sipgate-Forward-Auth-Secret"),
    ] = None


class Log(Section, frozen=True, kw_only=True):
    """The log lines on stderr."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"], Meta(description="the lowest level logged")
    ] = "info"
    format: Annotated[
        Literal["json", "text"], Meta(description="json: one object per line; text: local use")
    ] = "json"


class Document(Section, frozen=True, kw_only=True):
    """The configuration as written (file, environment, secret files), before its mode
    is resolved; ``Settings`` adds what the mode requires."""

    listen: Listen = msgspec.field(default_factory=Listen)
    public_url: Annotated[
        str,
        Check(public_origin),
        Meta(description="the origin browsers use (scheme://host[:port]), no path"),
    ] = "http://localhost:8080"
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

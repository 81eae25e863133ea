"""The ``session`` section: the session cookie, its keys, and where sessions live (the
cookie itself or Redis, in one of three topologies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from proxy.config.rules import bare_origins, decodable_keys, host_ports
from proxy.config.secret import Secret
from proxy.config.section import Check, Positive, Section

DEFAULT_COOKIE_NAME = "sipgate_proxy"  # behind an https public_url: config/derived.py


class Session(Section, frozen=True, kw_only=True):
    """OAuth2 and service mode: the session cookie, its keys and the session store."""

    cookie_name: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9_-]{1,64}\Z",
            description="the session cookie's name; behind an https public_url the default "
            "is __Host-sipgate_proxy",
        ),
    ] = DEFAULT_COOKIE_NAME
    cookie_secure: Annotated[
        bool | None,
        Meta(
            description="unset: on, except for a loopback http public_url with an "
            "unprefixed cookie_name"
        ),
    ] = None
    keys: Annotated[
        list[Secret],
        Check(decodable_keys),
        Meta(description="base64 32-byte keys (generate-key): the first seals, all open"),
    ] = msgspec.field(default_factory=list)
    store: Annotated[
        Literal["cookie", "redis"],
        Meta(description="cookie: the token set sealed in the cookie; redis: in Redis"),
    ] = "cookie"
    redis_mode: Annotated[
        Literal["standalone", "sentinel", "cluster"],
        Meta(description="how Redis is reached (session.store: redis)"),
    ] = "standalone"
    redis_url: Annotated[
        Secret | None,
        Meta(
            description="standalone: redis://, rediss:// (TLS) or unix://; cluster: any "
            "node, as the seed"
        ),
    ] = None
    redis_lock_ttl: Annotated[
        float,
        Meta(gt=0, le=60, description="seconds the cross-replica refresh lock lasts unrenewed"),
    ] = 5.0
    redis_tls_ca_file: Annotated[
        Path | None, Meta(description="the Redis data nodes' CA; unset: the system's roots")
    ] = None
    # sentinel: the sentinels name the primary. A URL could not hold both the sentinels'
    # and the data nodes' credentials and TLS, so each has its own keys.
    redis_sentinels: Annotated[
        list[str],
        Check(host_ports),
        Meta(description="sentinel mode: the sentinels, host:port each"),
    ] = msgspec.field(default_factory=list)
    redis_sentinel_master: Annotated[
        str | None, Meta(description="sentinel mode: the name the sentinels monitor it under")
    ] = None
    redis_sentinel_username: Annotated[
        str | None, Meta(description="sentinel mode: the sentinels' user")
    ] = None
    redis_sentinel_password: Annotated[
        Secret | None, Meta(description="sentinel mode: the sentinels' password")
    ] = None
    redis_sentinel_tls: Annotated[
        bool, Meta(description="sentinel mode: the sentinels speak TLS")
    ] = False
    redis_sentinel_tls_ca_file: Annotated[
        Path | None, Meta(description="sentinel mode: the sentinels' CA")
    ] = None
    redis_username: Annotated[
        str | None, Meta(description="sentinel mode: the data nodes' user")
    ] = None
    redis_password: Annotated[
        Secret | None, Meta(description="sentinel mode: the data nodes' password")
    ] = None
    redis_tls: Annotated[bool, Meta(description="sentinel mode: the data nodes speak TLS")] = False
    max_lifetime: Annotated[
        Positive, Meta(description="seconds a session lasts after its login, however refreshed")
    ] = 30 * 24 * 3600
    allowed_origins: Annotated[
        list[str],
        Check(bare_origins),
        Meta(description="other origins allowed unsafe requests and CORS (a single-page app)"),
    ] = msgspec.field(default_factory=list)

"""What the forwarder knows of the proxy around it, read once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import Settings
from proxy.config.session_schema import DEFAULT_COOKIE_NAME


@dataclass(frozen=True)
class OwnSide:
    public_url: str = "http://localhost:8080"
    # the proxy's own cookies, never passed upstream
    cookie_prefixes: tuple[str, ...] = ()
    # where forward-auth reads the original method and URI: never a client's to send on
    front_proxy_fields: tuple[str, ...] = ()
    # a session cookie says whose answer it is (OAuth2 mode): answers vary by Cookie
    session_cookie: bool = False

    @classmethod
    def of(cls, settings: Settings) -> OwnSide:
        forward_auth = settings.forward_auth
        return cls(
            public_url=settings.public_url,
            # and the old default's: browsers keep those for a while after the upgrade
            cookie_prefixes=(settings.session.cookie_name, DEFAULT_COOKIE_NAME),
            front_proxy_fields=(forward_auth.method_header, forward_auth.uri_header),
            session_cookie=settings.auth.mode == "oauth2",
        )

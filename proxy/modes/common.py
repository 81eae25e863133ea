"""Pieces more than one mode is built with."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from proxy.auth.clients.access import SharedAccess
from proxy.auth.clients.gate import ClientGate, known
from proxy.auth.clients.reload import ClientList, watched
from proxy.auth.headless_clients import (
    LOOPBACK_NAMES,
    ClientNetworks,
    HeadlessClientGuard,
    host_name,
)
from proxy.auth.origin import OriginPolicy
from proxy.config import OAuth2Client, RedisStore, Settings
from proxy.crypto.keys import decode_key, session_keys
from proxy.crypto.sealing import KeyRing
from proxy.login.flow_cookie import LoginFlows, flow_attributes
from proxy.login.routes import LoginSettings
from proxy.modes.parts import CleanupContext, ModeContext
from proxy.oauth.client import OAuthClient
from proxy.ops.reload import Live
from proxy.sipgate.operations import closest_scopes, scope_names

if TYPE_CHECKING:  # not at run time: a cookie-store proxy never loads the Redis client
    from proxy.session.redis_connection import RedisConnection

log = logging.getLogger(__name__)


def origins(settings: Settings) -> OriginPolicy:
    return OriginPolicy(settings.public_url, settings.session.allowed_origins)


def headless_guard(settings: Settings, origin_policy: OriginPolicy) -> HeadlessClientGuard:
    networks = ClientNetworks(settings.auth.allowed_client_networks)
    trusted = {host_name(urlsplit(settings.public_url).netloc), settings.listen.host.lower()}
    return HeadlessClientGuard(networks, origin_policy, frozenset(LOOPBACK_NAMES | trusted))


@dataclass(frozen=True)
class Shared:
    """A shared mode's access check, and what SIGHUP applies to it."""

    access: SharedAccess
    reload: tuple[Live, ...] = ()
    lifecycle: tuple[CleanupContext, ...] = ()


def shared_access(settings: Settings, guard: HeadlessClientGuard) -> Shared:
    """The guard and, with clients listed (or a clients_file), the gate every shared-mode
    request passes."""
    auth = settings.auth
    networks = Live(frozenset({"auth.allowed_client_networks"}), _new_networks(guard))
    if not settings.clients and auth.clients_file is None:
        # As before clients existed: networks only (a gate takes a restart).
        return Shared(SharedAccess(guard, None), (networks,))
    known_clients = [known(client) for client in settings.clients]
    gate = ClientGate(known_clients, auth.anonymous == "allow")
    source = ClientList(auth, gate)
    # Watched even without a file: SIGHUP may name one.
    return Shared(SharedAccess(guard, gate), (networks, source.live()), (watched(source),))


def _new_networks(guard: HeadlessClientGuard) -> Callable[[Settings], None]:
    def apply(settings: Settings) -> None:
        guard.replace_networks(ClientNetworks(settings.auth.allowed_client_networks))

    return apply


# OpenID Connect's own scopes (Core §5.4, §11): Keycloak knows them, sipgate's list not.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})


def oauth_client(context: ModeContext, client: OAuth2Client) -> OAuthClient:
    settings = context.settings
    _warn_unknown_scopes(settings.auth.oauth2.scopes)
    callback = settings.public_url + settings.auth.oauth2.path_prefix + "/callback"
    return OAuthClient(client, callback, context.clients.idp_session)


def _warn_unknown_scopes(scopes: list[str]) -> None:
    """sipgate ignores a scope it does not know: a typo is a login that cannot do what
    the app needs, found only when a call fails."""
    known = OIDC_SCOPES.union(scope_names())
    for position, scope in enumerate(scopes):
        if scope not in known:
            close = ", ".join(closest_scopes(scope, OIDC_SCOPES)) or "none"
            log.warning(
                "auth.oauth2.scopes.%d (%r) is not a scope sipgate knows (sipgate ignores it); "
                "closest: %s",
                position,
                scope,
                close,
            )


def login_settings(settings: Settings, keep_id_token: bool) -> LoginSettings:
    oauth2 = settings.auth.oauth2
    return LoginSettings(settings.public_url, oauth2.path_prefix, oauth2.pkce, keep_id_token)


def login_flows(settings: Settings, keys: KeyRing) -> LoginFlows:
    name, prefix = settings.session.cookie_name, settings.auth.oauth2.path_prefix
    return LoginFlows(keys, name, flow_attributes(name, settings.cookie_secure, prefix))


def redis_client(store: RedisStore) -> RedisConnection:
    # Imported here: a cookie-store proxy never loads the Redis client (-6.6 MB RSS).
    from proxy.session import redis_connection

    return redis_connection.connect(store)


def redis_lifecycle(connection: RedisConnection) -> CleanupContext:
    """A Redis connection, opened when the app starts and closed when it stops."""

    async def open_until_shutdown(app: web.Application) -> AsyncIterator[None]:
        await connection.open()
        yield
        await connection.aclose()

    return open_until_shutdown


def key_ring(settings: Settings) -> KeyRing:
    """The session keys (config checked they decode), or on a developer machine without
    any, one throw-away key (crypto.keys warns)."""
    configured = [key.get_secret_value() for key in settings.session.keys]
    return KeyRing(session_keys(configured, settings.is_local))


def new_keys(ring: KeyRing) -> Live:
    """SIGHUP's step: the reloaded session keys (rotation without a restart). A reload
    that finds none keeps the current ones (a throw-away key would end every session)."""

    def rotate(settings: Settings) -> None:
        configured = [key.get_secret_value() for key in settings.session.keys]
        if not configured:
            log.warning("SIGHUP: no session.keys in the reloaded configuration; kept the keys")
            return
        ring.replace([decode_key(key) for key in configured])
        log.info("session keys reloaded: %d", len(configured))

    return Live(frozenset({"session.keys"}), rotate)

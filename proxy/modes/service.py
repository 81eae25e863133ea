"""Service mode: one stored identity, signed in by an operator, for headless clients;
kept fresh in the background, stored in a sealed file or in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from proxy.auth.identity_state import FileState, IdentityState, RedisState
from proxy.auth.redirects import login_url
from proxy.auth.service import ServiceAuth
from proxy.auth.service_identity import IdentityPolicy, ServiceIdentity
from proxy.auth.session_scopes import ScopeCheck
from proxy.config import RedisStore, ServiceMode
from proxy.crypto.sealing import KeyRing
from proxy.login.routes import LoginRoutes
from proxy.login.service_routes import operator_sign_in, register_operator_routes
from proxy.modes.common import (
    headless_guard,
    key_ring,
    login_flows,
    login_settings,
    new_keys,
    oauth_client,
    origins,
    redis_client,
    redis_lifecycle,
    shared_access,
)
from proxy.modes.parts import CleanupContext, ModeContext, ModeParts
from proxy.oauth.client import OAuthClient
from proxy.refresh.single_flight import Coordination, Refresher, Refreshes, RefreshPolicy

log = logging.getLogger(__name__)


def build(context: ModeContext, mode: ServiceMode) -> ModeParts:
    keys = key_ring(context.settings)
    oauth = oauth_client(context, mode.client)
    identity, lifecycle = _identity(context, mode, keys, oauth)
    context.metrics.service_identity.set_function(lambda: identity.usable)
    origin_policy = origins(context.settings)
    guard = headless_guard(context.settings, origin_policy)
    shared = shared_access(context.settings, guard)
    prefix = context.settings.auth.oauth2.path_prefix
    login = LoginRoutes(
        oauth,
        login_flows(context.settings, keys),
        operator_sign_in(identity, prefix),
        login_settings(context.settings, keep_id_token=False),
    )
    enforce = context.settings.auth.oauth2.enforce_scopes

    def operator_routes(router: web.UrlDispatcher) -> None:
        register_operator_routes(router, prefix, login, identity, shared.access)

    return ModeParts(
        ServiceAuth(identity, shared.access, ScopeCheck() if enforce else None),
        origin_policy,
        operator_routes=operator_routes,
        lifecycle=(*lifecycle, _kept_fresh(identity), *shared.lifecycle),
        reload=(new_keys(keys), *shared.reload),
    )


def _identity(
    context: ModeContext, mode: ServiceMode, keys: KeyRing, oauth: OAuthClient
) -> tuple[ServiceIdentity, tuple[CleanupContext, ...]]:
    settings, oauth2 = context.settings, context.settings.auth.oauth2
    state, coordination, lifecycle = _storage(context, mode, keys)
    login = login_url(settings.public_url, oauth2.path_prefix, "/")
    policy = IdentityPolicy(mode.allowed_subjects, oauth2.refresh_skew, login)
    refresher: Refreshes = Refresher(oauth, RefreshPolicy(timeout=oauth2.timeout), coordination)
    if context.tracing is not None:
        refresher = context.tracing.refresher(refresher)
    return ServiceIdentity(state, refresher, oauth, policy), lifecycle


def _storage(
    context: ModeContext, mode: ServiceMode, keys: KeyRing
) -> tuple[IdentityState, Coordination | None, tuple[CleanupContext, ...]]:
    """Where the identity lives, and with Redis, how replicas share its refreshes."""
    store = context.settings.store
    if not isinstance(store, RedisStore):
        assert isinstance(mode.state, Path)  # config: a state file unless Redis
        return FileState(mode.state, keys), None, ()
    from proxy.refresh.redis import RedisCoordinationPolicy, RedisRefreshCoordination

    redis = redis_client(store)
    policy = RedisCoordinationPolicy(lock_ttl=store.lock_ttl)
    coordination = RedisRefreshCoordination(redis.client, keys, policy)
    state = FileState(mode.state, keys) if isinstance(mode.state, Path) else None
    return (
        state or RedisState(redis.client, keys, "sipgate-proxy"),
        coordination,
        (redis_lifecycle(redis),),
    )


def _kept_fresh(identity: ServiceIdentity) -> CleanupContext:
    async def keep_fresh(app: web.Application) -> AsyncIterator[None]:
        try:
            await identity.refresh()  # resume from the stored state, renewing if due
        except Exception as err:  # the IdP may be away at start: the loop retries
            log.warning("service identity not refreshed at start: %s", type(err).__name__)
        task = asyncio.create_task(identity.keep_fresh())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return keep_fresh

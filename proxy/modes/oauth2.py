"""OAuth2 mode: browser sessions from sipgate's login, refreshed on the fly; the cookie
store by default, Redis for many replicas."""

from __future__ import annotations

import time

from aiohttp import web

from proxy.auth.browser_session import BrowserSessionAuth, SessionPolicy
from proxy.auth.origin import OriginPolicy
from proxy.auth.session_scopes import ScopeCheck
from proxy.config import OAuth2Mode
from proxy.crypto.sealing import KeyRing
from proxy.login.routes import LoginRoutes
from proxy.login.session_routes import SessionRoutes, start_browser_session
from proxy.modes.common import key_ring, login_flows, login_settings, new_keys, oauth_client
from proxy.modes.common import origins as origin_policy
from proxy.modes.parts import ModeContext, ModeParts, Register
from proxy.modes.session_store import session_store
from proxy.oauth.client import OAuthClient
from proxy.refresh.single_flight import Refresher, Refreshes, RefreshPolicy
from proxy.session.aiohttp_adapter import SessionStorage, with_sessions
from proxy.session.store import Sessions, SessionStore


def build(context: ModeContext, mode: OAuth2Mode) -> ModeParts:
    settings, keys = context.settings, key_ring(context.settings)
    oauth, store, origins = (
        oauth_client(context, mode.client),
        session_store(context, keys),
        origin_policy(settings),
    )
    oauth2 = settings.auth.oauth2
    policy = RefreshPolicy(timeout=oauth2.timeout, keep_id_token=oauth2.idp_logout)
    scopes = ScopeCheck() if oauth2.enforce_scopes else None
    session = SessionPolicy(settings.public_url, oauth2.path_prefix, oauth2.refresh_skew, scopes)
    sessions: Sessions = store.sessions
    refresher: Refreshes = Refresher(oauth, policy, store.coordination)
    if context.tracing is not None:
        sessions, refresher = (
            context.tracing.sessions(sessions),
            context.tracing.refresher(refresher),
        )
    authenticator = BrowserSessionAuth(sessions, refresher, origins, session)
    return ModeParts(
        authenticator,
        origins,
        routes=_login_routes(context, keys, oauth, store.sessions, origins),
        lifecycle=store.lifecycle,
        readiness=store.readiness,
        reload=(new_keys(keys),),
    )


def _login_routes(
    context: ModeContext,
    keys: KeyRing,
    oauth: OAuthClient,
    sessions: SessionStore,
    origins: OriginPolicy,
) -> Register:
    """start and callback (a browser session begins there), sign_out and userinfo."""
    settings = context.settings
    login = login_settings(settings, keep_id_token=settings.auth.oauth2.idp_logout)
    login_routes = LoginRoutes(oauth, login_flows(settings, keys), start_browser_session(), login)
    session_routes = SessionRoutes(oauth, sessions, origins, login)
    with_session = with_sessions(SessionStorage(sessions, time.time))

    def register(router: web.UrlDispatcher) -> None:
        login_routes.register(router, wrap_callback=with_session)
        session_routes.register(router, with_session)

    return register

"""OAuth2 mode: browser sessions from sipgate's login, refreshed on the fly; the cookie
store by default, Redis for many replicas."""

from __future__ import annotations

import time

from aiohttp import web

from proxy.auth.browser_session import BrowserSessionAuth, SessionPolicy
from proxy.config import OAuth2Mode
from proxy.login.routes import LoginRoutes
from proxy.login.session_routes import SessionRoutes, start_browser_session
from proxy.modes.common import key_ring, login_flows, login_settings, oauth_client
from proxy.modes.common import origins as origin_policy
from proxy.modes.parts import ModeContext, ModeParts
from proxy.modes.session_store import session_store
from proxy.refresh.single_flight import Refresher, RefreshPolicy
from proxy.session.aiohttp_adapter import SessionStorage, with_sessions


def build(context: ModeContext, mode: OAuth2Mode) -> ModeParts:
    settings = context.settings
    oauth2, keys, oauth = (
        settings.auth.oauth2,
        key_ring(settings),
        oauth_client(context, mode.client),
    )
    store = session_store(context, keys)
    policy = RefreshPolicy(timeout=oauth2.timeout, keep_id_token=oauth2.idp_logout)
    refresher = Refresher(oauth, policy, store.coordination)
    origins = origin_policy(settings)
    session = SessionPolicy(settings.public_url, oauth2.path_prefix, oauth2.refresh_skew)
    login = login_settings(settings, keep_id_token=oauth2.idp_logout)
    flows = login_flows(settings, keys)
    with_session = with_sessions(SessionStorage(store.sessions, time.time))

    def routes(router: web.UrlDispatcher) -> None:
        login_routes = LoginRoutes(oauth, flows, start_browser_session(), login)
        login_routes.register(router, wrap_callback=with_session)
        SessionRoutes(oauth, store.sessions, origins, login).register(router, with_session)

    return ModeParts(
        BrowserSessionAuth(store.sessions, refresher, origins, session),
        origins,
        routes=routes,
        lifecycle=store.lifecycle,
        readiness=store.readiness,
    )

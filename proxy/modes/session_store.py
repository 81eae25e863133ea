"""OAuth2 mode's session store and how its refreshes coordinate: the cookie store (across
the workers of one proxy, through their shared directory) or Redis (across replicas)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import RedisStore
from proxy.crypto.sealing import KeyRing
from proxy.modes.common import redis_client, redis_lifecycle
from proxy.modes.parts import CleanupContext, ModeContext, ReadinessCheck
from proxy.refresh.single_flight import Coordination
from proxy.session.cookie_backend import cookie_session_store
from proxy.session.store import SessionStore


@dataclass(frozen=True)
class StoreParts:
    sessions: SessionStore
    coordination: Coordination | None  # None: the refresher's own single flight suffices
    lifecycle: tuple[CleanupContext, ...] = ()
    readiness: tuple[ReadinessCheck, ...] = ()


def session_store(context: ModeContext, keys: KeyRing) -> StoreParts:
    session, store = context.settings.session, context.settings.store
    if isinstance(store, RedisStore):
        return _redis_store(context, store, keys)
    sessions = cookie_session_store(
        keys, session.cookie_name, context.settings.cookie_secure, session.max_lifetime
    )
    if context.workers_dir is None:
        return StoreParts(sessions, None)
    from proxy.refresh.file import FileCoordinationPolicy, FileRefreshCoordination

    wait = context.settings.auth.oauth2.timeout + 2  # the holder's exchange is bounded by it
    policy = FileCoordinationPolicy(wait_timeout=wait)
    return StoreParts(sessions, FileRefreshCoordination(context.workers_dir, keys, policy))


def _redis_store(context: ModeContext, store: RedisStore, keys: KeyRing) -> StoreParts:
    # Imported here: a cookie-store proxy never loads the Redis client (-6.6 MB RSS).
    from proxy.refresh.redis import RedisCoordinationPolicy, RedisRefreshCoordination
    from proxy.session import redis_backend

    settings, session, redis = context.settings, context.settings.session, redis_client(store)
    backend = redis_backend.RedisBackend(redis.client, keys, session.cookie_name)
    sessions = redis_backend.redis_session_store(
        backend, session.cookie_name, settings.cookie_secure, session.max_lifetime
    )
    policy = RedisCoordinationPolicy(lock_ttl=store.lock_ttl)
    coordination = RedisRefreshCoordination(redis.client, keys, policy)
    return StoreParts(sessions, coordination, (redis_lifecycle(redis),), (backend.ping,))

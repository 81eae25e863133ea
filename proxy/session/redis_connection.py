"""How the proxy reaches Redis: one server, the primary a set of sentinels names, or a
Cluster seeded from one node. redis-py's own clients find the nodes and follow a
failover or a resharding; nothing here discovers anything by hand.

Every command goes through ``call``: any Redis failure is the store being unavailable
(503 with Retry-After, the session kept), never "no session".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.config import RedisAuth, RedisSentinels, RedisServer, RedisStore
from proxy.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
RedisClient = redis.Redis | RedisCluster


async def call(awaitable: Awaitable[T]) -> T:
    """Await a Redis command; any Redis failure is the store being unavailable."""
    try:
        return await awaitable
    # RuntimeError: under uvloop, a write to a connection that redis-py closed beneath a
    # concurrent command (a cluster client re-reading the topology) raises it, not OSError.
    except (RedisError, OSError, RuntimeError) as err:
        log.warning("session store unavailable: %s", type(err).__name__)
        raise StoreUnavailable() from None


@dataclass(frozen=True)
class RedisConnection:
    """The client the stores use, and what else closes with it (the sentinels')."""

    client: RedisClient
    sentinels: tuple[redis.Redis, ...] = ()

    async def open(self) -> None:
        """A cluster client reads the topology now, before requests share it: done
        lazily by concurrent first commands, it closes connections they are using."""
        if not isinstance(self.client, RedisCluster):
            return
        try:
            await self.client.initialize()
        except (RedisError, OSError) as err:  # then on first use; /readyz tells
            log.warning("Redis cluster not reachable at start: %s", type(err).__name__)

    async def aclose(self) -> None:
        await self.client.aclose()
        for sentinel in self.sentinels:
            await sentinel.aclose()


def connect(store: RedisStore, timeout: float = 2.0) -> RedisConnection:
    where = store.where
    if isinstance(where, RedisSentinels):
        return _sentinel_primary(where, timeout)
    return RedisConnection(connect_server(where, timeout))


def connect_server(where: RedisServer, timeout: float = 2.0) -> RedisClient:
    """One server, or with ``cluster`` the cluster whose node the URL names."""
    options = _options(timeout)
    if where.ca_file is not None:
        options["ssl_ca_certs"] = str(where.ca_file)
    url = where.url.get_secret_value()
    if where.cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def _sentinel_primary(where: RedisSentinels, timeout: float) -> RedisConnection:
    sentinel = Sentinel(
        list(where.addresses),
        sentinel_kwargs={**_options(timeout), **_auth(where.sentinels)},
        **_options(timeout),
        health_check_interval=30,
        **_auth(where.nodes),
    )
    client = sentinel.master_for(where.master)
    return RedisConnection(client, tuple(sentinel.sentinels))


def _options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # A pooled connection that Redis closed (restart, failover) is retried on a new
        # one instead of failing the request.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
        "retry_on_error": [RedisConnectionError],
    }


def _auth(auth: RedisAuth) -> dict[str, Any]:
    options: dict[str, Any] = {"username": auth.username}
    if auth.password is not None:
        options["password"] = auth.password.get_secret_value()
    if auth.tls:
        options["ssl"] = True
        if auth.ca_file is not None:
            options["ssl_ca_certs"] = str(auth.ca_file)
    return options

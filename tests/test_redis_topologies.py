"""The Redis store on a real 3-primary Cluster and behind a real Sentinel set.

On the Cluster, each of the store's scripts must find its keys in one hash slot (Redis
refuses a script that reaches into another); the records must still spread over the
primaries. Behind Sentinel, killing the primary by PID must give 503 + Retry-After for
the failover's length and never a logout; the same cookies work after the promotion, and
two proxy processes still refresh a session once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from proxy import config
from proxy.auth.identity_state import RedisState
from proxy.crypto.sealing import KeyRing
from proxy.errors import StoreUnavailable
from proxy.oauth.tokens import TokenSet
from proxy.refresh.redis import RedisCoordinationPolicy, RedisRefreshCoordination
from proxy.refresh.single_flight import Outcome, RefreshFailed
from proxy.session.codec import StoredSession
from proxy.session.redis_connection import RedisClient
from proxy.session.redis_connection import connect as connect_store
from tests.conftest import require
from tests.support.redis_topologies import (
    MASTER,
    NODE_PASSWORD,
    SENTINEL_PASSWORD,
    RedisClusterOf3,
    SentinelSet,
    Tls,
    topologies_available,
)
from tests.support.sessions import connect, end_subject, redis_store
from tests.support.tls import make_certificates
from tests.test_config_modes import OAUTH
from tests.test_redis_replicas import JSON, Replicas, logged_in_cookie, replicas_factory, spread
from tests.test_session_cookie import NOW, as_jar

__all__ = ["replicas_factory"]  # the fixture, used here by name


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterOf3]:
    require(*topologies_available())
    cluster = RedisClusterOf3(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterOf3) -> AsyncIterator[RedisClient]:
    client = connect(redis_cluster.url, timeout=1.0, cluster=True)
    yield client
    await client.aclose()


def tokens(subject: str, expires_in: float = 300) -> TokenSet:
    return TokenSet(f"access-{subject}", f"refresh-{subject}", NOW + expires_in, NOW + 86400,
                    "all", subject)  # fmt: skip


async def test_the_session_scripts_run_on_a_cluster_and_the_records_spread(
    redis_cluster: RedisClusterOf3, cluster_client: RedisClient
) -> None:
    store = redis_store(cluster_client, KeyRing([os.urandom(32)]), "sipgate_proxy", True, 86400)
    jars = [as_jar(await store.save(tokens("alice"), NOW, {}, new_session=True)) for _ in range(12)]
    bob = as_jar(await store.save(tokens("bob"), NOW, {}, new_session=True))
    for jar in jars:
        loaded = await store.load(jar)
        assert loaded is not None
        assert loaded.tokens.subject == "alice"
    # save-if-newer: an older token set never replaces the newer one
    await store.save(tokens("alice", expires_in=600), NOW, jars[0])
    await store.save(tokens("alice", expires_in=100), NOW, jars[0])
    newest = await store.load(jars[0])
    assert newest is not None
    assert newest.tokens.expires_at == NOW + 600
    holders = Counter(
        node.port
        for node in redis_cluster.nodes
        for _ in node.cli("--scan", "--pattern", "sipgate-proxy:*").split()
    )
    print(f"cluster: keys per primary with 13 sessions: {dict(holders)}")
    assert len(holders) >= 2  # spread over the primaries: nothing pins them to one slot
    await store.clear(jars[1])  # delete + the index entry, on two slots
    assert await store.load(jars[1]) is None
    assert await end_subject(store, "alice") == 11
    assert all([await store.load(jar) is None for jar in jars])
    assert await store.load(bob) is not None
    assert await end_subject(store, "bob") == 1


async def test_refresh_coordination_runs_on_a_cluster(cluster_client: RedisClient) -> None:
    keys = KeyRing([os.urandom(32)])
    # renewed while a slow IdP answers: 0.6 s, so a loaded machine's late renewal (0.2 s
    # apart) does not let it lapse; the exchange outlives it more than twice
    policy = RedisCoordinationPolicy(lock_ttl=0.6, grace=5)
    coordination = RedisRefreshCoordination(cluster_client, keys, policy)
    exchanges = 0

    async def slow_exchange(old: TokenSet) -> TokenSet:
        nonlocal exchanges
        exchanges += 1
        await asyncio.sleep(1.5)
        return tokens("alice", expires_in=600)

    results = await asyncio.gather(
        *(coordination.coordinate(b"token-1", slow_exchange, tokens("alice")) for _ in range(20))
    )
    assert exchanges == 1
    outcomes = Counter(outcome for _, outcome in results)
    assert outcomes[Outcome.OK] == 1
    assert outcomes[Outcome.SHARED] == 19
    late = await coordination.coordinate(b"token-1", slow_exchange, tokens("alice"))
    assert late[1] is Outcome.GRACE

    async def refused(old: TokenSet) -> TokenSet:
        raise RefreshFailed(Outcome.FATAL, "invalid_grant")

    for _ in range(2):  # the second one learns it from the dead key, not the IdP
        with pytest.raises(RefreshFailed) as failed:
            await coordination.coordinate(b"token-2", refused, tokens("bob"))
        assert failed.value.fatal
    state = RedisState(cluster_client, keys, "sipgate-proxy")
    await state.save(StoredSession(tokens("operator"), NOW, NOW))
    loaded = await state.load()
    assert loaded is not None
    assert loaded.tokens.subject == "operator"


def cluster_env(cluster: RedisClusterOf3) -> dict[str, str]:
    return {"SIPGATE_PROXY_SESSION__REDIS_MODE": "cluster",
            "SIPGATE_PROXY_SESSION__REDIS_URL": cluster.url}  # fmt: skip


async def test_two_proxies_on_a_cluster_refresh_a_session_once(
    redis_cluster: RedisClusterOf3, replicas_factory: Callable[..., Awaitable[Replicas]]
) -> None:
    replicas = await replicas_factory(
        {"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"},
        redis=cluster_env(redis_cluster),
        access_ttl=8,
    )
    cookie = await logged_in_cookie(replicas, "alice")
    await asyncio.sleep(4.2)  # inside the skew: every request wants a refresh
    assert await spread(replicas.urls, cookie, 100) == [200] * 100
    assert replicas.grants(None) == 1


# --- Sentinel ---------------------------------------------------------------------------


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    require(*topologies_available())
    sentinels = SentinelSet(tmp_path / "sentinel")
    sentinels.start()
    yield sentinels
    sentinels.stop()


def sentinel_env(sentinels: SentinelSet) -> dict[str, str]:
    return {
        "SIPGATE_PROXY_SESSION__REDIS_MODE": "sentinel",
        "SIPGATE_PROXY_SESSION__REDIS_SENTINELS": f"[{', '.join(sentinels.addresses)}]",
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_MASTER": MASTER,
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "SIPGATE_PROXY_SESSION__REDIS_PASSWORD": NODE_PASSWORD,
    }


@dataclass(frozen=True)
class Answer:
    at: float  # seconds since the primary was killed
    status: int
    retry_after: str | None
    error: str | None
    sets_cookie: bool


async def watch(urls: list[str], cookies: list[str], until: Callable[[], bool]) -> list[Answer]:
    """Every 50 ms a request per session, alternating between the proxies, until
    ``until()`` and 2 s of nothing but 200 (at most 40 s)."""
    answers: list[Answer] = []
    started = time.monotonic()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for round_ in range(800):
            for index, cookie in enumerate(cookies):
                url = f"{urls[(round_ + index) % len(urls)]}/v2/account"
                async with client.get(url, headers={**JSON, "Cookie": cookie}) as resp:
                    body = await resp.text()
                    error = json.loads(body).get("error") if resp.status != 200 else None
                    answers.append(
                        Answer(
                            time.monotonic() - started,
                            resp.status,
                            resp.headers.get("Retry-After"),
                            error,
                            "Set-Cookie" in resp.headers,
                        )
                    )
            calm = [a for a in answers if a.at > answers[-1].at - 2]
            if until() and answers[-1].at > 2 and all(a.status == 200 for a in calm):
                break
            await asyncio.sleep(0.05)
    return answers


async def test_sentinel_failover_is_503_never_a_logout_then_the_same_cookies_work(
    sentinel_set: SentinelSet, replicas_factory: Callable[..., Awaitable[Replicas]]
) -> None:
    replicas = await replicas_factory(
        {"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"},
        redis=sentinel_env(sentinel_set),
        access_ttl=20,
    )
    cookies = [await logged_in_cookie(replicas, user) for user in ("alice", "bob", "carol")]
    logged_in = time.monotonic()  # the last login: 16 s on, all three are due (skew 4)
    replica = sentinel_set.replica
    sentinel_set.wait_until(
        lambda: len(replica.cli("--scan", "--pattern", "sipgate-proxy:session:*").split()) == 3
    )
    old_primary = sentinel_set.primary_port()
    sentinel_set.primary.kill()
    answers = await watch(
        replicas.urls, cookies, lambda: sentinel_set.primary_port() == replica.port
    )
    assert sentinel_set.primary_port() != old_primary
    refused = [a for a in answers if a.status != 200]
    assert {a.status for a in refused} <= {503}  # never a 401: nobody was logged out
    assert all(a.retry_after and int(a.retry_after) > 0 for a in refused)
    assert {a.error for a in refused} <= {"session_store_unavailable"}
    assert not any(a.sets_cookie for a in answers)  # no cookie was expired or replaced
    window = refused[-1].at - refused[0].at if refused else 0.0
    print(
        f"sentinel failover: {len(answers)} requests, {len(refused)} answered 503 "
        f"over {window:.2f} s (first at {refused[0].at if refused else 0:.2f} s after the "
        f"kill), then 200 for all {len(cookies)} sessions"
    )
    # the same cookies, on both proxies; then a refresh each, single-flight across them
    for cookie in cookies:
        assert await spread(replicas.urls, cookie, 4) == [200] * 4
    assert replicas.grants(None) == 0
    await asyncio.sleep(max(0.0, logged_in + 16.3 - time.monotonic()))
    for cookie in cookies:
        assert await spread(replicas.urls, cookie, 60) == [200] * 60
    assert replicas.grants(None) == 3
    assert replicas.idp.token_calls("refresh_token", "invalid_grant") == 0


def tls_sentinel_env(sentinels: SentinelSet, nodes_ca: Path, sentinels_ca: Path) -> dict[str, str]:
    return {
        **OAUTH,
        **sentinel_env(sentinels),
        "SIPGATE_PROXY_SESSION__STORE": "redis",
        "SIPGATE_PROXY_SESSION__REDIS_TLS": "true",
        "SIPGATE_PROXY_SESSION__REDIS_TLS_CA_FILE": str(nodes_ca),
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS": "true",
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS_CA_FILE": str(sentinels_ca),
    }


async def test_sentinels_and_data_nodes_each_speak_tls_under_their_own_ca(tmp_path: Path) -> None:
    require(*topologies_available())
    for name in ("nodes", "sentinels"):
        (tmp_path / name).mkdir()
    nodes = make_certificates(tmp_path / "nodes")
    sentinels = make_certificates(tmp_path / "sentinels")
    both = tmp_path / "both-cas.pem"  # a sentinel dials the nodes and the other sentinels
    both.write_bytes(nodes.ca_file.read_bytes() + sentinels.ca_file.read_bytes())
    tls_set = SentinelSet(tmp_path / "set", tls=(Tls(nodes, nodes.ca_file), Tls(sentinels, both)))
    tls_set.start()
    try:
        right = config.load(None, tls_sentinel_env(tls_set, nodes.ca_file, sentinels.ca_file))
        assert isinstance(right.store, config.RedisStore)
        connection = connect_store(right.store, timeout=1.0)
        keys = KeyRing([os.urandom(32)])
        store = redis_store(connection.client, keys, "p", True, 86400)
        jar = as_jar(await store.save(tokens("alice"), NOW, {}, new_session=True))
        assert await store.load(jar) is not None
        await connection.aclose()
        for nodes_ca, sentinels_ca in ((sentinels.ca_file, sentinels.ca_file),
                                       (nodes.ca_file, nodes.ca_file)):  # fmt: skip
            wrong = config.load(None, tls_sentinel_env(tls_set, nodes_ca, sentinels_ca))
            assert isinstance(wrong.store, config.RedisStore)
            connection = connect_store(wrong.store, timeout=1.0)
            store = redis_store(connection.client, keys, "p", True, 86400)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.load(jar)
            assert time.monotonic() - started < 10  # redis-py's default retries took 35 s
            await connection.aclose()
    finally:
        tls_set.stop()

"""session.redis_mode: standalone, sentinel and cluster resolved, and every key that does
not fit the chosen mode reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import config
from tests.support.tls import make_certificates
from tests.test_config_modes import OAUTH

REDIS = {**OAUTH, "SIPGATE_PROXY_SESSION__STORE": "redis"}
SENTINEL = {
    **REDIS,
    "SIPGATE_PROXY_SESSION__REDIS_MODE": "sentinel",
    "SIPGATE_PROXY_SESSION__REDIS_SENTINELS": "[sentinel-0:26379, '[::1]:26380']",
    "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_MASTER": "mymaster",
}


def problems(env: dict[str, str], path: Path | None = None) -> dict[str, str]:
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env)
    return {problem.key: problem.message for problem in caught.value.problems}


def test_sentinel_mode_names_the_sentinels_and_keeps_both_credentials_apart(
    tmp_path: Path,
) -> None:
    (tmp_path / "node-password").write_text("node-secret\n")
    env = {
        **SENTINEL,
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS": "true",
        "SIPGATE_PROXY_SESSION__REDIS_PASSWORD_FILE": str(tmp_path / "node-password"),
        "SIPGATE_PROXY_SESSION__REDIS_USERNAME": "proxy",
    }
    settings = config.load(None, env)
    store = settings.store
    assert isinstance(store, config.RedisStore)
    where = store.where
    assert isinstance(where, config.RedisSentinels)
    assert where.addresses == (("sentinel-0", 26379), ("::1", 26380))
    assert where.master == "mymaster"
    assert where.sentinels == config.RedisAuth(None, config.Secret("sentinel-secret"), True, None)
    assert where.nodes == config.RedisAuth("proxy", config.Secret("node-secret"), False, None)
    assert "sentinel-secret" not in repr(settings)
    assert "node-secret" not in repr(settings)


def test_cluster_mode_takes_the_url_as_its_seed() -> None:
    env = {
        **REDIS,
        "SIPGATE_PROXY_SESSION__REDIS_MODE": "cluster",
        "SIPGATE_PROXY_SESSION__REDIS_URL": "rediss://:pw@node-0:6379",
    }
    store = config.load(None, env).store
    assert isinstance(store, config.RedisStore)
    assert store.where == config.RedisServer(config.Secret("rediss://:pw@node-0:6379"), True)


def test_sentinel_mode_without_sentinels_or_master_names_both_keys() -> None:
    env = {**REDIS, "SIPGATE_PROXY_SESSION__REDIS_MODE": "sentinel"}
    found = problems(env)
    assert "SIPGATE_PROXY_SESSION__REDIS_SENTINELS" in found["session.redis_sentinels"]
    assert "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_MASTER" in found["session.redis_sentinel_master"]
    assert "session.redis_url" not in found  # sentinel mode has none


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (
            {"SIPGATE_PROXY_SESSION__REDIS_SENTINEL_PASSWORD": "s"},
            "session.redis_sentinel_password",
        ),
        ({"SIPGATE_PROXY_SESSION__REDIS_SENTINELS": "[a:26379]"}, "session.redis_sentinels"),
        ({"SIPGATE_PROXY_SESSION__REDIS_PASSWORD": "s"}, "session.redis_password"),
        ({"SIPGATE_PROXY_SESSION__REDIS_TLS": "true"}, "session.redis_tls"),
    ],
)
def test_sentinel_keys_on_a_standalone_store_are_reported(extra: dict[str, str], key: str) -> None:
    env = {**REDIS, "SIPGATE_PROXY_SESSION__REDIS_URL": "redis://r:6379/0", **extra}
    found = problems(env)
    assert "only with redis_mode: sentinel" in found[key]
    assert list(found) == [key]


def test_a_url_in_sentinel_mode_is_reported() -> None:
    env = {**SENTINEL, "SIPGATE_PROXY_SESSION__REDIS_URL": "redis://r:6379/0"}
    assert "not used with redis_mode: sentinel" in problems(env)["session.redis_url"]


@pytest.mark.parametrize(
    ("url", "wording"),
    [
        ("unix:///run/redis.sock", "redis:// or rediss:// URL of a cluster node"),
        ("redis://node-0:6379/2", "only database 0"),
        ("http://node-0:6379", "redis:// or rediss://"),
    ],
)
def test_cluster_urls_that_cannot_seed_a_cluster_are_refused(url: str, wording: str) -> None:
    env = {
        **REDIS,
        "SIPGATE_PROXY_SESSION__REDIS_MODE": "cluster",
        "SIPGATE_PROXY_SESSION__REDIS_URL": url,
    }
    assert wording in problems(env)["session.redis_url"]


@pytest.mark.parametrize(
    "address", ["sentinel-0", "sentinel-0:0", "sentinel-0:99999", "u@sentinel-0:26379", ":26379"]
)
def test_a_sentinel_that_is_not_host_port_is_refused(address: str) -> None:
    env = {**SENTINEL, "SIPGATE_PROXY_SESSION__REDIS_SENTINELS": f"['{address}']"}
    message = problems(env)["session.redis_sentinels"]
    assert "host:" in message or "port" in message


def test_a_ca_file_needs_tls_and_must_hold_a_certificate(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("no certificate here\n")
    env = {
        **SENTINEL,
        "SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS_CA_FILE": str(not_pem),
        "SIPGATE_PROXY_SESSION__REDIS_TLS": "true",
        "SIPGATE_PROXY_SESSION__REDIS_TLS_CA_FILE": str(not_pem),
    }
    found = problems(env)
    assert "only with redis_sentinel_tls: true" in found["session.redis_sentinel_tls_ca_file"]
    assert "no PEM certificate" in found["session.redis_tls_ca_file"]
    ca = make_certificates(tmp_path).ca_file
    env["SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS"] = "true"
    env["SIPGATE_PROXY_SESSION__REDIS_SENTINEL_TLS_CA_FILE"] = str(ca)
    env["SIPGATE_PROXY_SESSION__REDIS_TLS_CA_FILE"] = str(ca)
    store = config.load(None, env).store
    assert isinstance(store, config.RedisStore)
    assert isinstance(store.where, config.RedisSentinels)
    assert store.where.nodes.ca_file == store.where.sentinels.ca_file == ca


def test_a_ca_file_for_a_plain_redis_url_is_reported(tmp_path: Path) -> None:
    env = {
        **REDIS,
        "SIPGATE_PROXY_SESSION__REDIS_URL": "redis://r:6379/0",
        "SIPGATE_PROXY_SESSION__REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem"),
    }
    assert "only with a rediss:// URL" in problems(env)["session.redis_tls_ca_file"]

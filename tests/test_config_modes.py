"""proxy.config.modes: each mode resolved into records whose required fields are set."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import config
from proxy.crypto.keys import generate_key
from proxy.server import with_session_key

OAUTH = {
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "2556404-0-dc848ae6",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "oauth-secret",
}
SERVICE = {
    **OAUTH,
    "SIPGATE_PROXY_AUTH__MODE": "service",
    "SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": "[operator]",
    "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
}


def test_oauth2_mode_carries_the_client_credentials() -> None:
    settings = config.load(None, OAUTH)
    assert isinstance(settings.mode, config.OAuth2Mode)
    client = settings.mode.client
    assert client.client_id == "2556404-0-dc848ae6"
    assert client.client_secret.get_secret_value() == "oauth-secret"
    assert client.settings is settings.auth.oauth2
    assert settings.store == config.CookieStore()


def test_personal_access_token_mode_carries_id_and_token() -> None:
    settings = config.load(
        None,
        {
            "SIPGATE_PROXY_AUTH__MODE": "personal_access_token",
            "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID": "token-AB12cd",
            "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN": "pat-secret",
        },
    )
    assert settings.mode == config.PersonalAccessTokenMode(
        "token-AB12cd", config.Secret("pat-secret")
    )
    assert "pat-secret" not in repr(settings)


def test_redis_store_carries_url_and_lock_ttl_when_store_is_redis() -> None:
    env = {
        **OAUTH,
        "SIPGATE_PROXY_SESSION__STORE": "redis",
        "SIPGATE_PROXY_SESSION__REDIS_URL": "rediss://r:6380/1",
        "SIPGATE_PROXY_SESSION__REDIS_LOCK_TTL": "2",
    }
    store = config.load(None, env).store
    assert store == config.RedisStore(
        config.RedisServer(config.Secret("rediss://r:6380/1"), cluster=False), 2.0
    )


def test_service_identity_lives_in_the_state_file_when_one_is_set(tmp_path: Path) -> None:
    env = {**SERVICE, "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": str(tmp_path / "identity")}
    mode = config.load(None, env).mode
    assert isinstance(mode, config.ServiceMode)
    assert mode.state == tmp_path / "identity"
    assert mode.allowed_subjects == frozenset({"operator"})


def test_service_identity_lives_in_redis_when_there_is_no_state_file() -> None:
    env = {
        **SERVICE,
        "SIPGATE_PROXY_SESSION__STORE": "redis",
        "SIPGATE_PROXY_SESSION__REDIS_URL": "redis://r",
    }
    settings = config.load(None, env)
    assert isinstance(settings.mode, config.ServiceMode)
    assert settings.mode.state == settings.store
    assert isinstance(settings.store, config.RedisStore)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SIPGATE_PROXY_AUTH__MODE": "service", **OAUTH}, "auth.service.state_file"),
        ({**OAUTH, "SIPGATE_PROXY_SESSION__STORE": "redis"}, "session.redis_url"),
        ({"SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "c"}, "auth.oauth2.client_secret"),
    ],
)
def test_no_settings_when_the_mode_lacks_a_required_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load(None, env)
    assert key in [p.key for p in caught.value.problems]


def test_throw_away_key_keeps_the_resolved_mode() -> None:
    settings = config.load(None, OAUTH)
    keyed = with_session_key(settings)
    assert len(keyed.session.keys) == 1
    assert (keyed.mode, keyed.store) == (settings.mode, settings.store)

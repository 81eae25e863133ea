"""Configuration: file + environment + *_file secrets, every problem named, no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import config
from proxy.crypto.keys import generate_key

PAT = {
    "SIPGATE_PROXY_AUTH__MODE": "personal_access_token",
    "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID": "token-AB12cd",
    "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN": "pat-secret-value-1234",
}
OAUTH = {
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "2556404-0-dc848ae6",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "oauth-secret-value-5678",
}


def problems(path: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env or {})
    return [str(p) for p in caught.value.problems]


def test_example_config_is_valid_with_credentials_from_env() -> None:
    settings = config.load(Path("config.example.yaml"), PAT)
    assert settings.auth.mode == "personal_access_token"
    assert settings.upstream.url == "https://api.sipgate.com"


def test_defaults_follow_the_design_contract() -> None:
    settings = config.load(None, OAUTH)
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8080)
    assert settings.public_url == "http://localhost:8080"
    assert settings.auth.mode == "oauth2"
    assert settings.auth.oauth2.realm == "sipgate-apps"
    assert settings.auth.oauth2.scopes == ["all"]
    assert settings.auth.oauth2.refresh_skew == 30
    assert settings.session.cookie_name == "sipgate_proxy"
    assert settings.session.store == "cookie"
    assert settings.upstream.connect_timeout == 5
    assert settings.upstream.read_timeout == 60


def test_environment_overrides_file_when_both_set(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("listen: {host: 127.0.0.1, port: 9000}\nauth: {mode: oauth2}\n")
    settings = config.load(file, {**PAT, "SIPGATE_PROXY_LISTEN__PORT": "9100"})
    assert settings.listen.port == 9100
    assert settings.auth.mode == "personal_access_token"


def test_environment_lists_use_flow_style() -> None:
    env = {**OAUTH, "SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid]"}
    assert config.load(None, env).auth.oauth2.scopes == ["all", "openid"]


def test_secret_keeps_leading_zero_when_set_from_env() -> None:
    env = {**PAT, "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN": "0123"}
    token = config.load(None, env).auth.personal_access_token.token
    assert token is not None
    assert token.get_secret_value() == "0123"


def test_secret_files_are_read_when_given(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file-secret\n")
    keys = [generate_key(), generate_key()]
    (tmp_path / "keys").write_text("\n".join(keys) + "\n\n")
    env = {
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "id",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET_FILE": str(tmp_path / "secret"),
        "SIPGATE_PROXY_SESSION__KEYS_FILE": str(tmp_path / "keys"),
    }
    settings = config.load(None, env)
    secret = settings.auth.oauth2.client_secret
    assert secret is not None
    assert secret.get_secret_value() == "from-file-secret"
    assert [k.get_secret_value() for k in settings.session.keys] == keys


def test_every_problem_is_reported_at_once_naming_its_key() -> None:
    env = {
        **PAT,
        "SIPGATE_PROXY_LISTEN__PORT": "70000",
        "SIPGATE_PROXY_UPSTREAM__URL": "ftp://api.sipgate.com",
        "SIPGATE_PROXY_UPSTREAM__TYPO": "1",
        "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID": "token-short",
        "SIPGATE_PROXY_SESSION__KEYS": "[not-a-key]",
    }
    found = problems(env=env)
    keys = [p.split(":")[0] for p in found]
    assert keys == [
        "listen.port",
        "upstream.url",
        "upstream.typo",
        "auth.personal_access_token.token_id",
        "session.keys",
    ]
    assert all("(set by SIPGATE_PROXY_" in p for p in found)


def test_missing_pat_credentials_are_named_one_line_each() -> None:
    found = problems(env={"SIPGATE_PROXY_AUTH__MODE": "personal_access_token"})
    assert len(found) == 2
    assert found[0].startswith("auth.personal_access_token.token_id: ")
    assert "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID" in found[0]
    assert found[1].startswith("auth.personal_access_token.token: ")
    assert "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN " in found[1]
    assert "token_file" in found[1]


def test_only_the_missing_oauth2_credential_is_named_when_client_id_is_missing() -> None:
    env = {"SIPGATE_PROXY_AUTH__MODE": "oauth2", "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "s"}
    found = problems(env=env)
    assert len(found) == 1
    assert found[0].startswith("auth.oauth2.client_id: ")
    assert "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID" in found[0]
    assert "CLIENT_SECRET" not in found[0]


def test_only_the_missing_oauth2_credential_is_named_when_client_secret_is_missing() -> None:
    env = {"SIPGATE_PROXY_AUTH__MODE": "oauth2", "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "c"}
    found = problems(env=env)
    assert len(found) == 1
    assert found[0].startswith("auth.oauth2.client_secret: ")
    assert "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET" in found[0]
    assert "client_secret_file" in found[0]
    assert "CLIENT_ID" not in found[0]


def test_production_public_url_requires_keys_and_secure_cookies() -> None:
    env = {
        **OAUTH,
        "SIPGATE_PROXY_PUBLIC_URL": "https://proxy.example.com",
        "SIPGATE_PROXY_SESSION__COOKIE_SECURE": "false",
    }
    found = problems(env=env)
    assert [p.split(":")[0] for p in found] == ["session.keys", "session.cookie_secure"]


def test_local_public_url_allows_insecure_cookies_and_no_keys() -> None:
    env = {**OAUTH, "SIPGATE_PROXY_SESSION__COOKIE_SECURE": "false"}
    settings = config.load(None, env)
    assert settings.is_local
    assert settings.cookie_secure is False
    assert config.load(None, OAUTH).cookie_secure is False  # auto: off on loopback http
    https = config.load(
        None,
        {
            **OAUTH,
            "SIPGATE_PROXY_PUBLIC_URL": "https://p.example",
            "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
        },
    )
    assert https.cookie_secure is True


@pytest.mark.parametrize("name", ["__Host-sipgate_proxy", "__Secure-sipgate_proxy", "__host-x"])
def test_prefixed_cookie_name_is_refused_when_cookie_secure_is_false(name: str) -> None:
    env = {
        **OAUTH,
        "SIPGATE_PROXY_SESSION__COOKIE_NAME": name,
        "SIPGATE_PROXY_SESSION__COOKIE_SECURE": "false",
    }
    (found,) = problems(env=env)
    assert found.startswith("session.cookie_secure: must be true")
    assert name in found


def test_prefixed_cookie_name_turns_secure_cookies_on_when_local() -> None:
    env = {**OAUTH, "SIPGATE_PROXY_SESSION__COOKIE_NAME": "__Host-sipgate_proxy"}
    settings = config.load(None, env)
    assert settings.is_local
    assert settings.cookie_secure is True  # Chromium keeps Secure cookies on localhost


@pytest.mark.parametrize(
    "content", ["listen: [1, 2", "- just\n- a list\n", "auth:\n  mode: kerberos\n"]
)
def test_bad_files_are_named(tmp_path: Path, content: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(content)
    found = problems(file)
    assert found
    assert found[0].startswith(("--config:", "auth.mode:"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.yaml")[0].startswith("--config: cannot read")


def test_secret_and_secret_file_together_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("x")
    env = {**OAUTH, "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET_FILE": str(tmp_path / "s")}
    assert problems(env=env) == [
        "auth.oauth2.client_secret_file: set either client_secret or client_secret_file, not both"
    ]


def test_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    env = {
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "x",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET_FILE": str(tmp_path / "nope"),
    }
    assert problems(env=env)[0].startswith("auth.oauth2.client_secret_file: cannot read")


def test_secrets_never_appear_in_errors_or_repr() -> None:
    secret = "pat-secret-value-1234"
    env = {**PAT, "SIPGATE_PROXY_LISTEN__PORT": "nope"}
    assert secret not in " ".join(problems(env=env))
    settings = config.load(None, {**PAT, **OAUTH})
    assert secret not in repr(settings)
    assert "oauth-secret-value-5678" not in repr(settings)
    assert secret not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SIPGATE_PROXY_PUBLIC_URL", "http://localhost:0"),
        ("SIPGATE_PROXY_PUBLIC_URL", "http://localhost:99999"),
        ("SIPGATE_PROXY_UPSTREAM__URL", "https://api.sipgate.com:99999"),
        ("SIPGATE_PROXY_AUTH__OAUTH2__ISSUER", "not a url"),
        ("SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW", "300"),
    ],
)
def test_values_that_would_fail_later_are_refused_now(key: str, value: str) -> None:
    found = problems(env={**OAUTH, key: value})
    assert found
    assert found[0].split(":")[0] in {
        "public_url",
        "upstream.url",
        "auth.oauth2.issuer",
        "auth.oauth2.refresh_skew",
    }


def test_plain_http_issuer_only_for_loopback() -> None:
    keys = f"[{generate_key()}]"
    env = {
        **OAUTH,
        "SIPGATE_PROXY_PUBLIC_URL": "https://p.example",
        "SIPGATE_PROXY_SESSION__KEYS": keys,
    }
    assert problems(env={**env, "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://idp.example/x"})
    config.load(None, {**env, "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/x"})
    config.load(None, {**env, "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "https://idp.example/x"})


def test_redis_store_needs_a_redis_url() -> None:
    env = {**OAUTH, "SIPGATE_PROXY_SESSION__STORE": "redis"}
    assert problems(env=env)[0].startswith("session.redis_url: required")
    bad = {**env, "SIPGATE_PROXY_SESSION__REDIS_URL": "http://x"}
    assert problems(env=bad)[0].startswith("session.redis_url: must be")
    ok = config.load(None, {**env, "SIPGATE_PROXY_SESSION__REDIS_URL": "rediss://r:6380/1"})
    assert ok.session.store == "redis"


@pytest.mark.parametrize(
    "url",
    ["http://api.sipgate.com", "http://10.0.0.7:8080", "http://[2001:db8::1]", "http://0.0.0.0"],
)
def test_plain_http_upstream_is_refused_when_not_loopback(url: str) -> None:
    found = problems(env={**PAT, "SIPGATE_PROXY_UPSTREAM__URL": url})
    assert len(found) == 1
    assert found[0].startswith("upstream.url: ")
    assert "upstream.allow_insecure_http" in found[0]
    assert "SIPGATE_PROXY_UPSTREAM__ALLOW_INSECURE_HTTP" in found[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9",
        "http://127.8.9.10",
        "http://[::1]:8080",
        "http://localhost:1",
        "http://LOCALHOST",
    ],
)
def test_plain_http_upstream_is_accepted_when_loopback(url: str) -> None:
    assert config.load(None, {**PAT, "SIPGATE_PROXY_UPSTREAM__URL": url}).upstream.url


def test_plain_http_upstream_is_accepted_when_insecure_http_is_allowed() -> None:
    env = {
        **PAT,
        "SIPGATE_PROXY_UPSTREAM__URL": "http://api.internal:8080",
        "SIPGATE_PROXY_UPSTREAM__ALLOW_INSECURE_HTTP": "true",
    }
    settings = config.load(None, env)
    assert settings.upstream.url == "http://api.internal:8080"
    assert settings.upstream.allow_insecure_http is True
    https = config.load(None, {**PAT, "SIPGATE_PROXY_UPSTREAM__URL": "https://api.internal"})
    assert https.upstream.allow_insecure_http is False


def test_forward_auth_is_off_by_default_and_set_from_the_environment() -> None:
    assert config.load(None, PAT).forward_auth.enabled is False
    settings = config.load(
        None,
        {
            **PAT,
            "SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "true",
            "SIPGATE_PROXY_FORWARD_AUTH__ALLOWED_NETWORKS": "[10.0.0.0/8]",
            "SIPGATE_PROXY_FORWARD_AUTH__URI_HEADER": "X-Forwarded-Uri",
            "SIPGATE_PROXY_FORWARD_AUTH__SECRET": generate_key(),
        },
    )
    forward_auth = settings.forward_auth
    assert forward_auth.enabled is True
    assert [str(n) for n in forward_auth.allowed_networks] == ["10.0.0.0/8"]
    assert (forward_auth.method_header, forward_auth.uri_header) == (
        "X-Original-Method",
        "X-Forwarded-Uri",
    )


SERVICE = {
    **OAUTH,
    "SIPGATE_PROXY_AUTH__MODE": "service",
    "SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": "[operator]",
    "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": "/var/lib/sipgate-auth-proxy/identity.json",
    "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
}
FORWARD_AUTH_ON = {"SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "true"}


@pytest.mark.parametrize(("mode", "env"), [("personal_access_token", PAT), ("service", SERVICE)])
def test_forward_auth_in_a_shared_mode_needs_the_front_proxys_secret(
    mode: str, env: dict[str, str]
) -> None:
    """There /oauth2/auth answers with the account's credential: an app holding a client
    credential on the pod's loopback could read it unless the front proxy proves itself."""
    (found,) = problems(env={**env, **FORWARD_AUTH_ON})
    assert found.startswith(f"forward_auth.secret: required with forward_auth.enabled in {mode}")
    assert "SIPGATE_PROXY_FORWARD_AUTH__SECRET" in found
    assert config.load(None, env).forward_auth.secret is None  # off: nothing needed


def test_forward_auth_secret_is_optional_in_oauth2_mode_and_read_from_its_file(
    tmp_path: Path,
) -> None:
    assert config.load(None, {**OAUTH, **FORWARD_AUTH_ON}).forward_auth.secret is None
    secret = generate_key()
    file = tmp_path / "secret"
    file.write_text(secret + "\n")
    env = {**PAT, **FORWARD_AUTH_ON, "SIPGATE_PROXY_FORWARD_AUTH__SECRET_FILE": str(file)}
    loaded = config.load(None, env).forward_auth.secret
    assert loaded is not None
    assert loaded.get_secret_value() == secret


def test_a_short_forward_auth_secret_is_refused_without_being_shown() -> None:
    env = {**PAT, **FORWARD_AUTH_ON, "SIPGATE_PROXY_FORWARD_AUTH__SECRET": "short-secret-17ch"}
    (found,) = problems(env=env)
    assert found.startswith("forward_auth.secret: at least 32 characters")
    assert "short-secret-17ch" not in found


def test_forward_auth_problems_name_their_keys() -> None:
    found = problems(
        env={
            **PAT,
            "SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "maybe",
            "SIPGATE_PROXY_FORWARD_AUTH__ALLOWED_NETWORKS": "[10.0.0.1/8]",
            "SIPGATE_PROXY_FORWARD_AUTH__METHOD_HEADER": "X Original",
        }
    )
    assert [p.split(":")[0] for p in found] == [
        "forward_auth.enabled",
        "forward_auth.allowed_networks.0",
        "forward_auth.method_header",
    ]
    found = problems(env={**PAT, "SIPGATE_PROXY_FORWARD_AUTH__LISTENER": "management"})
    assert found == [
        "forward_auth.listener: management needs management.listen "
        "(a second listener for probes and metrics)"
    ]
